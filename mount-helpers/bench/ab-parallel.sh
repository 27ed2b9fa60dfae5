#!/usr/bin/env bash
# A/B of two builds with callers running in parallel, alternating: four dd readers of 128 MiB
# files at once (after a remount), two untars of a source tree (TAR) into two directories at
# once, then two rm -rf of them at once; each timed, in a fresh store per run. Prints one line
# per build and run; compare medians. Also prints the daemon's CPU seconds for the whole run.
# Usage: ab-parallel.sh OLD_BIN_DIR NEW_BIN_DIR TAR [RUNS]   (stores in /dev/shm; run as root)
set -euo pipefail
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc | cut -c1-5; }
one() {
    local bin=$1 label=$2 tar=$3 w pid t
    w=$(mktemp -d /dev/shm/elastic-ab.XXXXXX)
    trap 'fusermount3 -u "$w/m" 2>/dev/null || true; rm -rf "$w"' RETURN
    mkdir "$w/m"
    "$bin/elastic" init --keyfile "$w/k" "$w/b" >/dev/null 2>&1
    mnt() { "$bin/mount.elastic" "$w/b" "$w/m" -o "keyfile=$w/k" 2>/dev/null; }
    mnt
    for i in 1 2 3 4; do dd if=/dev/zero of="$w/m/f$i" bs=1M count=128 status=none; done
    fusermount3 -u "$w/m" && mnt
    pid=$(pgrep -f "^[^ ]*mount[.]elastic $w/b " | head -1)
    t=$(now)
    for i in 1 2 3 4; do dd if="$w/m/f$i" of=/dev/null bs=1M status=none & done
    wait
    local read4 untar2 rm2
    read4=$(since "$t")
    mkdir "$w/m/a" "$w/m/b"
    t=$(now)
    tar -xf "$tar" -C "$w/m/a" & tar -xf "$tar" -C "$w/m/b" &
    wait
    untar2=$(since "$t")
    t=$(now)
    rm -rf "$w/m/a" & rm -rf "$w/m/b" &
    wait
    rm2=$(since "$t")
    echo "$label read4_s=$read4 untar2_s=$untar2 rm2_s=$rm2 daemon_cpu_s=$(awk '{print ($14+$15)/100}' "/proc/$pid/stat")"
}
for _ in $(seq "${4:-3}"); do
    one "$1" old "$3"
    one "$2" new "$3"
done
