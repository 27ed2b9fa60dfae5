#!/usr/bin/env python3
"""kill -9 of the daemon during heavy writes and namespace changes, then remount, CYCLES times.

Each cycle mounts the store (foreground daemon, its log kept), then checks everything earlier
cycles left:
  - the daemon logged no error (no integrity alarm);
  - every directory lists and every file reads (no EIO anywhere);
  - every file fsynced and then left alone is byte-exact;
  - the overwritten file: each 4 KiB block is uniform and holds the value of the last or the
    one-before-last whole-file overwrite (old or new contents for each write, never a mix).
Then it starts writers (random pwrites of 4 KiB to 4 MiB and truncates into shared files), a namespace worker
(creates, renames across directories, hard links, unlinks, mkdir/rmdir), the overwriter, writes
and fsyncs one more file, and SIGKILLs the daemon after 0.3-1.0 s.

    crash_cycles.py BIN_DIR WORKDIR CYCLES SEED
    (CRASH_MOUNT_OPTIONS=checkpoint=0.2 adds mount options: checkpoints racing the writers)

Prints one summary line; exit 1 with the reasons when a check fails."""
import hashlib, os, random, signal, subprocess, sys, time

import foreground_mount

bin_dir, work, cycles, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
mnt, store, key, log = work + "/mnt", work + "/store", work + "/key", work + "/daemon.log"
BLOCK, OVER_BLOCKS = 4096, 64
failures = []


def mounted():
    return foreground_mount.mounted(mnt)


def mount():
    options = ",".join(["keyfile=" + key] + [o for o in [os.environ.get("CRASH_MOUNT_OPTIONS", "")] if o])
    return foreground_mount.mount(bin_dir, store, mnt, options, log)


def unmount():
    for _ in range(100):
        if not mounted():
            return
        subprocess.run(["fusermount3", "-u", mnt], capture_output=True)
        time.sleep(0.05)


def check(cycle, synced, over_log):
    for d, dirs, files in os.walk(mnt):
        for name in files:
            path = os.path.join(d, name)
            try:
                data = open(path, "rb").read()
            except OSError as e:
                failures.append(f"cycle {cycle}: {os.path.relpath(path, mnt)}: {e.strerror}")
                continue
            rel = os.path.relpath(path, mnt)
            if rel in synced and hashlib.sha256(data).hexdigest() != synced[rel]:
                failures.append(f"cycle {cycle}: fsynced {rel} changed")
            if rel == "over":
                # Values whose write started since the last one that completed, and that one
                # (lines "k" when a write starts, "done k" when it completed).
                lines = open(over_log).read().split("\n") if os.path.exists(over_log) else []
                allowed, completed = set(), False
                for line in reversed([l for l in lines if l]):
                    allowed.add(int(line.split()[-1]))
                    if line.startswith("done"):
                        completed = True
                        break
                if not completed:
                    allowed.add(0)
                for b in range(len(data) // BLOCK):
                    blk = data[b * BLOCK:(b + 1) * BLOCK]
                    if blk.count(blk[0]) != BLOCK or blk[0] not in allowed:
                        failures.append(f"cycle {cycle}: over block {b} is neither old nor new ({set(blk)} vs {allowed})")
                        break
    with open(log) as f:
        errors = [line.strip() for line in f if "error" in line.lower()]
    if errors:
        failures.append(f"cycle {cycle}: daemon logged: {errors[:3]}")
        open(log, "w").close()


def writer(c, w):
    rnd = random.Random(seed * 1000 + c * 10 + w)
    while True:
        fd = os.open(os.path.join(mnt, f"w{w}f{rnd.randrange(4)}"), os.O_RDWR | os.O_CREAT, 0o644)
        if rnd.randrange(4) == 0:
            os.ftruncate(fd, rnd.randrange(6 << 20))  # shrinking or growing, mostly mid-block
        else:
            os.pwrite(fd, os.urandom(rnd.choice([4096, 65536, 1 << 20, 4 << 20])), rnd.randrange(4 << 20))
        os.close(fd)


def namespace(c):
    rnd = random.Random(seed * 1000 + c)
    dirs = ["n0", "n1", "n2", "n0/sub"]
    for d in dirs:
        os.makedirs(os.path.join(mnt, d), exist_ok=True)
    i = 0
    while True:
        i += 1
        d = os.path.join(mnt, rnd.choice(dirs))
        op = rnd.randrange(6)
        try:
            names = os.listdir(d)
            if op <= 1 or not names:
                with open(os.path.join(d, f"c{c}_{i}"), "wb") as f:
                    f.write(os.urandom(rnd.randrange(1, 20000)))
            elif op == 2:
                os.rename(os.path.join(d, rnd.choice(names)), os.path.join(mnt, rnd.choice(dirs), f"r{c}_{i}"))
            elif op == 3:
                victim = os.path.join(d, rnd.choice(names))
                os.rmdir(victim) if os.path.isdir(victim) else os.unlink(victim)
            elif op == 4:
                src = os.path.join(d, rnd.choice(names))
                if os.path.isfile(src):
                    os.link(src, os.path.join(mnt, rnd.choice(dirs), f"l{c}_{i}"))
            else:
                os.mkdir(os.path.join(d, f"m{c}_{i}"))
        except FileNotFoundError:
            pass
        except OSError as e:
            if e.errno not in (39, 17, 2):  # ENOTEMPTY, EEXIST, ENOENT race with itself: fine
                raise


def overwriter(over_log):
    path = os.path.join(mnt, "over")
    k = int(open(over_log).read().split()[-1]) if os.path.exists(over_log) and open(over_log).read().split() else 0
    while True:
        k = k % 250 + 1
        with open(over_log, "a") as f:
            f.write(f"{k}\n")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        os.pwrite(fd, bytes([k]) * (BLOCK * OVER_BLOCKS), 0)
        os.close(fd)
        with open(over_log, "a") as f:
            f.write(f"done {k}\n")


os.makedirs(mnt, exist_ok=True)
subprocess.run([bin_dir + "/elastic", "init", "--keyfile", key, store], capture_output=True, check=True)
synced, over_log = {}, work + "/over.log"
daemon = None
try:
    for c in range(cycles):
        daemon = mount()
        check(c, synced, over_log)
        workers = []
        for target, args in [(writer, (c, 0)), (writer, (c, 1)), (namespace, (c,)), (overwriter, (over_log,))]:
            pid = os.fork()
            if pid == 0:
                try:
                    target(*args)
                except OSError:
                    pass
                os._exit(0)
            workers.append(pid)
        data = os.urandom(2 << 20)
        name = f"synced{c}"
        fd = os.open(os.path.join(mnt, name), os.O_RDWR | os.O_CREAT, 0o644)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        synced[name] = hashlib.sha256(data).hexdigest()
        time.sleep(random.Random(seed + c).uniform(0.3, 1.0))
        daemon.kill()
        daemon.wait()
        for pid in workers:
            os.waitpid(pid, 0)
        unmount()
    daemon = mount()
    check(cycles, synced, over_log)
    files = sum(len(f) for _, _, f in os.walk(mnt))
    print(f"cycles={cycles} files={files} problems={len(failures)}")
finally:
    if daemon and daemon.poll() is None:
        daemon.kill()
        daemon.wait()
    unmount()
for f in failures[:20]:
    print(f)
sys.exit(1 if failures else 0)
