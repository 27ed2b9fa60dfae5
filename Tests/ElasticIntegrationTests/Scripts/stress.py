#!/usr/bin/env python3
"""Several processes write and read overlapping ranges of shared files for a bounded time.

Each shared file is cut into stripes of STRIPE bytes (not block-aligned, so stripes share
cipher blocks and every write is a read-modify-write racing other writers). Writer w owns the
stripes s with s % WRITERS == w and fills a whole stripe with one byte: w * 32 + generation.
Readers check that every byte they see belongs to its stripe's owner (or is zero). At the end
every stripe must hold exactly its owner's last generation.

Usage: stress.py MOUNTPOINT SECONDS"""
import multiprocessing as mp, os, random, sys, time

mnt, seconds = sys.argv[1], float(sys.argv[2])
FILES, WRITERS, READERS, STRIPE, STRIPES = 3, 4, 2, 1000, 300


def path(f):
    return os.path.join(mnt, f"shared-{f}")


def writer(w, q):
    rng = random.Random(w)
    last = {}
    fds = [os.open(path(f), os.O_RDWR) for f in range(FILES)]
    end = time.time() + seconds
    gen = 0
    while time.time() < end:
        f = rng.randrange(FILES)
        mine = [s for s in range(w, STRIPES, WRITERS)]
        s = rng.choice(mine)
        gen = (gen + 1) % 32
        # Sometimes a run of this writer's stripes in one write (covering others' stripes too
        # would violate ownership, so write them one by one in a burst).
        for s2 in [s] + ([rng.choice(mine)] if rng.random() < 0.3 else []):
            os.pwrite(fds[f], bytes([w * 32 + gen]) * STRIPE, s2 * STRIPE)
            last[(f, s2)] = w * 32 + gen
    q.put(last)


def reader(r, q):
    rng = random.Random(100 + r)
    fds = [os.open(path(f), os.O_RDONLY) for f in range(FILES)]
    end = time.time() + seconds
    reads = 0
    while time.time() < end:
        f = rng.randrange(FILES)
        off = rng.randrange(STRIPES * STRIPE)
        data = os.pread(fds[f], rng.randrange(1, 50000), off)
        for i, byte in enumerate(data):
            owner = ((off + i) // STRIPE) % WRITERS
            if byte != 0 and byte // 32 != owner:
                q.put(f"bad byte {byte} at {off + i} of file {f}")
                return
        reads += 1
    q.put(reads)


if __name__ == "__main__":
    for f in range(FILES):
        with open(path(f), "wb") as fh:
            fh.truncate(STRIPES * STRIPE)
    q = mp.Queue()
    procs = [mp.Process(target=writer, args=(w, q)) for w in range(WRITERS)]
    procs += [mp.Process(target=reader, args=(r, q)) for r in range(READERS)]
    for p in procs:
        p.start()
    results = [q.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    errors = [x for x in results if isinstance(x, str)]
    assert not errors, errors
    expected = {}
    for x in results:
        if isinstance(x, dict):
            expected.update(x)
    for f in range(FILES):
        data = open(path(f), "rb").read()
        assert len(data) == STRIPES * STRIPE
        for s in range(STRIPES):
            want = expected.get((f, s), 0)
            got = data[s * STRIPE:(s + 1) * STRIPE]
            assert got == bytes([want]) * STRIPE, f"file {f} stripe {s}: want {want}, got {set(got)}"
    reads = sum(x for x in results if isinstance(x, int))
    print(f"stress: {len(expected)} stripes written, {reads} verified reads: 1 passed, 0 failed")
