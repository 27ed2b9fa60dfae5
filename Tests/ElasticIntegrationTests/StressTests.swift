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
