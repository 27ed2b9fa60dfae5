#!/usr/bin/env bash
# One command to a working encrypted filesystem: builds ELASTIC (release), creates a demo store
# in ./demo/store with a generated key file ./demo/store.key, and mounts it on ./demo/secure.
# The key file is NOT hardware-sealed: it is a demo and development default.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

packages=(fuse3 libfuse3-dev libssl-dev libtss2-dev pkg-config)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

swift build -c release >/dev/null
bin=$(swift build -c release --show-bin-path)
mkdir -p demo/secure
if grep -q " $root/demo/secure " /proc/mounts; then
  echo "already mounted: $root/demo/secure (unmount with: fusermount3 -u demo/secure)"
  exit 0
fi
if [ ! -e demo/store/elastic.conf ]; then
  "$bin/elastic" init --keyfile demo/store.key demo/store
fi
echo "WARNING: demo/store.key is a plain key file, not sealed by SEV-SNP hardware." >&2
"$bin/mount.elastic" demo/store demo/secure -o keyfile=demo/store.key
echo "mounted: $root/demo/secure  (encrypted in $root/demo/store)"
echo "unmount: fusermount3 -u $root/demo/secure"
