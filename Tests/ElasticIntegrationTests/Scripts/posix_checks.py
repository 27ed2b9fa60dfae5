#!/usr/bin/env python3
"""POSIX behaviour of a mounted ELASTIC filesystem, through plain syscalls.

Usage: posix_checks.py MOUNTPOINT. Runs as root; each check prints its name; any failure
raises and exits non-zero."""
import errno, mmap, os, stat, subprocess, sys

M = sys.argv[1]
checks = []


def check(fn):
    checks.append(fn)
    return fn


def p(*parts):
    return os.path.join(M, *parts)


def expect_errno(code, fn, *args):
    try:
        fn(*args)
    except OSError as e:
        assert e.errno == code, f"expected {errno.errorcode[code]}, got {errno.errorcode.get(e.errno, e.errno)}"
        return
    raise AssertionError(f"expected {errno.errorcode[code]}, call succeeded")


@check
def read_write_at_any_offset():
    fd = os.open(p("rw"), os.O_CREAT | os.O_RDWR, 0o644)
    model = bytearray()
    for off, n in [(0, 1), (1, 4095), (4095, 2), (8191, 4097), (20000, 3), (4096, 4096), (123, 9000), (0, 0)]:
        data = bytes((off + i * 7) % 251 for i in range(n))
        os.pwrite(fd, data, off)
        if off > len(model):
            model.extend(b"\0" * (off - len(model)))
        model[off:off + n] = data
        assert os.fstat(fd).st_size == len(model)
    for off, n in [(0, len(model)), (4000, 200), (4096, 1), (20001, 100), (len(model), 10)]:
        assert os.pread(fd, n, off) == bytes(model[off:off + n]), (off, n)
    os.close(fd)


@check
def truncate_up_and_down_and_sparse():
    path = p("tr")
    with open(path, "wb") as f:
        f.write(b"a" * 5000)
    os.truncate(path, 100)
    assert open(path, "rb").read() == b"a" * 100
    os.truncate(path, 9000)
    d = open(path, "rb").read()
    assert d == b"a" * 100 + b"\0" * 8900
    os.truncate(path, 4096)
    assert os.stat(path).st_size == 4096
    os.truncate(path, 0)
    assert open(path, "rb").read() == b""
    with open(path, "r+b") as f:
        f.seek(1 << 20)
        f.write(b"end")
    d = open(path, "rb").read()
    assert len(d) == (1 << 20) + 3 and d[:1 << 20] == b"\0" * (1 << 20) and d[-3:] == b"end"


@check
def huge_truncate_is_instant_or_efbig():
    path = p("huge")
    open(path, "wb").close()
    try:
        os.truncate(path, 900 << 40)
        assert os.stat(path).st_size == 900 << 40
        with open(path, "rb") as f:
            f.seek(500 << 40)
            assert f.read(10) == b"\0" * 10
    except OSError as e:
        assert e.errno == errno.EFBIG, e
    os.unlink(path)


@check
def open_flags():
    path = p("flags")
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    os.write(fd, b"hello")
    os.close(fd)
    expect_errno(errno.EEXIST, os.open, path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    os.write(fd, b" world")
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, b"!")
    os.close(fd)
    assert open(path, "rb").read() == b"hello world!"
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    os.close(fd)
    assert open(path, "rb").read() == b""
    fd = os.open(path, os.O_RDWR | os.O_TRUNC)
    os.write(fd, b"x" * 10)
    os.close(fd)
    assert os.stat(path).st_size == 10


@check
def unlink_of_an_open_file():
    path = p("open-unlinked")
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    os.write(fd, b"still here" * 1000)
    os.unlink(path)
    assert not os.path.exists(path)
    os.pwrite(fd, b"more", 10000)
    assert os.pread(fd, 10, 0) == b"still here"
    assert os.pread(fd, 4, 10000) == b"more"
    os.close(fd)


@check
def rename_cases():
    os.makedirs(p("r1"))
    os.makedirs(p("r2"))
    open(p("r1", "a"), "w").write("A")
    open(p("r1", "b"), "w").write("B")
    os.rename(p("r1", "a"), p("r1", "b"))
    assert open(p("r1", "b")).read() == "A" and not os.path.exists(p("r1", "a"))
    os.rename(p("r1", "b"), p("r2", "c"))
    assert open(p("r2", "c")).read() == "A"
    os.makedirs(p("r1", "sub", "deep"))
    open(p("r1", "sub", "deep", "f"), "w").write("deep")
    os.rename(p("r1", "sub"), p("r2", "moved"))
    assert open(p("r2", "moved", "deep", "f")).read() == "deep"
    os.makedirs(p("r2", "emptydir"))
    os.rename(p("r2", "moved", "deep"), p("r2", "emptydir"))  # over an empty directory
    assert open(p("r2", "emptydir", "f")).read() == "deep"
    os.makedirs(p("r2", "full"))
    open(p("r2", "full", "x"), "w").write("x")
    os.makedirs(p("r2", "other"))
    expect_errno(errno.ENOTEMPTY, os.rename, p("r2", "other"), p("r2", "full"))
    expect_errno(errno.EISDIR, os.rename, p("r2", "c"), p("r2", "full"))
    expect_errno(errno.ENOTDIR, os.rename, p("r2", "full"), p("r2", "c"))
    assert sorted(os.listdir(p("r2"))) == ["c", "emptydir", "full", "moved", "other"]


@check
def hard_links():
    open(p("h1"), "w").write("linked")
    os.link(p("h1"), p("h2"))
    assert os.stat(p("h1")).st_nlink == 2 and os.stat(p("h1")).st_ino == os.stat(p("h2")).st_ino
    open(p("h2"), "a").write("+")
    assert open(p("h1")).read() == "linked+"
    os.unlink(p("h1"))
    assert open(p("h2")).read() == "linked+" and os.stat(p("h2")).st_nlink == 1


@check
def symlinks():
    os.symlink("target/of/link", p("sl"))
    assert os.readlink(p("sl")) == "target/of/link"
    st = os.lstat(p("sl"))
    assert stat.S_ISLNK(st.st_mode) and st.st_size == len("target/of/link")
    long_target = "x/" * 2047 + "y"  # 4095 bytes
    os.symlink(long_target, p("longlink"))
    assert os.readlink(p("longlink")) == long_target
    assert os.lstat(p("longlink")).st_size == 4095
    os.symlink("rw", p("to-rw"))
    assert open(p("to-rw"), "rb").read(3) == open(p("rw"), "rb").read(3)
    os.unlink(p("longlink"))
    # utimensat on the symlink itself
    os.utime(p("sl"), ns=(1_000_000_000, 2_000_000_000), follow_symlinks=False)
    assert os.lstat(p("sl")).st_mtime_ns == 2_000_000_000


@check
def long_names():
    name = "n" * 255
    open(p(name), "w").write("long")
    assert name in os.listdir(M)
    assert open(p(name)).read() == "long"
    os.makedirs(p("d" * 255, "e" * 255))
    os.rename(p(name), p("d" * 255, "e" * 255, "m" * 254))
    assert os.listdir(p("d" * 255, "e" * 255)) == ["m" * 254]
    os.link(p("d" * 255, "e" * 255, "m" * 254), p("l" * 250))
    expect_errno(errno.ENAMETOOLONG, open, p("z" * 256), "w")
    # A failed exclusive create of an existing long name leaves that entry intact.
    expect_errno(errno.EEXIST, os.open, p("l" * 250), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    expect_errno(errno.EEXIST, os.mkdir, p("l" * 250))
    expect_errno(errno.EEXIST, os.symlink, "x", p("l" * 250))
    assert "l" * 250 in os.listdir(M) and open(p("l" * 250)).read() == "long"
    utf = "é" * 127  # 254 bytes
    open(p(utf), "w").write("u")
    assert utf in os.listdir(M)


@check
def modes_exact_and_ownership():
    old = os.umask(0)
    try:
        os.mkdir(p("m700"), 0o700)
        os.mkdir(p("m0"), 0o000)
        os.mkdir(p("m1777"), 0o1777)
        assert stat.S_IMODE(os.stat(p("m700")).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(p("m0")).st_mode) == 0o000
        assert stat.S_IMODE(os.stat(p("m1777")).st_mode) == 0o1777
        for mode in (0o200, 0o400, 0o604, 0o000, 0o4755):
            path = p(f"f{mode:o}")
            fd = os.open(path, os.O_CREAT | os.O_WRONLY, mode)
            os.write(fd, b"data")
            os.close(fd)
            assert stat.S_IMODE(os.stat(path).st_mode) == mode, (oct(mode), oct(os.stat(path).st_mode))
    finally:
        os.umask(old)
    os.chmod(p("f200"), 0o640)
    assert stat.S_IMODE(os.stat(p("f200")).st_mode) == 0o640
    os.chown(p("f200"), 1234, 5678)
    st = os.stat(p("f200"))
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    os.utime(p("f200"), ns=(3_000_000_000, 4_000_000_123))
    assert os.stat(p("f200")).st_mtime_ns == 4_000_000_123
    # New files belong to the caller.
    os.chmod(M, 0o777)
    subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "touch", p("by-nobody")], check=True)
    st = os.stat(p("by-nobody"))
    assert (st.st_uid, st.st_gid) == (65534, 65534), (st.st_uid, st.st_gid)
    # A write by a caller without CAP_FSETID clears setuid (and setgid with group exec); root's does not.
    open(p("suid"), "w").write("x")
    os.chmod(p("suid"), 0o6777)
    with open(p("suid"), "a") as f:
        f.write("root")
    assert stat.S_IMODE(os.stat(p("suid")).st_mode) == 0o6777
    subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", f"echo nobody >> {p('suid')}"], check=True)
    assert stat.S_IMODE(os.stat(p("suid")).st_mode) == 0o777, oct(os.stat(p("suid")).st_mode)
    os.chmod(p("suid"), 0o4777)
    subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "truncate", "-s", "1", p("suid")], check=True)
    assert stat.S_IMODE(os.stat(p("suid")).st_mode) == 0o777, oct(os.stat(p("suid")).st_mode)
    # default_permissions: nobody may not read a root 0600 file.
    open(p("secret"), "w").write("s")
    os.chmod(p("secret"), 0o600)
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "cat", p("secret")], capture_output=True)
    assert r.returncode != 0 and b"Permission denied" in r.stderr


@check
def readdir_types():
    os.makedirs(p("types"))
    open(p("types", "file"), "w").close()
    os.makedirs(p("types", "dir"))
    os.symlink("file", p("types", "link"))
    os.mkfifo(p("types", "fifo"))
    kinds = {e.name: (e.is_file(follow_symlinks=False), e.is_dir(follow_symlinks=False), e.is_symlink()) for e in os.scandir(p("types"))}
    assert kinds == {"file": (True, False, False), "dir": (False, True, False), "link": (False, False, True), "fifo": (False, False, False)}, kinds
    assert stat.S_ISFIFO(os.lstat(p("types", "fifo")).st_mode)
    expect_errno(errno.ENOTEMPTY, os.rmdir, p("types"))
    os.rmdir(p("types", "dir"))
    expect_errno(errno.ENOENT, os.rmdir, p("types", "dir"))


@check
def many_entries_readdir():
    os.makedirs(p("many"))
    names = {f"entry-{i:05d}-" + "q" * (i % 60) for i in range(2000)}
    for n in names:
        open(p("many", n), "w").close()
    assert set(os.listdir(p("many"))) == names


@check
def statfs_fsync_fallocate():
    s = os.statvfs(M)
    assert s.f_bsize > 0 and s.f_blocks > 0 and s.f_namemax == 255
    fd = os.open(p("sync"), os.O_CREAT | os.O_RDWR, 0o644)
    os.write(fd, b"x" * 10000)
    os.fsync(fd)
    os.fdatasync(fd)
    os.posix_fallocate(fd, 0, 50000)
    assert os.fstat(fd).st_size == 50000
    assert os.pread(fd, 10, 9995) == b"xxxxx" + b"\0" * 5
    os.close(fd)
    dfd = os.open(M, os.O_RDONLY | os.O_DIRECTORY)
    os.fsync(dfd)
    os.close(dfd)


@check
def mmap_reads_and_writes():
    path = p("mm")
    with open(path, "wb") as f:
        f.write(b"\0" * 3 * 4096 + b"tail")
    with open(path, "r+b") as f:
        m = mmap.mmap(f.fileno(), 0)
        m[4000:4200] = b"M" * 200
        m[-4:] = b"TAIL"
        m.flush()
        m.close()
    d = open(path, "rb").read()
    assert d[4000:4200] == b"M" * 200 and d.endswith(b"TAIL") and len(d) == 3 * 4096 + 4


@check
def xattrs():
    path = p("xa")
    open(path, "w").close()
    os.setxattr(path, "user.comment", b"secret value")
    os.setxattr(path, "user.empty", b"")
    assert os.getxattr(path, "user.comment") == b"secret value"
    assert os.getxattr(path, "user.empty") == b""
    assert sorted(os.listxattr(path)) == ["user.comment", "user.empty"]
    os.removexattr(path, "user.comment")
    expect_errno(errno.ENODATA, os.getxattr, path, "user.comment")
    expect_errno(errno.EOPNOTSUPP, os.setxattr, path, "trusted.x", b"1")


@check
def control_file_is_reserved():
    st = os.stat(p(".elastic"))
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600 and st.st_size == 0
    assert ".elastic" not in os.listdir(M)
    expect_errno(errno.EPERM, open, p(".elastic"), "w")
    expect_errno(errno.EEXIST, os.mkdir, p(".elastic"))
    expect_errno(errno.EEXIST, os.symlink, "x", p(".elastic"))
    expect_errno(errno.EEXIST, os.open, p(".elastic"), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    expect_errno(errno.EPERM, os.unlink, p(".elastic"))
    expect_errno(errno.EPERM, os.rename, p(".elastic"), p("moved"))
    open(p("victim"), "w").close()
    expect_errno(errno.EPERM, os.rename, p("victim"), p(".elastic"))
    expect_errno(errno.EPERM, os.chmod, p(".elastic"), 0o644)
    with open(p(".elastic"), "rb") as f:
        expect_errno(errno.EPERM, f.read)
    os.makedirs(p("sub-ctl"))
    open(p("sub-ctl", ".elastic"), "w").write("fine below the root")


for fn in checks:
    fn()
    print("ok", fn.__name__)
print(f"{len(checks)} passed, 0 failed")
