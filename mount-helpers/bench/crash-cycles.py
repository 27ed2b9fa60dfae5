#!/usr/bin/env python3
"""Measurement (not a test yet): kill -9 the daemon during heavy writes, remount, read back.

Each cycle mounts a fresh-keyed store in /dev/shm, checks every file left by earlier cycles
(readable, and files fsynced and then left alone byte-exact), starts three writers doing random
pwrites of 4 KiB to 4 MiB into six files each, writes and fsyncs one more file, and SIGKILLs
the daemon after 0.5-1.5 s. Prints the files that no longer read (EIO: a block torn by the
kill) and fsynced files whose contents changed. Run as root.

    mount-helpers/bench/crash-cycles.py [BIN_DIR] [CYCLES]    (defaults: .build/debug, 20)"""
import hashlib, os, random, signal, subprocess, sys, time

here = os.path.dirname(os.path.abspath(__file__))
bin_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "..", ".build", "debug")
cycles = int(sys.argv[2]) if len(sys.argv) > 2 else 20
root = f"/dev/shm/elastic-crash-{os.getpid()}"
mnt, store, key = root + "/mnt", root + "/store", root + "/key"


def mounted():
    return subprocess.run(["grep", "-q", " " + mnt + " ", "/proc/mounts"]).returncode == 0


def unmount():
    for _ in range(50):
        if not mounted():
            return
        subprocess.run(["fusermount3", "-u", mnt], capture_output=True)
        time.sleep(0.1)


def daemon():
    out = subprocess.run(["pgrep", "-f", f"^[^ ]*mount[.]elastic {store} "], capture_output=True, text=True).stdout
    return int(out.split()[0]) if out.split() else None


os.makedirs(mnt)
subprocess.run([bin_dir + "/elastic", "init", "--keyfile", key, store], capture_output=True, check=True)
synced, unreadable, changed = {}, set(), set()
try:
    for c in range(cycles):
        subprocess.run([bin_dir + "/mount.elastic", store, mnt, "-o", "keyfile=" + key], check=True)
        for name in sorted(os.listdir(mnt)):
            try:
                data = open(os.path.join(mnt, name), "rb").read()
            except OSError as e:
                if name not in unreadable:
                    print(f"cycle {c}: {name}: {e.strerror}")
                unreadable.add(name)
                continue
            if name in synced and hashlib.sha256(data).hexdigest() != synced[name]:
                changed.add(name)
        writers = []
        for w in range(3):
            pid = os.fork()
            if pid == 0:
                rnd = random.Random(c * 10 + w)
                try:
                    while True:
                        fd = os.open(os.path.join(mnt, f"c{c}w{w}f{rnd.randrange(6)}"), os.O_RDWR | os.O_CREAT, 0o644)
                        os.pwrite(fd, os.urandom(rnd.choice([4096, 65536, 1 << 20, 4 << 20])), rnd.randrange(4 << 20))
                        os.close(fd)
                except OSError:
                    os._exit(0)
            writers.append(pid)
        data = os.urandom(3 << 20)
        fd = os.open(os.path.join(mnt, f"synced{c}"), os.O_RDWR | os.O_CREAT, 0o644)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        synced[f"synced{c}"] = hashlib.sha256(data).hexdigest()
        time.sleep(random.uniform(0.5, 1.5))
        os.kill(daemon(), signal.SIGKILL)
        for pid in writers:
            os.waitpid(pid, 0)
        unmount()
    print(f"cycles={cycles} files={len(os.listdir(store))} unreadable={len(unreadable)} fsynced_changed={len(changed)}")
finally:
    if daemon():
        os.kill(daemon(), signal.SIGKILL)
    unmount()
    subprocess.run(["rm", "-rf", root])
