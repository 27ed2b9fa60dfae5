#!/usr/bin/env bash
# Installs mount.elastic into /sbin (so `mount -t elastic` and fstab work) and elastic into
# /usr/local/bin, from a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --static-swift-stdlib
bin=$(swift build -c release --show-bin-path)
install -m 0755 "$bin/mount.elastic" /sbin/mount.elastic
install -m 0755 "$bin/elastic" /usr/local/bin/elastic
echo "installed /sbin/mount.elastic and /usr/local/bin/elastic"
