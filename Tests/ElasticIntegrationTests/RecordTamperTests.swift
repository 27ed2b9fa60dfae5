import Foundation
import Testing

/// The host edits what v1 took from the backing files (owner, mode, type, length): a process
/// in the VM still sees what ELASTIC recorded, or gets EIO, never the host's version.
@Suite(.enabled(if: Env.canMount, "needs root and /dev/fuse"))
struct RecordTamperTests {
    /// The backing directory of the one directory at the top of the store.
    func onlyDirectory(_ s: MountedStore) throws -> String {
        let found = try sh("find '\(s.backing)' -mindepth 1 -maxdepth 1 -type d ! -name 'elastic.*'").stdout
            .split(separator: "\n")
        guard found.count == 1 else { throw TestFailure("expected one backing directory, found \(found)") }
        return String(found[0])
    }

    /// Overwrites cipher block `index` of the backing file `path` with zeros, as a host can.
    func zeroBlock(_ index: Int, of path: String) throws {
        try expectOK(
            sh(
                "python3 -c 'import sys; f = open(sys.argv[1], \"r+b\"); f.seek(164 + \(index) * 4124); f.write(bytes(4124))' '\(path)'"
            ), "zero block \(index) of \(path)")
    }

    @Test func ownerAndModeEditedInBackingChangeNothingInside() throws {
        try MountedStore.with { s in
            try expectOK(
                sh("head -c 5000 /dev/urandom > '\(s.path("secret"))' && chmod 0600 '\(s.path("secret"))'"), "write")
            try s.unmount()
            let b = try s.backingFile(plainSize: 5000)
            // The host makes the backing file world-writable, setuid, and another user's.
            try expectOK(sh("chmod 6777 '\(b)' && chown 1000:1000 '\(b)'"), "tamper")
            try s.mount()
            #expect(try sh("stat -c '%a %u %g' '\(s.path("secret"))'").stdout == "600 0 0\n")
            // A process of uid 1000 still cannot read it.
            let other = try sh(
                "setpriv --reuid=1000 --regid=1000 --clear-groups cat '\(s.path("secret"))' 2>&1 || true")
            #expect(other.stdout.contains("Permission denied"), "\(other.stdout)")
        }
    }

    @Test func directoryOwnerAndModeEditedInBackingChangeNothingInside() throws {
        try MountedStore.with { s in
            try expectOK(
                sh(
                    "mkdir -m 0700 '\(s.path("private"))' && echo x > '\(s.path("private/f"))' && chmod 0755 '\(s.mountpoint)'"
                ),
                "write")
            try s.unmount()
            let dir = try onlyDirectory(s)
            try expectOK(sh("chmod 0777 '\(dir)' && chown 1000:1000 '\(dir)'"), "tamper")
            try s.mount()
            #expect(try sh("stat -c '%a %u %g' '\(s.path("private"))'").stdout == "700 0 0\n")
            let other = try sh(
                "setpriv --reuid=1000 --regid=1000 --clear-groups ls '\(s.path("private"))' 2>&1 || true")
            #expect(other.stdout.contains("Permission denied"), "\(other.stdout)")
            // Another directory's record (the root's, 0755) spliced in after this one's IV: it
            // is bound to the other IV and does not open here.
            try s.unmount()
            try expectOK(
                sh(
                    "(head -c 16 '\(dir)/elastic.diriv'; tail -c +17 '\(s.backing)/elastic.diriv') > '\(s.dir)/spliced' && chmod 600 '\(dir)/elastic.diriv' && cat '\(s.dir)/spliced' > '\(dir)/elastic.diriv'"
                ), "splice record")
            try s.mount()
            let r = try sh("ls '\(s.path("private"))' 2>&1; stat '\(s.path("private"))' 2>&1; true")
            #expect(r.stdout.contains("Input/output error"), "\(r.stdout)")
        }
    }

    @Test func deviceNodePutInPlaceOfAFileIsRefused() throws {
        try MountedStore.with { s in
            try expectOK(
                sh(
                    "mkdir '\(s.path("d"))' && echo data > '\(s.path("d/log"))' && echo innocent > '\(s.path("other"))'"
                ),
                "write")
            try s.unmount()
            let b = try s.backingFile(plainSize: 5)
            // The host swaps the file for a device node of the VM's memory, mode 0666. (Its
            // directory's entry set no longer verifies: the directory is refused as a whole.)
            try expectOK(sh("rm '\(b)' && mknod -m 0666 '\(b)' c 1 1"), "tamper")
            try s.mount()
            let r = try sh("stat '\(s.path("d/log"))' 2>&1 || true; cat '\(s.path("d/log"))' 2>&1 || true")
            #expect(r.stdout.contains("Input/output error"), "\(r.stdout)")
            #expect(try sh("cat '\(s.path("other"))'").stdout == "innocent\n")
        }
    }

    /// The attack on v1: a regular file turned into a symlink (a log that a process appends to
    /// would then write outside the mount). v2 has no backing symlinks at all: one put there is
    /// refused, and a symlink's type lives in its record.
    @Test func symlinkPutInPlaceOfAFileIsRefused() throws {
        try MountedStore.with { s in
            try expectOK(
                sh(
                    "mkdir '\(s.path("d"))' && echo line > '\(s.path("d/app.log"))' && ln -s /etc/passwd '\(s.path("link"))'"
                ), "populate")
            #expect(try sh("find '\(s.backing)' -type l | wc -l").stdout == "0\n")
            try s.unmount()
            let log = try s.backingFile(plainSize: 5)
            try expectOK(sh("rm '\(log)' && ln -s /etc/passwd '\(log)'"), "tamper")
            try s.mount()
            let r = try sh(
                "{ echo more >> '\(s.path("d/app.log"))'; } 2>&1 || true; stat '\(s.path("d/app.log"))' 2>&1 || true")
            #expect(r.stdout.contains("Input/output error"), "\(r.stdout)")
            #expect(try sh("readlink '\(s.path("link"))'").stdout == "/etc/passwd\n")
            #expect(try sh("stat -c '%F %s' '\(s.path("link"))'").stdout == "symbolic link 11\n")
        }
    }

    @Test func specialFilesKeepTheirTypeOwnerAndDevice() throws {
        try MountedStore.with { s in
            try expectOK(
                sh(
                    "mkfifo -m 0620 '\(s.path("fifo"))' && mknod -m 0640 '\(s.path("null"))' c 1 3 && chown 7:8 '\(s.path("null"))'"
                ), "make")
            try s.remount()
            #expect(try sh("stat -c '%F %a %u %g %t %T' '\(s.path("fifo"))'").stdout == "fifo 620 0 0 0 0\n")
            #expect(
                try sh("stat -c '%F %a %u %g %t %T' '\(s.path("null"))'").stdout
                    == "character special file 640 7 8 1 3\n")
            // In BACKING both are plain 0600 files: type, mode and device number are sealed.
            #expect(try sh("find '\(s.backing)' -type f -perm 0600 -size 164c | wc -l").stdout == "2\n")
            #expect(try sh("find '\(s.backing)' ! -type f ! -type d | wc -l").stdout == "0\n")
        }
    }

    @Test func cutOrExtendedFilesNeverShowTheHostsLength() throws {
        try MountedStore.with { s in
            try expectOK(
                sh(
                    "head -c 12288 /dev/urandom > '\(s.path("cut"))' && head -c 8200 /dev/urandom > '\(s.path("grown"))'"
                ),
                "write")
            let grownSum = try sh("md5sum < '\(s.path("grown"))'").stdout
            try s.unmount()
            let cut = try s.backingFile(plainSize: 12288), grown = try s.backingFile(plainSize: 8200)
            // Cut at a block boundary (v1 read this as a shorter, valid file); zeros appended.
            try expectOK(
                sh("truncate -s \(164 + 2 * 4124) '\(cut)' && head -c 9000 /dev/zero >> '\(grown)'"), "tamper")
            try s.mount()
            #expect(try sh("stat -c %s '\(s.path("cut"))'").stdout == "12288\n")
            let r = try sh("cat '\(s.path("cut"))' > /dev/null 2>'\(s.dir)/err' && echo READ_OK || cat '\(s.dir)/err'")
            #expect(r.stdout.contains("Input/output error"), "\(r.stdout)")
            #expect(try sh("stat -c %s '\(s.path("grown"))'").stdout == "8200\n")
            #expect(try sh("md5sum < '\(s.path("grown"))'").stdout == grownSum)
            // Writing past the end drops what the host appended: the gap reads as zeros.
            try expectOK(sh("printf x | dd of='\(s.path("grown"))' bs=1 seek=20000 conv=notrunc 2>/dev/null"), "extend")
            #expect(try sh("tail -c +8201 '\(s.path("grown"))' | head -c 11799 | tr -d '\\0' | wc -c").stdout == "0\n")
        }
    }

    /// Holes are recorded: only a file that was grown past its end may read an all-zero block
    /// as zeros. A block the host zeroes in any other file fails (v1 read it as zeros).
    @Test func zeroedBlockFailsUnlessTheFileHasHoles() throws {
        try MountedStore.with { s in
            try expectOK(
                sh(
                    "head -c 12288 /dev/urandom > '\(s.path("dense"))' && truncate -s 1G '\(s.path("sparse"))' && printf end >> '\(s.path("sparse"))'"
                ), "write")
            try s.unmount()
            let dense = try s.backingFile(plainSize: 12288)
            try zeroBlock(1, of: dense)
            try s.mount()
            let r = try sh(
                "cat '\(s.path("dense"))' > /dev/null 2>'\(s.dir)/err' && echo READ_OK || cat '\(s.dir)/err'")
            #expect(r.stdout.contains("Input/output error"), "\(r.stdout)")
            // Its record names every block: the file is refused as a whole.
            #expect(try sh("head -c 4096 '\(s.path("dense"))' 2>/dev/null | wc -c").stdout == "0\n")
            #expect(try sh("tail -c 3 '\(s.path("sparse"))'").stdout == "end")
            #expect(try sh("head -c 1048576 '\(s.path("sparse"))' | tr -d '\\0' | wc -c").stdout == "0\n")
            try s.unmount()
            let fsck = try run(Env.elastic, ["fsck", s.backing, "--unlock-keyfile", s.keyFile])
            #expect(fsck.status == 40 && fsck.stdout.contains("/dense: 1 of 3 blocks fail"), "\(fsck.stdout)")
            #expect(!fsck.stdout.contains("/sparse"), "\(fsck.stdout)")
            try s.mount()
        }
    }

    /// RENAME_WHITEOUT would leave a backing device node (overlayfs's whiteout), which v2 never
    /// makes: refused with EINVAL, nothing moved (fsstress uses it).
    @Test func whiteoutRenameIsRefused() throws {
        try MountedStore.with { s in
            try expectOK(sh("echo a > '\(s.path("a"))'"), "write")
            let r = try sh(
                "python3 -c 'import ctypes, os, sys; libc = ctypes.CDLL(None, use_errno=True); rc = libc.renameat2(-100, sys.argv[1].encode(), -100, sys.argv[2].encode(), 4); print(rc, os.strerror(ctypes.get_errno()))' '\(s.path("a"))' '\(s.path("b"))'"
            )
            #expect(r.stdout == "-1 Invalid argument\n", "\(r.stdout)")
            #expect(try sh("cat '\(s.path("a"))'").stdout == "a\n")
            #expect(try sh("find '\(s.backing)' ! -type f ! -type d | wc -l").stdout == "0\n")
        }
    }

    /// mtime and ctime are the record's: a host that sets the backing file's times (to make a
    /// build tool or rsync skip or redo a file) changes nothing inside.
    @Test func timesEditedInBackingChangeNothingInside() throws {
        try MountedStore.with { s in
            try expectOK(
                sh("echo v1 > '\(s.path("built.o"))' && touch -m -d @1893456000 '\(s.path("built.o"))'"),
                "write")
            let before = try sh("stat -c '%Y %Z' '\(s.path("built.o"))'").stdout
            #expect(before.hasPrefix("1893456000 "), "\(before)")
            try s.unmount()
            let b = try s.backingFile(plainSize: 3)
            try expectOK(sh("touch -d '2001-01-01 00:00:00' '\(b)'"), "tamper")
            try s.mount()
            #expect(try sh("stat -c '%Y %Z' '\(s.path("built.o"))'").stdout == before)
            // chmod moves ctime, not mtime; a write moves both.
            try expectOK(sh("sleep 1.1; chmod 600 '\(s.path("built.o"))'"), "chmod")
            let afterChmod = try sh("stat -c '%Y %Z' '\(s.path("built.o"))'").stdout.split(separator: " ")
            #expect(afterChmod[0] == "1893456000" && afterChmod[1] != before.split(separator: " ")[1])
            try expectOK(sh("echo v2 >> '\(s.path("built.o"))'"), "append")
            #expect(try sh("stat -c %Y '\(s.path("built.o"))'").stdout != "1893456000\n")
        }
    }

    /// A directory's record (from its elastic.diriv) put in front of a file: refused, never a
    /// file that claims to be a directory.
    @Test func directoryRecordNeverHeadsAFile() throws {
        try MountedStore.with { s in
            try expectOK(sh("mkdir '\(s.path("e"))' && echo victim > '\(s.path("e/victim"))'"), "write")
            try s.unmount()
            let victim = try s.backingFile(plainSize: 7)
            try expectOK(
                sh(
                    "(printf 'ELFB\\000\\002\\000\\000'; cat '\(s.backing)/elastic.diriv') > '\(s.dir)/h' && cat '\(s.dir)/h' > '\(victim)'"
                ), "splice")
            try s.mount()
            let r = try sh("stat -c %F '\(s.path("e/victim"))' 2>&1 || true")
            #expect(r.stdout.contains("Input/output error"), "\(r.stdout)")
            #expect(try sh("ls '\(s.mountpoint)' | sort | tr '\\n' ' '").stdout == "e ")
            try s.unmount()
            let fsck = try run(Env.elastic, ["fsck", s.backing, "--unlock-keyfile", s.keyFile])
            #expect(fsck.status == 40 && fsck.stdout.contains("/e/victim: file header"), "\(fsck.stdout)")
            try s.mount()
        }
    }

    /// fallocate allocates: the bytes are sealed zeros, not holes, so a block the host zeroes
    /// fails; and a FIFO put in place of a directory's elastic.diriv never blocks the daemon.
    @Test func fallocateWritesZerosAndAPlantedFifoDoesNotHang() throws {
        try MountedStore.with { s in
            try expectOK(
                sh("fallocate -l 12288 '\(s.path("p"))' && mkdir '\(s.path("d"))' && chmod 0755 '\(s.mountpoint)'"),
                "allocate")
            try s.unmount()
            let p = try s.backingFile(plainSize: 12288)
            try zeroBlock(1, of: p)
            let dir = try onlyDirectory(s)
            try s.mount()
            try expectOK(sh("stat '\(s.path("d"))' > /dev/null"), "load d")
            try expectOK(sh("rm '\(dir)/elastic.diriv' && mkfifo '\(dir)/elastic.diriv'"), "plant fifo")
            let chmod = try sh("timeout 20 chmod 700 '\(s.path("d"))' 2>&1; echo rc=$?")
            #expect(!chmod.stdout.contains("rc=124"), "chmod hung: \(chmod.stdout)")  // (timeout's status)
            let r = try sh("cat '\(s.path("p"))' > /dev/null 2>'\(s.dir)/err' && echo READ_OK || cat '\(s.dir)/err'")
            #expect(r.stdout.contains("Input/output error"), "\(r.stdout)")
        }
    }

    @Test func fsckNamesAFileWhoseRecordWasEdited() throws {
        try MountedStore.with { s in
            try expectOK(sh("mkdir '\(s.path("d"))' && head -c 777 /dev/urandom > '\(s.path("d/f"))'"), "write")
            try s.unmount()
            let b = try s.backingFile(plainSize: 777)
            try flipByte(b, at: 50)  // inside the sealed record
            let r = try run(Env.elastic, ["fsck", s.backing, "--unlock-keyfile", s.keyFile])
            #expect(r.status == 40, "\(r.stdout)")
            #expect(r.stdout.contains("/d/f: file header"), "\(r.stdout)")
        }
    }
}
