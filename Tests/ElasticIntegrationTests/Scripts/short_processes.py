#!/usr/bin/env python3
"""Many short processes each open handles on the control file and exit without closing them.

Each child starts ELASTIC_HANDLES_PER_PROCESS (64) stopwatches and SHA-256 streams (half
each) and exits. If the daemon kept handles of exited processes, the uid's handle limit would
refuse them after a few processes (EMFILE); every child must succeed.

Usage: short_processes.py MOUNTPOINT COUNT"""
import fcntl, os, struct, sys

mnt, count = sys.argv[1], int(sys.argv[2])
ABI = 1


def iowr(nr, size):
    return (3 << 30) | (size << 16) | (ord("E") << 8) | nr


STOPWATCH = iowr(4, 48)
HASH = iowr(5, 4128)


def child():
    fd = os.open(os.path.join(mnt, ".elastic"), os.O_RDONLY)
    for i in range(64):
        if i % 2:
            req = bytearray(struct.pack("<II", ABI, 1) + bytes(40))  # START
            fcntl.ioctl(fd, STOPWATCH, req)
        else:
            req = bytearray(struct.pack("<IIII", ABI, 1, 1, 0) + bytes(4112))  # INIT SHA-256
            fcntl.ioctl(fd, HASH, req)
    os._exit(0)  # without closing anything


failed = 0
for _ in range(count):
    pid = os.fork()
    if pid == 0:
        try:
            child()
        except OSError as e:
            sys.stderr.write(f"child: {e}\n")
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        failed += 1
print(f"processes={count} failed={failed}")
sys.exit(1 if failed else 0)
