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

/// `kill -9` of the daemon during heavy writes, whole-file overwrites and namespace changes by
/// several processes, then a remount, 20 times (Scripts/crash_cycles.py): every mount is free
/// of integrity alarms, every file and directory reads, fsynced files are exact, and every
/// block of the overwritten file holds its last or its one-before-last contents, never a mix.
@Suite(.enabled(if: Env.canMount, "needs root and /dev/fuse"))
struct CrashCycleTests {
    @Test func twentyKillRemountCycles() throws {
        let work = try sh("mktemp -d /dev/shm/elastic-crash.XXXXXX").stdout.trimmingCharacters(
            in: .whitespacesAndNewlines)
        guard work.hasPrefix("/dev/shm/elastic-crash.") else { throw TestFailure("mktemp: \(work)") }
        // (The script unmounts what it mounts; this is for a run cut short.)
        defer { _ = try? sh("fusermount3 -u '\(work)/mnt' 2>/dev/null || true; rm -rf '\(work)'") }
        let r = try run("/usr/bin/env", ["python3", Env.scripts + "/crash_cycles.py", Env.binDir, work, "20", "1"])
        expectOK(r, "crash_cycles.py")
        #expect(r.stdout.contains("cycles=20 ") && r.stdout.contains(" problems=0"), "\(r.stdout)")
    }
}
