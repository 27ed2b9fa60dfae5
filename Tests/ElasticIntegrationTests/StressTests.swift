import Foundation
import Testing

/// Concurrent writers and readers on shared files, then every byte checked against a model.
@Suite(.enabled(if: Env.canMount, "needs root and /dev/fuse"))
struct StressTests {
    @Test func concurrentOverlappingWritersAndReaders() throws {
        try MountedStore.with { s in
            let r = try run("/usr/bin/env", ["python3", Env.scripts + "/stress.py", s.mountpoint, "15"])
            expectOK(r, "stress.py")
            // And the same bytes after a remount.
            let sums = try sh("cd '\(s.mountpoint)' && sha256sum shared-*").stdout
            try s.remount()
            #expect(try sh("cd '\(s.mountpoint)' && sha256sum shared-*").stdout == sums)
        }
    }

    /// Creates, writes, renames, hard links and deletes by several processes in the same
    /// directories, with listers walking the tree: the tree then holds exactly what every
    /// process's model says, after a remount too, and fsck finds the store clean.
    @Test func concurrentNameSpaceChangesMatchTheModel() throws {
        try MountedStore.with { s in
            let script = Env.scripts + "/namespace_stress.py"
            let r = try run("/usr/bin/env", ["python3", script, s.mountpoint, "12"])
            expectOK(r, "namespace_stress.py")
            let model = s.dir + "/model.json"
            try r.stdout.write(toFile: model, atomically: true, encoding: .utf8)
            try s.remount()
            expectOK(try run("/usr/bin/env", ["python3", script, s.mountpoint, "--verify", model]), "after a remount")
            try s.unmount()
            let fsck = try run(Env.elastic, ["fsck", s.backing, "--unlock-keyfile", s.keyFile])
            #expect(fsck.status == 0 && fsck.stdout.contains(": clean"), "\(fsck.stdout)")
            try s.mount()
        }
    }
}

/// Runs a kill-and-remount script of Scripts/ (`BIN_DIR WORK_DIR` then `args`) in a fresh work
/// directory on tmpfs, expects it to succeed, and removes the directory (and a mount a run cut
/// short left) afterwards.
private func runKillScript(_ script: String, _ args: [String]) throws -> CommandResult {
    let work = try sh("mktemp -d /dev/shm/elastic-kills.XXXXXX").stdout.trimmingCharacters(
        in: .whitespacesAndNewlines)
    guard work.hasPrefix("/dev/shm/elastic-kills.") else { throw TestFailure("mktemp: \(work)") }
    defer { _ = try? sh("fusermount3 -u '\(work)/mnt' 2>/dev/null || true; rm -rf '\(work)'") }
    let r = try run("/usr/bin/env", ["python3", Env.scripts + "/" + script, Env.binDir, work] + args)
    expectOK(r, script)
    return r
}

/// `kill -9` of the daemon during heavy writes, whole-file overwrites and namespace changes by
/// several processes, then a remount, 20 times (Scripts/crash_cycles.py): every mount is free
/// of integrity alarms, every file and directory reads, fsynced files are exact, and every
/// block of the overwritten file holds its last or its one-before-last contents, never a mix.
@Suite(.enabled(if: Env.canMount, "needs root and /dev/fuse"))
struct CrashCycleTests {
    @Test func twentyKillRemountCycles() throws {
        let r = try runKillScript("crash_cycles.py", ["20", "1"])
        #expect(r.stdout.contains("cycles=20 ") && r.stdout.contains(" problems=0"), "\(r.stdout)")
    }
}

/// `kill -9` of the daemon while one process overwrites random runs of blocks, then a remount,
/// 60 times (Scripts/overwrite_kills.py): the file always reads, and no block holds two writes
/// (a write the kill tore is undone or finished from the journal at the next mount).
@Suite(.enabled(if: Env.canMount, "needs root and /dev/fuse"))
struct OverwriteKillTests {
    @Test func sixtyKillsDuringOverwritesLeaveNoTornBlock() throws {
        let r = try runKillScript("overwrite_kills.py", ["60"])
        #expect(r.stdout.contains("cycles=60 mixed=0 "), "\(r.stdout)")
    }
}

/// The host refuses an overwrite's `pwrite` (EIO, injected into the daemon by `strace`): the
/// one of the blocks, or the one of the record that follows them. Either way the write fails
/// with EIO, the file is refused while mounted (and neither it nor its directory moves), another
/// file is still served, the journal copy outlives a clean unmount, and the next mount finishes
/// the write from it: the file reads whole, with the write (the version this session recorded).
@Suite(
    .enabled(if: Env.canMount && FileManager.default.fileExists(atPath: "/usr/bin/strace"), "needs root, FUSE, strace"))
struct RefusedOverwriteTests {
    @Test(arguments: [1, 2])
    func anOverwriteTheHostRefusesIsFinishedByTheNextMount(failing call: Int) throws {
        try MountedStore.with { s in
            try sh(
                """
                mkdir '\(s.path("d"))' && python3 -c "import os; fd = os.open('\(s.path("d/f"))', os.O_RDWR | os.O_CREAT, 0o600); \
                os.pwrite(fd, b'A' * 65536, 0); os.fsync(fd); os.close(fd)" && echo other > '\(s.path("g"))'
                """)
            guard let pid = try s.daemonPID() else { throw TestFailure("no daemon") }
            let log = s.dir + "/strace.log"
            let tracer = try sh(
                """
                '\(Env.scripts)/detach.sh' strace -I1 -f -qq -o '\(log)' -e trace=pwrite64 \
                -e inject=pwrite64:error=EIO:when=\(call) -p \(pid) </dev/null >/dev/null 2>&1 & echo $!
                """
            ).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            // (strace leaves a tracee that makes no system call only when killed; the kernel then
            // lets the daemon go on untraced.)
            defer { _ = try? sh("kill -9 \(tracer) 2>/dev/null; true") }
            // Every thread of the daemon traced before the write is made.
            for _ in 0..<200 {
                let untraced = try sh("grep -h '^TracerPid:' /proc/\(pid)/task/*/status | grep -c -w 0 || true")
                if untraced.stdout.hasPrefix("0") { break }
                usleep(50_000)
            }
            let w = try sh(
                """
                python3 -c "import os; fd = os.open('\(s.path("d/f"))', os.O_RDWR); os.pwrite(fd, b'B' * 8192, 4096)" 2>&1 || echo REFUSED
                """)
            #expect(w.stdout.contains("Input/output error") && w.stdout.contains("REFUSED"), "\(w.stdout)")
            _ = try sh(
                """
                kill -9 \(tracer); for i in $(seq 200); do
                  grep -h '^TracerPid:' /proc/\(pid)/task/*/status | grep -qvw 0 || break; sleep 0.05; done
                """)
            expectRefused(try sh("cat '\(s.path("d/f"))' 2>&1 || true").stdout, hiding: "AAAA", in: s)
            #expect(try sh("cat '\(s.path("g"))'").stdout == "other\n")
            // The copy finds the file by its path: neither it nor a directory above it moves or goes.
            for cmd in ["mv d/f d/f2", "mv d d2", "rm d/f", "mv g d/f"] {
                let r = try sh("cd '\(s.mountpoint)' && \(cmd) 2>&1 || echo REFUSED")
                #expect(r.stdout.contains("Input/output error") && r.stdout.contains("REFUSED"), "\(cmd): \(r.stdout)")
            }
            #expect(try sh("mv '\(s.path("g"))' '\(s.path("g2"))' && cat '\(s.path("g2"))'").stdout == "other\n")
            try s.remount()
            let expected = "A" * 4096 + "B" * 8192 + "A" * (65536 - 12288)
            #expect(try sh("cat '\(s.path("d/f"))'").stdout == expected, "the file whole, with the write")
            #expect(try sh("mv '\(s.path("d"))' '\(s.path("d2"))' && cat '\(s.path("d2/f"))'").stdout == expected)
        }
    }
}

private func * (s: String, n: Int) -> String { String(repeating: s, count: n) }
