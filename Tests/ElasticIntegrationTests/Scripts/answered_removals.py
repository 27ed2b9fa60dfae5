#!/usr/bin/env python3
"""Removals answered before BACKING has them must still look finished to every later call.

Usage: answered_removals.py MOUNTPOINT ROUNDS

Each round, in one process and with no pause between calls: a file is made and removed, and
straight after the unlink the directory's times must have moved on, the name must be gone
from lookups and listings, the same name must be creatable again with new contents, and the
directory (once emptied) must be removable and renamable onto. An open file and a file with a
second name (answered only once BACKING has them) and one held by an O_PATH descriptor are
checked too. Prints "ok N" or the first
failure, and exits non-zero on failure.
"""
import errno
import os
import sys


def fail(what):
    print("FAIL", what)
    sys.exit(1)


def main():
    root, rounds = sys.argv[1], int(sys.argv[2])
    base = os.path.join(root, "answered")
    os.mkdir(base)
    for i in range(rounds):
        d = os.path.join(base, "d%d" % i)
        os.mkdir(d)
        f = os.path.join(d, "f")
        with open(f, "wb") as h:
            h.write(b"first %d" % i)
        before = os.stat(d)
        os.unlink(f)
        after = os.stat(d)
        if after.st_mtime_ns <= before.st_mtime_ns or after.st_ctime_ns <= before.st_ctime_ns:
            fail("round %d: directory times did not change with the unlink" % i)
        if os.path.lexists(f) or os.listdir(d):
            fail("round %d: the removed name is still seen" % i)
        try:
            os.unlink(f)
            fail("round %d: a second unlink succeeded" % i)
        except FileNotFoundError:
            pass
        # The same name again, at once: the new object, not the old one.
        with open(f, "wb") as h:
            h.write(b"second %d" % i)
        with open(f, "rb") as h:
            if h.read() != b"second %d" % i:
                fail("round %d: the new file reads the old contents" % i)
        os.unlink(f)
        # Emptied by an answered unlink: rmdir, or a rename onto it, must work at once.
        if i % 2 == 0:
            os.rmdir(d)
        else:
            other = os.path.join(base, "o%d" % i)
            os.mkdir(other)
            os.rename(other, d)
            os.rmdir(d)
        if os.path.lexists(d):
            fail("round %d: the removed directory is still seen" % i)
    # An open file: its unlink is answered only once done, and fstat sees no name left.
    f = os.path.join(base, "open")
    fd = os.open(f, os.O_CREAT | os.O_RDWR, 0o600)
    os.write(fd, b"still readable")
    os.unlink(f)
    if os.fstat(fd).st_nlink != 0:
        fail("an open file still has a name after its unlink")
    if os.pread(fd, 100, 0) != b"still readable":
        fail("an open, unlinked file does not read back")
    os.close(fd)
    # A file reached only through an O_PATH descriptor (no OPEN reaches the daemon): its unlink
    # is answered early, and a request on it right after waits for the removal.
    f = os.path.join(base, "path-only")
    with open(f, "wb") as h:
        h.write(b"x")
    fd = os.open(f, os.O_PATH)
    os.unlink(f)
    if os.fstat(fd).st_nlink != 0:
        fail("a file held by an O_PATH descriptor still has a name after its unlink")
    os.close(fd)
    # A file with two names: removing one leaves the other, with one link.
    a, b = os.path.join(base, "a"), os.path.join(base, "b")
    with open(a, "wb") as h:
        h.write(b"linked")
    os.link(a, b)
    os.unlink(a)
    if os.stat(b).st_nlink != 1 or open(b, "rb").read() != b"linked":
        fail("the other name of a linked file lost its link count or contents")
    os.unlink(b)
    if os.listdir(base):
        fail("left over: %s" % os.listdir(base))
    os.rmdir(base)
    print("ok", rounds)


if __name__ == "__main__":
    main()
