#!/usr/bin/env python3
"""Random pwrite/truncate/pread against a reference file on a plain filesystem.

Usage: random_ops.py MOUNTPOINT REFDIR SEED OPS. Every read and the final contents must match."""
import os, random, sys

mnt, ref, seed, ops = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(seed)
a = os.open(os.path.join(mnt, f"model-{seed}"), os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o644)
b = os.open(os.path.join(ref, f"model-{seed}"), os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o644)
limit = 300_000
for i in range(ops):
    op = rng.random()
    if op < 0.55:
        off = rng.choice([rng.randrange(limit), rng.randrange(0, limit, 4096), rng.randrange(0, limit, 4096) - 1 if limit else 0])
        off = max(off, 0)
        n = rng.choice([1, 2, 28, 4095, 4096, 4097, rng.randrange(1, 20000)])
        data = rng.randbytes(n)
        assert os.pwrite(a, data, off) == n
        os.pwrite(b, data, off)
    elif op < 0.7:
        size = rng.choice([0, rng.randrange(limit), rng.randrange(0, limit, 4096), rng.randrange(0, limit, 4096) + 1])
        os.ftruncate(a, size)
        os.ftruncate(b, size)
    else:
        off = rng.randrange(limit)
        n = rng.randrange(1, 70000)
        x, y = os.pread(a, n, off), os.pread(b, n, off)
        assert x == y, f"op {i}: read {n}@{off} differs"
    assert os.fstat(a).st_size == os.fstat(b).st_size, f"op {i}: size"
os.close(a)
a = os.open(os.path.join(mnt, f"model-{seed}"), os.O_RDONLY)
size = os.fstat(b).st_size
assert os.pread(a, size + 1, 0) == os.pread(b, size + 1, 0), "final contents differ"
print(f"random_ops seed={seed} ops={ops} size={size}: 1 passed, 0 failed")
