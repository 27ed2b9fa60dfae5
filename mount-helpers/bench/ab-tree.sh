#!/usr/bin/env bash
# A/B of two builds on the metadata workloads, alternating: untar of a source tree (TAR, an
# uncompressed tar file), then rm -rf of it, each timed, in a fresh store per run. Prints one
# line per build and run; compare medians.
# Usage: ab-tree.sh OLD_BIN_DIR NEW_BIN_DIR TAR [RUNS]   (stores in /dev/shm; run as root)
set -euo pipefail
one() {
    local bin=$1 label=$2 w ut rt pid c0 c1 c2
    w=$(mktemp -d /dev/shm/elastic-ab.XXXXXX)
    trap 'fusermount3 -u "$w/m" 2>/dev/null || true; rm -rf "$w"' RETURN
    mkdir "$w/m"
    "$bin/elastic" init --keyfile "$w/k" "$w/b" >/dev/null 2>&1
    "$bin/mount.elastic" "$w/b" "$w/m" -o "keyfile=$w/k" 2>/dev/null
    pid=$(pgrep -f "^[^ ]*mount[.]elastic $w/b " | head -1)
    cpu() { awk '{print ($14+$15)/100}' "/proc/$pid/stat"; }
    c0=$(cpu)
    ut=$({ /usr/bin/time -f %e tar -xf "$3" -C "$w/m"; } 2>&1)
    c1=$(cpu)
    rt=$({ /usr/bin/time -f %e rm -rf "$w/m"/*; } 2>&1)
    c2=$(cpu)
    echo "$label untar_s=$ut rm_s=$rt untar_cpu_s=$(echo "$c1 - $c0" | bc) rm_cpu_s=$(echo "$c2 - $c1" | bc)"
}
for _ in $(seq "${4:-5}"); do
    one "$1" old "$3"
    one "$2" new "$3"
done
