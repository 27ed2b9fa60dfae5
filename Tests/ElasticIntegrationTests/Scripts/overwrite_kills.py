#!/usr/bin/env python3
"""kill -9 of the daemon while one process overwrites random runs of blocks of a 1 MiB file,
then a remount, CYCLES times: every 4 KiB block reads back whole (each write fills its blocks
with one byte, so a block of two values is a write torn and neither undone nor finished), and
the file is never refused. Prints the cycles, the mixed blocks and how many writes the
journal repaired. Usage: overwrite_kills.py BIN_DIR WORK_DIR CYCLES"""
import os, random, signal, subprocess, sys, time

import foreground_mount

bin_dir, work, cycles = sys.argv[1], sys.argv[2], int(sys.argv[3])
mnt, store, key, log = work + "/mnt", work + "/store", work + "/key", work + "/daemon.log"
BS, BLOCKS = 4096, 256
os.makedirs(mnt, exist_ok=True)
subprocess.run([bin_dir + "/elastic", "init", "--keyfile", key, store], capture_output=True, check=True)


def mounted():
    return foreground_mount.mounted(mnt)


def mount():
    return foreground_mount.mount(bin_dir, store, mnt, "keyfile=" + key, log)


def unmount(p):
    subprocess.run(["fusermount3", "-u", mnt], stderr=subprocess.DEVNULL)
    p.wait()


mixed, rnd = 0, random.Random(7)
daemon = mount()
try:
    with open(mnt + "/f", "wb") as f:
        f.write(bytes(BS * BLOCKS))
    for c in range(cycles):
        data = open(mnt + "/f", "rb").read()
        if len(data) != BS * BLOCKS:
            raise SystemExit(f"cycle {c}: {len(data)} bytes")
        for b in range(BLOCKS):
            block = data[b * BS:(b + 1) * BS]
            if block != bytes([block[0]]) * BS:
                mixed += 1
                print(f"cycle {c}: block {b} mixed")
        pid = os.fork()
        if pid == 0:
            try:
                fd, r, k = os.open(mnt + "/f", os.O_RDWR), random.Random(c), 0
                while True:
                    k = k % 250 + 1
                    first, n = r.randrange(BLOCKS - 64), r.randrange(1, 64)
                    os.pwrite(fd, bytes([k]) * (BS * n), first * BS)
            except OSError:
                os._exit(0)
        time.sleep(rnd.uniform(0.05, 0.3))
        daemon.send_signal(signal.SIGKILL)
        daemon.wait()
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        subprocess.run(["fusermount3", "-u", mnt], stderr=subprocess.DEVNULL)
        daemon = mount()
finally:
    if daemon and mounted():
        unmount(daemon)
repaired = sum(1 for line in open(log) if "interrupted write" in line)
print(f"cycles={cycles} mixed={mixed} repaired={repaired}")
