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
}
