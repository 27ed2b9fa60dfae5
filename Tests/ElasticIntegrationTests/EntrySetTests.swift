import Foundation
import Testing

/// The host deletes, adds, moves or swaps entries of a directory in BACKING, between mounts or
/// while mounted: the directory's sealed entry set no longer matches, and the directory is
/// refused (EIO, one log line) while everything else is served; fsck names it and --repair
/// re-seals it to what it holds after the user decided.
@Suite(.enabled(if: Env.canMount, "needs root and /dev/fuse"))
struct EntrySetTests {
    /// d holds a (3 bytes), bb (4 bytes) and ccc (5 bytes); e holds one file (6 bytes); "other"
    /// (7 bytes) is at the top. Backing sizes: 164 + length + 28.
    func populate(_ s: MountedStore) throws {
        try expectOK(
            sh(
                """
                cd '\(s.mountpoint)' && mkdir d e && printf 'a\\n' > d/a && printf 'bb\\n' > d/bb \\
                  && printf 'ccc\\n' > d/ccc && printf 'eeeee\\n' > e/f && printf 'other!\\n' > other
                """), "populate")
    }

    func dirname(_ path: String) -> String { (path as NSString).deletingLastPathComponent }

    /// What a process sees of d and of the rest.
    func expectDRefused(_ s: MountedStore, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let d = try sh("ls '\(s.path("d"))' 2>&1; cat '\(s.path("d/a"))' 2>&1; true")
        #expect(d.stdout.contains("Input/output error"), "\(d.stdout)", sourceLocation: sourceLocation)
        #expect(!d.stdout.contains("a\nbb"), "\(d.stdout)", sourceLocation: sourceLocation)
        #expect(try sh("cat '\(s.path("other"))'").stdout == "other!\n", sourceLocation: sourceLocation)
    }

    /// Between mounts: the host applies `tamper` (a shell script; $A, $B, $C are d's three
    /// files, $D and $E the two directories), then the directory is refused, fsck names it and
    /// --repair makes the store mount clean again.
    func between(_ tamper: String, fsckNames: [String] = ["/d: entries do not match"]) throws {
        try MountedStore.with { s in
            try populate(s)
            try s.unmount()
            let a = try s.backingFile(plainSize: 2), b = try s.backingFile(plainSize: 3),
                c = try s.backingFile(plainSize: 4)
            let e = try s.backingFile(plainSize: 6)
            try expectOK(
                sh(tamper, env: ["A": a, "B": b, "C": c, "D": dirname(a), "E": dirname(e)]), "tamper")
            try s.mount()
            try expectDRefused(s)
            try s.unmount()
            let fsck = try run(Env.elastic, ["fsck", s.backing, "--unlock-keyfile", s.keyFile])
            #expect(fsck.status == 40, "\(fsck.stdout)")
            for name in fsckNames { #expect(fsck.stdout.contains(name), "\(fsck.stdout)") }
            let repair = try run(Env.elastic, ["fsck", s.backing, "--repair", "--unlock-keyfile", s.keyFile])
            #expect(repair.stdout.contains("re-sealed"), "\(repair.stdout)")
            let again = try run(Env.elastic, ["fsck", s.backing, "--unlock-keyfile", s.keyFile])
            #expect(again.status == 0, "\(again.stdout)")
            try s.mount()
            #expect(try sh("ls '\(s.path("d"))' >/dev/null && echo listed").stdout == "listed\n")
        }
    }

    @Test func deletedEntry() throws { try between("rm \"$A\"") }

    @Test func entryMovedToAnotherDirectory() throws {
        try between("mv \"$A\" \"$E/\"", fsckNames: ["/d: entries do not match", "/e: entries do not match"])
    }

    @Test func entryMovedInFromAnotherDirectory() throws {
        try between(
            "find \"$E\" -type f ! -name 'elastic.*' -exec mv {} \"$D/\" \\;",
            fsckNames: ["/d: entries do not match", "/e: entries do not match"])
    }

    @Test func entryCopiedIn() throws {
        // Another file's backing file under a new name: its own header is valid.
        try between("cp \"$C\" \"$D/$(basename \"$E\")\"")
    }

    @Test func twoFilesSwapped() throws {
        try between("mv \"$A\" \"$D/t\" && mv \"$B\" \"$A\" && mv \"$D/t\" \"$B\"")
    }

    @Test func headerOfAnotherFileCopiedIn() throws {
        try between("head -c 164 \"$B\" | dd of=\"$A\" conv=notrunc status=none", fsckNames: ["/d/", "/d: entries"])
    }

    /// While mounted, after the kernel's caches expire: every change is refused when used.
    @Test func whileMounted() throws {
        try MountedStore.with { s in
            try populate(s)
            #expect(try sh("ls '\(s.path("d"))' | tr '\\n' ' '").stdout == "a bb ccc ")
            let a = try s.backingFile(plainSize: 2), b = try s.backingFile(plainSize: 3)
            // Swap a and bb.
            try expectOK(sh("mv '\(a)' '\(a).t' && mv '\(b)' '\(a)' && mv '\(a).t' '\(b)' && sleep 1.5"), "swap")
            let swapped = try sh("cat '\(s.path("d/a"))' 2>&1; true").stdout
            expectRefused(swapped, hiding: "bb", in: s)
            // Put them back; then delete one and add one.
            try expectOK(sh("mv '\(a)' '\(a).t' && mv '\(b)' '\(a)' && mv '\(a).t' '\(b)'"), "swap back")
            try expectOK(sh("cp '\(b)' '\(b)'.x; mv '\(b)'.x \"$(dirname '\(b)')/injected\"; sleep 1.5"), "inject")
            #expect(try sh("ls '\(s.path("d"))' 2>&1; true").stdout.contains("Input/output error"))
            try expectOK(sh("rm \"$(dirname '\(b)')/injected\" && rm '\(a)' && sleep 1.5"), "delete")
            let deleted = try sh("cat '\(s.path("d/a"))' 2>&1; ls '\(s.path("d"))' 2>&1; true").stdout
            #expect(
                deleted.contains("Input/output error") && !deleted.contains("No such file"), "\(deleted)")
            // (The rest of d is served while the daemon keeps d loaded; once it forgets d, under
            // memory pressure or a drop of caches, d is checked again and refused as a whole.)
            #expect(try sh("cat '\(s.path("other"))'").stdout == "other!\n")
        }
    }

    /// The directory put back to an earlier version while mounted (its IV file with the entry
    /// set, and its entries): refused, even once the daemon forgot the directory's inode.
    @Test func directoryPutBackWhileMounted() throws {
        try MountedStore.with { s in
            try populate(s)
            let d = dirname(try s.backingFile(plainSize: 2))
            try expectOK(sh("cp -a '\(d)' '\(s.dir)/old' && printf 'new\\n' > '\(s.path("d/new"))'"), "snapshot")
            // Drop the kernel's dentries and inodes, so the daemon forgets d and reads it again.
            try expectOK(
                sh("rm -rf '\(d)' && cp -a '\(s.dir)/old' '\(d)' && sleep 1.5 && echo 2 > /proc/sys/vm/drop_caches"),
                "put back")
            let r = try sh("ls '\(s.path("d"))' 2>&1; true").stdout
            expectRefused(r, hiding: "new", in: s)
        }
    }

    /// A file put back to an earlier version of itself (header and blocks) while mounted,
    /// once the kernel forgot its inode: its header is not the last this mount saw, so it is
    /// refused. (While the inode is cached its header is the daemon's copy, and its record
    /// names every block: BlockVersionTests.)
    @Test func filePutBackWhileMountedIsRefused() throws {
        try MountedStore.with { s in
            try expectOK(sh("echo version-one > '\(s.path("f"))' && echo other > '\(s.path("g"))'"), "v1")
            let f = try s.backingFile(plainSize: 12)
            try expectOK(
                sh(
                    "cp '\(f)' '\(s.dir)/old' && echo version-two-longer > '\(s.path("f"))' && sleep 1.2 && cp '\(s.dir)/old' '\(f)' && echo 2 > /proc/sys/vm/drop_caches && sleep 1.2"
                ), "put back")
            let r = try sh("cat '\(s.path("f"))' 2>&1; true").stdout
            expectRefused(r, hiding: "version-one", in: s)
            #expect(try sh("cat '\(s.path("g"))'").stdout == "other\n")
        }
    }

    /// A subdirectory's IV file (record and entry set) put in place of the top directory's:
    /// only the store's root has the root's record, so the mount is refused (exit 14).
    @Test func subdirectoryPutInPlaceOfTheRootIsRefusedAtMount() throws {
        try MountedStore.with { s in
            try populate(s)
            try s.unmount()
            let d = dirname(try s.backingFile(plainSize: 2))
            try expectOK(sh("cp '\(d)/elastic.diriv' '\(s.backing)/elastic.diriv'"), "tamper")
            let r = try run(Env.mountElastic, [s.backing, s.mountpoint, "-o", "keyfile=" + s.keyFile])
            #expect(r.status == 14 && r.stderr.contains("not the store's root"), "\(r.status) \(r.stderr)")
            _ = try? sh("fusermount3 -u '\(s.mountpoint)' 2>/dev/null")
        }
    }

    /// What a crash can leave beside the entries (a new object under its temporary name, a
    /// sidecar's temporary file) is not an entry: the directory loads, and the leftovers go.
    @Test func crashLeftoversAreNotEntries() throws {
        try MountedStore.with { s in
            try populate(s)
            try s.unmount()
            let d = dirname(try s.backingFile(plainSize: 2))
            let hash = String(repeating: "A", count: 43)
            try expectOK(
                sh(
                    "echo x > '\(d)/elastic.ln.\(hash).name.tmp' && echo y > '\(d)/elastic.new.0123456789abcdef' && mkdir '\(d)/elastic.new.00000000000000ff'"
                ), "leftovers")
            try s.mount()
            #expect(try sh("ls '\(s.path("d"))' | tr '\\n' ' '").stdout == "a bb ccc ")
            #expect(try sh("ls -A '\(d)' | grep -c 'elastic.new\\|name.tmp' || true").stdout == "0\n")
        }
    }

    /// Everything a user does to names through the mount keeps every set sealed: fsck is clean.
    @Test func namespaceChangesKeepTheSetsSealed() throws {
        try MountedStore.with { s in
            try populate(s)
            try expectOK(
                sh(
                    """
                    cd '\(s.mountpoint)' && mv d/a e/a && mv d/bb d/b2 && ln e/a d/hard && mkdir d/sub \\
                      && mv d/ccc d/sub/ && python3 -c 'import ctypes,os; l=ctypes.CDLL(None,use_errno=True); \\
                      assert l.renameat2(-100,b"e/f",-100,b"d/b2",2)==0' && mv e/f d/bb && rm e/a && rmdir e && mkdir e \\
                      && ln -s target d/sub/link && mkfifo d/fifo && mv d/sub e/sub && touch "$(printf 'x%.0s' $(seq 200))"
                    """), "rename, link, exchange, unlink, rmdir, symlink, fifo, long name")
            #expect(
                try sh("cd '\(s.mountpoint)' && find . | sort | tr '\\n' ' '").stdout.hasPrefix(
                    ". ./d ./d/b2 ./d/bb ./d/fifo ./d/hard ./e ./e/sub ./e/sub/ccc ./e/sub/link ./other "))
            try s.unmount()
            let fsck = try run(Env.elastic, ["fsck", s.backing, "--unlock-keyfile", s.keyFile])
            #expect(fsck.status == 0, "\(fsck.stdout)")
            try s.mount()
            #expect(try sh("cat '\(s.path("d/b2"))' '\(s.path("d/bb"))'").stdout == "eeeee\nbb\n")
        }
    }
}
