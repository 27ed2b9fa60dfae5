#!/usr/bin/env python3
"""Several processes throw random ioctls at /<mount>/.elastic (and at a regular file) for a
bounded time while another process writes and verifies files. Usage: ioctl_hammer.py MNT SECONDS"""
import errno, fcntl, hashlib, multiprocessing as mp, os, random, struct, sys, time

mnt, seconds = sys.argv[1], float(sys.argv[2])
KNOWN = [0xC0684501, 0xD0104502, 0xC1604503, 0xC0304504, 0xD0204505, 0xCFF04506, 0xD0704507, 0xD0704508]


def hammer(seed, q):
    rng = random.Random(seed)
    ctl = os.open(os.path.join(mnt, ".elastic"), os.O_RDONLY)
    reg = os.open(os.path.join(mnt, f"plain-{seed}"), os.O_RDWR | os.O_CREAT, 0o644)
    end, calls, ok = time.time() + seconds, 0, 0
    while time.time() < end:
        r = rng.random()
        if r < 0.5:
            cmd = rng.choice(KNOWN)
        elif r < 0.8:  # right type and number, other sizes and directions
            cmd = (rng.choice([1, 2, 3]) << 30) | (rng.randrange(0, 1 << 14) << 16) | (0x45 << 8) | rng.randrange(0, 8)
        else:
            cmd = rng.randrange(0, 1 << 32)
        size = (cmd >> 16) & 0x3FFF
        buf = bytearray(rng.randbytes(size)) if size else bytearray(8)
        if size >= 4 and rng.random() < 0.5:
            buf[0:4] = struct.pack("<I", 1)
        try:
            fcntl.ioctl(rng.choice([ctl, ctl, ctl, reg]), cmd, buf, True)
            ok += 1
        except OSError as e:
            assert e.errno in (errno.ENOTTY, errno.EINVAL, errno.ENOSYS, errno.EFAULT, errno.EPERM, errno.EIO, errno.EBADF, errno.EACCES, errno.EMFILE, errno.EOPNOTSUPP,
                               errno.ENOENT, errno.EEXIST, errno.EBADMSG, errno.EROFS, errno.ENOSPC), e
        calls += 1
    q.put((calls, ok))


def files(q):
    end, rounds = time.time() + seconds, 0
    while time.time() < end:
        data = os.urandom(200_000)
        p = os.path.join(mnt, "busy.bin")
        with open(p, "wb") as f:
            f.write(data)
        with open(p, "rb") as f:
            assert hashlib.sha256(f.read()).digest() == hashlib.sha256(data).digest()
        rounds += 1
    q.put(("files", rounds))


if __name__ == "__main__":
    q = mp.Queue()
    procs = [mp.Process(target=hammer, args=(s, q)) for s in range(3)] + [mp.Process(target=files, args=(q,))]
    for p in procs:
        p.start()
    results = [q.get(timeout=seconds + 60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0, p.exitcode
    calls = sum(r[0] for r in results if isinstance(r[0], int))
    rounds = [r[1] for r in results if r[0] == "files"][0]
    assert rounds > 0
    print(f"ioctl hammer: {calls} ioctls, {rounds} verified file rounds: 1 passed, 0 failed")
