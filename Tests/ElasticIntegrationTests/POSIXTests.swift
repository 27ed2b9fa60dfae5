import Foundation
import Testing

/// POSIX behaviour through plain syscalls on a real mount (Scripts/posix_checks.py), and a
/// random read/write/truncate workload checked against a plain file.
@Suite(.enabled(if: Env.canMount, "needs root and /dev/fuse"))
struct POSIXTests {
    @Test func posixBehaviourThroughSyscalls() throws {
        try MountedStore.with(options: ["allow_other"]) { s in
            try sh("chmod 755 '\(s.dir)'")
            let r = try run("/usr/bin/env", ["python3", Env.scripts + "/posix_checks.py", s.mountpoint])
            expectOK(r, "posix_checks.py")
            #expect(r.stdout.contains("passed, 0 failed"))
        }
    }

    @Test func randomOperationsMatchAPlainFile() throws {
        try MountedStore.with { s in
            try sh("mkdir -p '\(s.dir)/ref'")
            for seed in 1...4 {
                let r = try run(
                    "/usr/bin/env",
                    ["python3", Env.scripts + "/random_ops.py", s.mountpoint, s.dir + "/ref", "\(seed)", "2000"])
                expectOK(r, "random_ops.py seed \(seed)")
            }
            // Everything still matches after a remount (nothing lived only in caches).
            try s.remount()
            let r = try sh("for f in '\(s.dir)'/ref/model-*; do cmp \"$f\" '\(s.mountpoint)'/$(basename \"$f\"); done")
            expectOK(r, "compare after remount")
        }
    }

    /// Unlinks are answered before BACKING has them (see `EarlyAnswer`): every later call, made
    /// at once by the same process, must see them done, and the store must check clean after.
    @Test func removalsAnsweredEarlyLookFinishedToEveryLaterCall() throws {
        try MountedStore.with { s in
            let r = try run("/usr/bin/env", ["python3", Env.scripts + "/answered_removals.py", s.mountpoint, "300"])
            expectOK(r, "answered_removals.py")
            #expect(r.stdout.contains("ok 300"))
            try s.unmount()
            expectOK(try run(Env.elastic, ["fsck", s.backing, "--unlock-keyfile", s.keyFile]), "fsck")
        }
    }

    @Test func readOnlyMountRefusesWrites() throws {
        try MountedStore.with { s in
            try sh("echo data > '\(s.path("f"))'")
            try s.remount(options: ["ro"])
            #expect(try sh("cat '\(s.path("f"))'").stdout == "data\n")
            let w = try sh("{ echo more >> '\(s.path("f"))'; } 2>&1 || echo REFUSED")
            #expect(w.stdout.contains("Read-only file system"))
            #expect(try sh("mkdir '\(s.path("d"))' 2>&1 || true").stdout.contains("Read-only"))
            #expect(try sh("cat '\(s.path("f"))'").stdout == "data\n")
        }
    }
}
