#!/usr/bin/env bash
# Per-request latency of every FUSE filesystem on the machine while COMMAND runs: the kernel's
# fuse_request_send/fuse_request_end tracepoints (Linux 6.14+), recorded with perf, summed per
# opcode (count, mean and median from send to reply, total). Compare two filesystems by running
# the same workload against each: which requests a filesystem gets, and which of them it is
# slow to answer.
# Usage: fuse-latency.sh COMMAND [ARG...]   (run as root; needs perf)
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: $0 COMMAND [ARG...]" >&2; exit 2; }
data=$(mktemp /tmp/fuse-latency.XXXXXX)
trap 'rm -f "$data"' EXIT
perf record -q -e fuse:fuse_request_send -e fuse:fuse_request_end -a -o "$data" -- "$@" >/dev/null
perf script -i "$data" 2>/dev/null | python3 -c '
import collections, re, statistics, sys
sent, took = {}, collections.defaultdict(list)
pattern = re.compile(r"\s(\d+\.\d+):\s+fuse:fuse_request_(send|end):\s+connection (\d+) req (\d+)(?: opcode \d+ \((\w+)\))?")
for line in sys.stdin:
    m = pattern.search(line)
    if not m:
        continue
    t, kind, key = float(m.group(1)), m.group(2), (m.group(3), m.group(4))
    if kind == "send":
        sent[key] = (t, m.group(5))
    elif key in sent:
        t0, op = sent.pop(key)
        took[op].append((t - t0) * 1e6)
print("%-20s %8s %9s %10s %8s" % ("request", "count", "mean us", "median us", "total s"))
for op, v in sorted(took.items(), key=lambda kv: -sum(kv[1])):
    print(f"{op:20s} {len(v):8d} {statistics.mean(v):9.1f} {statistics.median(v):10.1f} {sum(v) / 1e6:8.3f}")
'
