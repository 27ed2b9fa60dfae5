import Foundation
import Testing

/// `mount -t elastic` and an fstab line go through /sbin/mount.elastic (the mount(8) helper
/// convention). The test links the built helper into /sbin for its duration if none is installed.
@Suite(.enabled(if: Env.canMount, "needs root and /dev/fuse"), .serialized)
struct MountHelperTests {
    static let helper = "/sbin/mount.elastic"

    func withHelper(_ body: () throws -> Void) throws {
        let installed = FileManager.default.fileExists(atPath: Self.helper)
        if !installed {
            try FileManager.default.createSymbolicLink(atPath: Self.helper, withDestinationPath: Env.mountElastic)
        }
        defer { if !installed { try? FileManager.default.removeItem(atPath: Self.helper) } }
        try body()
    }

    @Test func mountDashTAndFstabLine() throws {
        try withHelper {
            try MountedStore.with { s in
                try sh("echo persisted > '\(s.path("f"))'")
                try s.unmount()
                let m = try run("/bin/mount", ["-t", "elastic", s.backing, s.mountpoint, "-o", "keyfile=\(s.keyFile)"])
                expectOK(m, "mount -t elastic")
                #expect(try sh("cat '\(s.path("f"))'").stdout == "persisted\n")
                #expect(try sh("grep ' \(s.mountpoint) ' /proc/mounts").stdout.contains("fuse.elastic"))
                expectOK(try run("/bin/umount", [s.mountpoint]), "umount")
                try waitForDaemonExit(backing: s.backing)

                try "\(s.backing) \(s.mountpoint) elastic keyfile=\(s.keyFile),nofail,_netdev 0 0\n".write(
                    toFile: s.dir + "/fstab", atomically: true, encoding: .utf8)
                expectOK(try run("/bin/mount", ["-T", s.dir + "/fstab", s.mountpoint]), "mount from an fstab line")
                #expect(try sh("cat '\(s.path("f"))'").stdout == "persisted\n")
                expectOK(try run("/bin/umount", [s.mountpoint]), "umount")
                try waitForDaemonExit(backing: s.backing)
                try s.mount()
            }
        }
    }
}
