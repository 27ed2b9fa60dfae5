import Foundation
import Glibc
import Testing

/// A whole object put back between mounts to an older version of itself (every piece of it
/// authenticates, and within the object everything agrees) is refused: each read-write mount
/// ends by recording the version of every object (`elastic.versions`, named by the root), and
/// the next mount accepts only those. After a crash, versions from the crashed session are
/// accepted, never older ones.
@Suite(.enabled(if: Env.canMount, "needs root and /dev/fuse"))
struct ObjectVersionTests {
    /// Kills the daemon of `s` (as a crash would) and clears its dead mount.
    func crash(_ s: MountedStore) throws {
        guard let pid = try s.daemonPID() else { throw TestFailure("no daemon") }
        kill(pid, SIGKILL)
        try sh(
            "for i in $(seq 50); do grep -q ' \(s.mountpoint) ' /proc/mounts || exit 0; sleep 0.1; done; fusermount3 -u '\(s.mountpoint)' || true"
        )
        s.markUnmounted()
    }

    func fsck(_ s: MountedStore, repair: Bool = false) throws -> CommandResult {
        try run(Env.elastic, ["fsck", s.backing, "--unlock-keyfile", s.keyFile] + (repair ? ["--repair"] : []))
    }

    @Test func aWholeFilePutBackBetweenMountsIsRefused() throws {
        try MountedStore.with { s in
            try expectOK(
                sh("echo 'balance: 100' > '\(s.path("ledger"))' && echo other > '\(s.path("other"))'"), "write")
            try s.unmount()
            let b = try s.backingFile(plainSize: 13)
            try expectOK(sh("cp '\(b)' '\(s.dir)/old'"), "save the whole backing file")
            try s.mount()
            try expectOK(sh("echo 'balance: 000' > '\(s.path("ledger"))'"), "update")
            try s.unmount()
            try expectOK(sh("cp '\(s.dir)/old' '\(b)'"), "put the old file back")
            try s.mount()
            let r = try sh("cat '\(s.path("ledger"))' 2>&1; true").stdout
            expectRefused(r, hiding: "100", in: s)
            #expect(try sh("cat '\(s.path("other"))'").stdout == "other\n", "the rest of the store is served")
            try s.unmount()
            let check = try fsck(s)
            #expect(
                check.status == 40
                    && check.stdout.contains("/ledger: an earlier version of the file than the store recorded"),
                "\(check.stdout)")
            // The user decides: repair accepts what is there now, and the store mounts clean.
            let repaired = try fsck(s, repair: true)
            #expect(
                repaired.status == 0 && repaired.stdout.contains("accepted as the current version"),
                "\(repaired.stdout)")
            try s.mount()
            #expect(try sh("cat '\(s.path("ledger"))'").stdout == "balance: 100\n")
        }
    }

    /// A directory put back whole (its `elastic.diriv` and its entries, a removed file back and
    /// a new one gone) is refused; so is a file's header put back to an older mode.
    @Test func aWholeDirectoryOrAnOlderModePutBackIsRefused() throws {
        try MountedStore.with { s in
            try expectOK(
                sh(
                    "mkdir '\(s.path("d"))' && echo a > '\(s.path("d/a"))' && echo b > '\(s.path("d/b"))' && echo 'top secret' > '\(s.path("secret"))' && chmod 644 '\(s.path("secret"))'"
                ), "write")
            try s.unmount()
            let dir = try sh("dirname $(find '\(s.backing)' -mindepth 2 -name elastic.diriv)").stdout
                .trimmingCharacters(in: .whitespacesAndNewlines)
            let secret = try s.backingFile(plainSize: 11)
            try expectOK(sh("cp -a '\(dir)' '\(s.dir)/old-d' && head -c 164 '\(secret)' > '\(s.dir)/old-h'"), "save")
            try s.mount()
            try expectOK(
                sh("rm '\(s.path("d/a"))' && echo c > '\(s.path("d/c"))' && chmod 600 '\(s.path("secret"))'"), "change")
            try s.unmount()
            try expectOK(
                sh(
                    "rm -rf '\(dir)' && cp -a '\(s.dir)/old-d' '\(dir)' && dd if='\(s.dir)/old-h' of='\(secret)' conv=notrunc status=none"
                ), "put back")
            try s.mount()
            let ls = try sh("ls '\(s.path("d"))' 2>&1; true").stdout
            #expect(ls.contains("Input/output error"), "\(ls)")
            let stat = try sh("stat -c %a '\(s.path("secret"))' 2>&1; true").stdout
            expectRefused(stat, hiding: "644", in: s)
            try s.unmount()
            let check = try fsck(s)
            #expect(check.status == 40, "\(check.stdout)")
            #expect(check.stdout.contains("/d: an earlier version of the directory's record"), "\(check.stdout)")
            #expect(check.stdout.contains("/secret: an earlier version of the file"), "\(check.stdout)")
        }
    }

    /// After a crash the next mount reads every object's version: what the crashed session
    /// wrote is accepted with no alarm, and a version older than the last clean unmount is not.
    @Test func afterACrashOnlyVersionsFromTheCrashedSessionAreAccepted() throws {
        try MountedStore.with { s in
            try expectOK(sh("echo v1 > '\(s.path("f"))' && echo other > '\(s.path("g"))'"), "v1")
            try s.unmount()
            let f = try s.backingFile(plainSize: 3)
            try expectOK(sh("cp '\(f)' '\(s.dir)/f-v1'"), "save f at v1")
            try s.mount()
            try expectOK(sh("echo v2 > '\(s.path("f"))'"), "v2")
            try s.unmount()
            try s.mount()
            try expectOK(
                sh("echo v3 > '\(s.path("f"))' && echo v3 > '\(s.path("g"))' && mkdir '\(s.path("new"))' && sync"), "v3"
            )
            try crash(s)
            try s.mount()
            #expect(try sh("cat '\(s.path("f"))' '\(s.path("g"))' && ls '\(s.path("new"))'").stdout == "v3\nv3\n")
            try s.unmount()
            #expect(try fsck(s).status == 0, "clean after the crash")
            // Crash again, then put back the version from before the last clean unmount.
            try s.mount()
            try expectOK(sh("echo v4 > '\(s.path("f"))' && sync"), "v4")
            try crash(s)
            try expectOK(sh("cp '\(s.dir)/f-v1' '\(f)'"), "put back v1")
            try s.mount()
            let r = try sh("cat '\(s.path("f"))' 2>&1; true").stdout
            expectRefused(r, hiding: "v1", in: s)
            #expect(try sh("cat '\(s.path("g"))'").stdout == "v3\n")
        }
    }

    /// A mount records versions at checkpoints too (`checkpoint=SECONDS`), so a host that kills
    /// the VM cannot bring back a version older than the last checkpoint.
    @Test func aCheckpointBoundsWhatACrashLetsComeBack() throws {
        try MountedStore.with(options: ["checkpoint=1"]) { s in
            try expectOK(
                sh("echo v1 > '\(s.path("f"))' && echo keep > '\(s.path("g"))' && sync"), "v1")
            let f = try s.backingFile(plainSize: 3)
            try expectOK(sh("cp '\(f)' '\(s.dir)/f-v1'"), "save v1")
            // A checkpoint that surely holds v2: after the first one that ends after v2 was
            // written (it may have begun before), another write, and the checkpoint after it.
            let root = "sha256sum '\(s.backing)/elastic.root'"
            let nextCheckpoint =
                "r=$(\(root)); for i in $(seq 600); do [ \"$(\(root))\" != \"$r\" ] && exit 0; sleep 0.1; done; exit 1"
            try expectOK(sh("echo v2 > '\(s.path("f"))' && sync && \(nextCheckpoint)"), "v2, a checkpoint ends")
            try expectOK(sh("echo h > '\(s.path("h"))' && sync && \(nextCheckpoint)"), "another write, a checkpoint")
            try crash(s)
            try expectOK(sh("cp '\(s.dir)/f-v1' '\(f)'"), "put back v1")
            try s.mount(options: ["checkpoint=1"])
            let r = try sh("cat '\(s.path("f"))' 2>&1; true").stdout
            expectRefused(r, hiding: "v1", in: s)
            #expect(try sh("cat '\(s.path("g"))'").stdout == "keep\n")
        }
    }

    /// A map written at a clean unmount names that session's versions exactly: after a crash of
    /// the next session, an earlier version from the cleanly ended one is still refused.
    @Test func aCleanUnmountRecordsItsSessionExactly() throws {
        try MountedStore.with { s in
            try expectOK(sh("echo v1 > '\(s.path("f"))' && sync"), "v1")
            let f = try s.backingFile(plainSize: 3)
            try expectOK(sh("cp '\(f)' '\(s.dir)/f-v1' && echo v2 > '\(s.path("f"))'"), "save v1, write v2")
            try s.unmount()
            try s.mount()
            try expectOK(sh("echo other > '\(s.path("g"))' && sync"), "the next session writes")
            try crash(s)
            try expectOK(sh("cp '\(s.dir)/f-v1' '\(f)'"), "put back v1")
            try s.mount()
            let r = try sh("cat '\(s.path("f"))' 2>&1; true").stdout
            expectRefused(r, hiding: "v1", in: s)
            #expect(try sh("cat '\(s.path("g"))'").stdout == "other\n", "the crashed session's write is accepted")
        }
    }

    /// The versions map itself is named by the root: deleted or put back, the store is refused.
    @Test func theVersionsMapIsBoundToTheRoot() throws {
        try MountedStore.with { s in
            try expectOK(sh("echo one > '\(s.path("f"))'"), "write")
            try s.unmount()
            try expectOK(sh("cp '\(s.backing)/elastic.versions' '\(s.dir)/versions-old'"), "save")
            try s.mount()
            try expectOK(sh("echo two > '\(s.path("f"))'"), "write")
            try s.unmount()
            try expectOK(sh("cp '\(s.dir)/versions-old' '\(s.backing)/elastic.versions'"), "put back")
            let old = try run(Env.mountElastic, [s.backing, s.mountpoint, "-o", "keyfile=\(s.keyFile)"])
            #expect(old.status == 14 && old.stderr.contains("elastic.versions is not the version"), "\(old.stderr)")
            try expectOK(sh("rm '\(s.backing)/elastic.versions'"), "delete")
            let gone = try run(Env.mountElastic, [s.backing, s.mountpoint, "-o", "keyfile=\(s.keyFile)"])
            #expect(gone.status == 14 && gone.stderr.contains("elastic.versions is missing"), "\(gone.stderr)")
            let check = try fsck(s)
            #expect(check.status == 40 && check.stdout.contains("elastic.versions"), "\(check.stdout)")
            #expect(try fsck(s, repair: true).status == 0)
            try s.mount()
            #expect(try sh("cat '\(s.path("f"))'").stdout == "two\n")
        }
    }
}
