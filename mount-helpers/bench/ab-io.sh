#!/usr/bin/env bash
# A/B of two builds on the I/O workloads, alternating: dd write of 512 MiB (fsync), dd read
# after a remount, fio 4 KiB psync random write (64 MiB, end fsync) and random read after a
# remount. Prints one line per build and run; compare medians.
# Usage: ab-io.sh OLD_BIN_DIR NEW_BIN_DIR [RUNS]   (stores in /dev/shm; run as root)
set -euo pipefail
one() {
    local bin=$1 label=$2 w
    w=$(mktemp -d /dev/shm/elastic-ab.XXXXXX)
    trap 'fusermount3 -u "$w/m" 2>/dev/null || true; rm -rf "$w"' RETURN
    mkdir "$w/m"
    "$bin/elastic" init --keyfile "$w/k" "$w/b" >/dev/null 2>&1
    mnt() { "$bin/mount.elastic" "$w/b" "$w/m" -o "keyfile=$w/k" 2>/dev/null; }
    iops() { python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; print(int(j[sys.argv[1]]["iops"]))' "$1"; }
    fio_run() { fio --name=ab --filename="$w/m/fio.dat" --size=64M --bs=4k --ioengine=psync --randrepeat=1 \
        --fallocate=none --invalidate=0 --output-format=json "$@" 2>/dev/null; }
    mnt
    local wt rt fw fr
    wt=$({ /usr/bin/time -f %e dd if=/dev/zero of="$w/m/f" bs=1M count=512 conv=fsync status=none; } 2>&1)
    fusermount3 -u "$w/m" && mnt
    rt=$({ /usr/bin/time -f %e dd if="$w/m/f" of=/dev/null bs=1M status=none; } 2>&1)
    rm -f "$w/m/f"
    fw=$(fio_run --rw=randwrite --end_fsync=1 | iops write)
    fusermount3 -u "$w/m" && mnt
    fr=$(fio_run --rw=randread | iops read)
    echo "$label write_s=$wt read_s=$rt randwrite_iops=$fw randread_iops=$fr"
}
for _ in $(seq "${3:-5}"); do
    one "$1" old
    one "$2" new
done
