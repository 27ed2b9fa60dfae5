#!/usr/bin/env python3
"""The host edits a backing file while a process in the VM reads it through the mount.

A second file, SECRET (0600, every byte 0xAA), is read before each read of the raced file, so
any plaintext a worker thread keeps from one request to the next would show up as 0xAA bytes.
The raced file's plaintext has no 0xAA and no 0x00 bytes, so every byte a read returns must be
the file's own byte at that offset or a zero (a hole: v1 stores holes as all-zero blocks).
Errors (EIO) are allowed; wrong bytes are not.

Modes:
  zero-race   block 2 of a 3-block file is zeroed and the backing file's size is flipped
              between two sizes as fast as possible (the reported attack).
  random      the backing file is cut, extended and restored at random sizes while reads
              go to random offsets and lengths.

Usage: host_race.py MOUNTPOINT BACKING MODE SECONDS [SEED]
Prints a summary; exits 1 if any read returned a byte that was not the file's own or zero."""
import mmap, os, random, sys, threading, time

mnt, backing, mode, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
seed = int(sys.argv[5]) if len(sys.argv) > 5 else 1
rng = random.Random(seed)
BS, CBS, HEADER = 4096, 4096 + 28, 164
O_DIRECT = getattr(os, "O_DIRECT", 0o40000)

secret_path = os.path.join(mnt, "secret")
raced_path = os.path.join(mnt, "raced")
secret = b"\xaa" * (5 * BS + 123)
blocks = 3 if mode == "zero-race" else 9
plain = bytes(rng.randrange(1, 0x80) for _ in range(blocks * BS - (0 if mode == "zero-race" else 777)))

with open(secret_path, "wb") as f:
    f.write(secret)
os.chmod(secret_path, 0o600)
with open(raced_path, "wb") as f:
    f.write(plain)
os.sync()


def backing_file_of(size):
    found = []
    for root, _, files in os.walk(backing):
        for name in files:
            p = os.path.join(root, name)
            if os.path.getsize(p) == size:
                found.append(p)
    assert len(found) == 1, f"expected one backing file of {size} bytes, found {found}"
    return found[0]


full = HEADER + (len(plain) // BS) * CBS + (len(plain) % BS + 28 if len(plain) % BS else 0)
victim = backing_file_of(full)
original = open(victim, "rb").read()
stop = threading.Event()
host_ops = [0]


def host_zero_race():
    with open(victim, "r+b") as f:
        f.seek(HEADER + 2 * CBS)
        f.write(b"\0" * CBS)
        f.flush()
        sizes = [full, HEADER + 2 * CBS + 1000]
        i = 0
        while not stop.is_set():
            os.ftruncate(f.fileno(), sizes[i % 2])
            i += 1
        host_ops[0] = i
        os.pwrite(f.fileno(), original, 0)
        os.ftruncate(f.fileno(), len(original))


def host_random():
    with open(victim, "r+b") as f:
        i = 0
        while not stop.is_set():
            r = rng.random()
            if r < 0.2:
                os.pwrite(f.fileno(), original, 0)
                os.ftruncate(f.fileno(), len(original))
            elif r < 0.6:
                os.ftruncate(f.fileno(), rng.randrange(0, full + 1))
            else:
                os.ftruncate(f.fileno(), rng.randrange(full // 2, 2 * full))
            i += 1
        host_ops[0] = i
        os.pwrite(f.fileno(), original, 0)
        os.ftruncate(f.fileno(), len(original))


buf = mmap.mmap(-1, 16 * BS)  # page-aligned, as O_DIRECT wants
reads = errors = wrong = leaked = 0
first_bad = None
host = threading.Thread(target=host_zero_race if mode == "zero-race" else host_random)
host.start()
end = time.time() + seconds
sfd = os.open(secret_path, os.O_RDONLY | O_DIRECT)
rfd = os.open(raced_path, os.O_RDONLY | O_DIRECT)
try:
    while time.time() < end:
        # Fill the worker's buffers with the secret, then read the raced file.
        os.preadv(sfd, [buf], 0)
        if mode == "zero-race":
            off, length = 0, 3 * BS
        else:
            off = rng.randrange(0, 2 * len(plain)) // 512 * 512
            length = rng.randrange(1, 16) * 512
        view = memoryview(buf)[:length]
        try:
            n = os.preadv(rfd, [view], off)
        except OSError:
            errors += 1
            continue
        reads += 1
        got = bytes(view[:n])
        if b"\xaa" in got:
            leaked += 1
        for k, b in enumerate(got):
            p = off + k
            if b != 0 and (p >= len(plain) or b != plain[p]):
                wrong += 1
                if first_bad is None:
                    first_bad = (off, length, n, p, b)
                break
finally:
    stop.set()
    host.join()
    os.close(sfd)
    os.close(rfd)

print(f"mode={mode} reads={reads} errors={errors} host_ops={host_ops[0]} leaked={leaked} wrong={wrong} first_bad={first_bad}")
# Afterwards the file is whole again and reads back exactly.
with open(raced_path, "rb") as f:
    back = f.read()
if back != plain:
    print("the restored file does not read back exactly")
    sys.exit(1)
sys.exit(1 if (leaked or wrong) else 0)
