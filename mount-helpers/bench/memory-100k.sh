#!/usr/bin/env bash
# Daemon memory over many files: writes DIRS x FILES small files through a fresh mount,
# remounts, then reports the daemon's RSS after mount, `ls -lR` and `md5sum` of every file.
# Usage: memory-100k.sh BIN_DIR [WORKDIR] [DIRS] [FILES]   (defaults: /tmp/elastic-mem, 100, 1000)
set -euo pipefail
bin=$1
work=${2:-/tmp/elastic-mem}
dirs=${3:-100}
files=${4:-1000}
rm -rf "$work" && mkdir -p "$work/mnt"
"$bin/elastic" init "$work/store" --keyfile "$work/key" >/dev/null 2>&1
mount_it() { "$bin/mount.elastic" "$work/store" "$work/mnt" -o "keyfile=$work/key" 2>/dev/null; }
rss() { awk '/VmRSS/ {printf "%.1f MB", $2 / 1024}' "/proc/$(pgrep -f "^[^ ]*mount[.]elastic $work/store " | head -1)/status"; }
cleanup() { fusermount3 -u "$work/mnt" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
mount_it
python3 - "$work/mnt" "$dirs" "$files" <<'PY'
import os, sys
mnt, dirs, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for d in range(dirs):
    p = os.path.join(mnt, f"d{d:03}")
    os.mkdir(p)
    for f in range(files):
        with open(os.path.join(p, f"f{f:04}"), "wb") as fh:
            fh.write(os.urandom(100))
PY
fusermount3 -u "$work/mnt"
mount_it
echo "files: $((dirs * files)); after mount: $(rss)"
s=$(date +%s.%N); lines=$(ls -lR "$work/mnt" | wc -l); e=$(date +%s.%N)
echo "after ls -lR ($lines lines, $(echo "$e - $s" | bc) s): $(rss)"
s=$(date +%s.%N); (cd "$work/mnt" && find . -type f -print0 | xargs -0 md5sum >/dev/null); e=$(date +%s.%N)
echo "after md5sum of every file ($(echo "$e - $s" | bc) s): $(rss)"
echo "descriptors: $(ls /proc/$(pgrep -f "^[^ ]*mount[.]elastic $work/store " | head -1)/fd | wc -l)"
