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

    /// ELASTIC's request loop, every way it runs: one reader that polls between requests (the
    /// default), none (`spin=0`: every worker reads, as in libfuse's loop), a single worker.
    /// One caller, then four at once, each checking what it wrote; a bad `spin=` is refused.
    @Test(arguments: [[], ["spin=0"], ["threads=1"], ["threads=1", "spin=0"]])
    func theRequestLoopServesOneCallerAndManyAtOnce(options: [String]) throws {
        try MountedStore.with(options: options) { s in
            let one = try run("/usr/bin/env", ["python3", Env.scripts + "/answered_removals.py", s.mountpoint, "40"])
            expectOK(one, "answered_removals.py with \(options)")
            let many = try sh(
                """
                cd '\(s.mountpoint)' && for j in 1 2 3 4; do
                  ( mkdir p$j && for i in $(seq 60); do head -c $((i * 997)) /dev/urandom > p$j/f$i &&
                      cp p$j/f$i p$j/g$i && cmp -s p$j/f$i p$j/g$i && rm p$j/f$i || exit 1; done && touch ok$j ) &
                done; wait; ls ok* | wc -l; find p1 p2 p3 p4 -type f | wc -l
                """)
            #expect(many.stdout.split(separator: "\n") == ["4", "240"], "four callers at once with \(options)")
            // One caller's stream of small overwrites, long enough for the loop to measure
            // spinning against not spinning and switch between the two: every write lands.
            let stream = try run(
                "/usr/bin/env",
                [
                    "python3", "-c",
                    """
                    import os, random, sys
                    path, r = sys.argv[1], random.Random(3)
                    model = bytearray(os.urandom(1 << 20))
                    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
                    os.pwrite(fd, bytes(model), 0)
                    for k in range(30000):
                        at = r.randrange(256) * 4096
                        block = bytes([k % 251]) * 4096
                        os.pwrite(fd, block, at)
                        model[at:at + 4096] = block
                    os.close(fd)
                    sys.exit(0 if open(path, "rb").read() == bytes(model) else 1)
                    """, s.path("stream"),
                ])
            expectOK(stream, "30,000 overwrites by one caller with \(options)")
            try s.unmount()
            let bad = try run(Env.mountElastic, [s.backing, s.mountpoint, "-o", "keyfile=\(s.keyFile),spin=often"])
            #expect(!bad.ok && bad.stderr.contains("spin takes microseconds"))
            #expect(!(try sh("grep -c ' \(s.mountpoint) ' /proc/mounts || true").stdout.hasPrefix("1")))
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
