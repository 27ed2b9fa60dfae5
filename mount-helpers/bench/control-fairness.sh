#!/usr/bin/env bash
# Benchmark (not a test): how long root's file operations wait while another user keeps the
# control file busy with RSA-4096 key generation.
#
#   mount-helpers/bench/control-fairness.sh [BIN_DIR] [LOOPS] [SECONDS]
#
# Mounts a fresh store with cache_timeout=0 (every stat reaches the daemon) and ctl_group, starts
# LOOPS (default 10) loops of `elastic key create --type rsa --bits 4096` + delete as uid 65534,
# and times root's stat(2) of a file inside the mount during SECONDS (default 20), against the
# same stats with no load. Prints percentiles in milliseconds. Run as root.
set -euo pipefail
bin=${1:-$(cd "$(dirname "$0")/../.." && pwd)/.build/release}
loops=${2:-10}
seconds=${3:-20}
work=$(mktemp -d /tmp/elastic-fairness.XXXXXX)
cleanup() {
  # The loops stop at their next turn once the flag is gone; wait for their last request.
  rm -f "$work/running"
  wait 2>/dev/null || true
  for _ in $(seq 1 50); do
    fusermount3 -u "$work/mnt" 2>/dev/null && break
    sleep 0.2
  done
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/mnt"
chmod 755 "$work"
"$bin/elastic" init --keyfile "$work/key" "$work/store" >/dev/null
"$bin/mount.elastic" "$work/store" "$work/mnt" -o "keyfile=$work/key,allow_other,ctl_group=65534,cache_timeout=0"
chmod 755 "$work/mnt"
echo hello > "$work/mnt/file"

stat_latency() {
  python3 - "$work/mnt/file" "$1" <<'PY'
import os, sys, time
path, seconds = sys.argv[1], float(sys.argv[2])
lat = []
end = time.time() + seconds
while time.time() < end:
    t = time.perf_counter(); os.stat(path); lat.append((time.perf_counter() - t) * 1000)
    time.sleep(0.002)
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
print(f"n={len(lat)} p50={q(0.5):.3f} p99={q(0.99):.3f} max={lat[-1]:.3f} ms")
PY
}

echo "idle:       $(stat_latency 5)"
touch "$work/running"
for i in $(seq 1 "$loops"); do
  ( while [ -e "$work/running" ]; do
      setpriv --reuid=65534 --regid=65534 --clear-groups "$bin/elastic" key create "rsa$i" --type rsa --bits 4096 --mount "$work/mnt" >/dev/null 2>&1 || true
      setpriv --reuid=65534 --regid=65534 --clear-groups "$bin/elastic" key delete "rsa$i" --mount "$work/mnt" >/dev/null 2>&1 || true
    done ) &
done
sleep 2
echo "$loops loops: $(stat_latency "$seconds")"
