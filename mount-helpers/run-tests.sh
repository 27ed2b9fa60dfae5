#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test (unit and real-mount) of ELASTIC.
# Real-mount tests need root and /dev/fuse; they are skipped (and say so) without them.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(fuse3 libfuse3-dev libssl-dev libtss2-dev swtpm pkg-config python3 python3-cryptography openssl gcc libc6-dev sqlite3 git rsync attr util-linux stress-ng gdb curl strace)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# House style (.swift-format) is part of the build: a file that drifts fails here.
swift format lint --strict --recursive Sources Tests Package.swift

swift build
swift test "$@"

# No test may leave a mount or a daemon behind.
if grep -q ' [^ ]*/elastic-test\.[^ /]*/' /proc/mounts; then
  echo "error: tests left mounts behind:" >&2
  grep ' [^ ]*/elastic-test\.[^ /]*/' /proc/mounts >&2
  exit 1
fi
