#!/usr/bin/env python3
"""Several processes create, write, rename, link and delete in the same directories at once.

Worker w owns every name that starts with "w<w>-" and keeps an exact model of them (where each
lives and what it holds); the directories d0..d3 and their subdirectories are shared, so the
name-space operations of all workers interleave in them. Listers walk the tree meanwhile: every
name they see must belong to some worker's pattern, and every stat either succeeds or says
ENOENT (the entry went away between listing and stat). At the end (and, run again with
--verify, after a remount) the tree must hold exactly the union of the workers' models.

Usage: namespace_stress.py MOUNTPOINT SECONDS        (prints the model as JSON on stdout)
       namespace_stress.py MOUNTPOINT --verify MODEL.json"""
import hashlib, json, multiprocessing as mp, os, random, re, sys, time

mnt = sys.argv[1]
DIRS, WORKERS, LISTERS = 4, 4, 2
NAME = re.compile(r"^w[0-9]+-(f|l|s)[0-9]+(\.[a-z]+)?$|^d[0-9]+$|^sub[0-9]+$")


def digest(data):
    return hashlib.sha256(data).hexdigest()


def shared_dirs():
    out = []
    for d in range(DIRS):
        out.append(f"d{d}")
        out.append(f"d{d}/sub{d}")
    return out


def worker(w, seconds, q):
    rng = random.Random(w)
    files = {}  # relative path -> digest
    links = {}  # relative path of a hard link -> path of its original at creation (same inode)
    n = 0
    end = time.time() + seconds
    try:
        while time.time() < end:
            op = rng.random()
            if op < 0.35 or not files:
                n += 1
                p = f"{rng.choice(shared_dirs())}/w{w}-f{n}" + rng.choice(["", ".txt", ".bin"])
                data = os.urandom(rng.choice([0, 10, 4096, 5000, 70000]))
                with open(os.path.join(mnt, p), "wb") as f:
                    f.write(data)
                files[p] = digest(data)
            elif op < 0.6:
                src = rng.choice(sorted(files))
                n += 1
                dst = f"{rng.choice(shared_dirs())}/w{w}-f{n}"
                os.rename(os.path.join(mnt, src), os.path.join(mnt, dst))
                files[dst] = files.pop(src)
                for l, orig in list(links.items()):
                    if orig == src:
                        links[l] = dst
            elif op < 0.75:
                p = rng.choice(sorted(files))
                os.unlink(os.path.join(mnt, p))
                del files[p]
                for l, orig in list(links.items()):
                    if orig == p:
                        links[l] = None  # the link keeps the data alone now
            elif op < 0.85:
                src = rng.choice(sorted(files))
                n += 1
                dst = f"{rng.choice(shared_dirs())}/w{w}-l{n}"
                os.link(os.path.join(mnt, src), os.path.join(mnt, dst))
                files[dst] = files[src]
                links[dst] = src
            else:
                p = rng.choice(sorted(files))
                data = os.urandom(rng.choice([1, 100, 4096, 9000]))
                with open(os.path.join(mnt, p), "r+b") as f:
                    f.seek(rng.randrange(8192))
                    f.write(data)
                    f.seek(0)
                    new = digest(f.read())
                # Every name of the same inode sees the change.
                for q2, d in list(files.items()):
                    if q2 != p and os.path.exists(os.path.join(mnt, q2)) and os.stat(os.path.join(mnt, q2)).st_ino == os.stat(os.path.join(mnt, p)).st_ino:
                        files[q2] = new
                files[p] = new
        q.put(("model", w, files))
    except Exception as e:  # report, do not hang the parent
        q.put(("error", w, f"worker {w}: {type(e).__name__}: {e}"))


def lister(r, seconds, q):
    end = time.time() + seconds
    walks = 0
    try:
        while time.time() < end:
            for root, dirs, names in os.walk(mnt):
                for name in dirs + names:
                    if name in (".elastic",) or (root == mnt and name == "lost+found"):
                        continue
                    if not NAME.match(name):
                        q.put(("error", r, f"lister {r}: unexpected name {os.path.join(root, name)}"))
                        return
                    try:
                        os.lstat(os.path.join(root, name))
                    except FileNotFoundError:
                        pass
            walks += 1
        q.put(("walks", r, walks))
    except Exception as e:
        q.put(("error", r, f"lister {r}: {type(e).__name__}: {e}"))


def verify(model):
    want = {p: d for p, d in model.items()}
    seen = {}
    for root, dirs, names in os.walk(mnt):
        for name in names:
            if name == ".elastic":
                continue
            rel = os.path.relpath(os.path.join(root, name), mnt)
            with open(os.path.join(root, name), "rb") as f:
                seen[rel] = digest(f.read())
    missing = sorted(set(want) - set(seen))
    extra = sorted(set(seen) - set(want))
    wrong = sorted(p for p in set(want) & set(seen) if want[p] != seen[p])
    assert not (missing or extra or wrong), {"missing": missing[:5], "extra": extra[:5], "wrong": wrong[:5]}


if __name__ == "__main__":
    if sys.argv[2] == "--verify":
        verify(json.load(open(sys.argv[3])))
        print("verified")
        sys.exit(0)
    seconds = float(sys.argv[2])
    for d in shared_dirs():
        os.makedirs(os.path.join(mnt, d), exist_ok=True)
    q = mp.Queue()
    procs = [mp.Process(target=worker, args=(w, seconds, q)) for w in range(WORKERS)]
    procs += [mp.Process(target=lister, args=(r, seconds, q)) for r in range(LISTERS)]
    for p in procs:
        p.start()
    results = [q.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    errors = [m for kind, _, m in results if kind == "error"]
    assert not errors, errors
    model = {}
    for kind, _, m in results:
        if kind == "model":
            model.update(m)
    verify(model)
    walks = sum(m for kind, _, m in results if kind == "walks")
    sys.stderr.write(f"files={len(model)} walks={walks}\n")
    print(json.dumps(model))
