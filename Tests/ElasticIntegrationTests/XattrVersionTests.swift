import Foundation
import Testing

/// Extended attributes are bound to their object and version: the object's record holds a
/// digest of its `user.*` attributes, so a value put back to an earlier version, copied in
/// from another object, added or removed by the host is refused (EIO), between mounts and
/// while mounted, for files and directories; the object's data is still served; fsck names it.
@Suite(.enabled(if: Env.canMount, "needs root and /dev/fuse"))
struct XattrVersionTests {
    /// Python on the backing objects: `X` is `path`'s backing path, `Y` `other`'s.
    func host(_ s: MountedStore, _ code: String, _ x: String, _ y: String = "/dev/null") throws {
        let script = """
            import os, sys
            X, Y = sys.argv[1], sys.argv[2]
            def attrs(p): return {n: os.getxattr(p, n) for n in os.listxattr(p) if n.startswith('user.')}
            \(code)
            """
        try expectOK(run("/usr/bin/env", ["python3", "-c", script, x, y]), "host: \(code)")
    }

    func getfattr(_ path: String, _ name: String = "user.tag") throws -> String {
        try sh(
            "python3 -c 'import os,sys; print(os.getxattr(sys.argv[1], sys.argv[2]).decode())' '\(path)' '\(name)' 2>&1; true"
        ).stdout
    }

    func setfattr(_ path: String, _ value: String, _ name: String = "user.tag") throws {
        try expectOK(
            sh(
                "python3 -c 'import os,sys; os.setxattr(sys.argv[1], sys.argv[2], sys.argv[3].encode())' '\(path)' '\(name)' '\(value)'"
            ),
            "setxattr \(path)")
    }

    @Test func aValuePutBackCopiedInAddedOrRemovedIsRefused() throws {
        try MountedStore.with { s in
            try expectOK(sh("echo one > '\(s.path("f"))' && echo other > '\(s.path("g"))'"), "write")  // 4 and 6 bytes
            try setfattr(s.path("f"), "v1")
            try setfattr(s.path("g"), "g-secret")
            try s.unmount()
            let f = try s.backingFile(plainSize: 4), g = try s.backingFile(plainSize: 6)
            try host(s, "open('\(s.dir)/old', 'wb').write(repr(attrs(X)).encode())", f)
            try s.mount()
            try setfattr(s.path("f"), "v2")
            #expect(try getfattr(s.path("f")) == "v2\n")
            try s.unmount()
            // Put back: v1's sealed value over v2's.
            try host(s, "old = eval(open('\(s.dir)/old').read()); [os.setxattr(X, n, v) for n, v in old.items()]", f)
            try s.mount()
            var r = try getfattr(s.path("f"))
            expectRefused(r, hiding: "v1", in: s)
            #expect(try sh("cat '\(s.path("f"))'").stdout == "one\n", "the file's data is still served")
            try s.unmount()
            let fsck = try run(Env.elastic, ["fsck", s.backing, "--unlock-keyfile", s.keyFile])
            #expect(
                fsck.status == 40 && fsck.stdout.contains("/f: extended attributes are not the set its record names"),
                "\(fsck.stdout)")
            // Copied in from another file (same name, so the value opens under it): refused.
            try host(s, "[os.setxattr(X, n, v) for n, v in attrs(Y).items()]", f, g)
            try s.mount()
            r = try getfattr(s.path("f"))
            expectRefused(r, hiding: "secret", in: s)
            try s.unmount()
            // Removed: the listing is refused too.
            try host(s, "[os.removexattr(X, n) for n in attrs(X)]", f)
            try s.mount()
            r = try sh("python3 -c 'import os,sys; print(os.listxattr(sys.argv[1]))' '\(s.path("f"))' 2>&1; true")
                .stdout
            #expect(r.contains("Input/output error"), "\(r)")
            #expect(try getfattr(s.path("g")) == "g-secret\n", "other objects are served")
            // The user decides to keep what is there: fsck --repair makes the record name it.
            try s.unmount()
            let repair = try run(Env.elastic, ["fsck", s.backing, "--unlock-keyfile", s.keyFile, "--repair"])
            #expect(
                repair.status == 0 && repair.stdout.contains("the record now names the attributes as they are"),
                "\(repair.stdout)")
            try s.mount()
            r = try sh("python3 -c 'import os,sys; print(os.listxattr(sys.argv[1]))' '\(s.path("f"))' 2>&1").stdout
            #expect(r == "[]\n", "\(r)")
            try setfattr(s.path("f"), "v3")
            #expect(try getfattr(s.path("f")) == "v3\n")
        }
    }

    /// While mounted: a value put back after the daemon read the set is refused at once; a
    /// directory's attributes are bound the same way.
    @Test func aValuePutBackWhileMountedIsRefused() throws {
        try MountedStore.with { s in
            try expectOK(sh("echo one > '\(s.path("f"))' && mkdir '\(s.path("d"))'"), "write")
            try setfattr(s.path("f"), "v1")
            try setfattr(s.path("d"), "d1")
            let f = try s.backingFile(plainSize: 4)
            let d = try sh("find '\(s.backing)' -mindepth 1 -maxdepth 1 -type d").stdout.trimmingCharacters(
                in: .whitespacesAndNewlines)
            try host(s, "open('\(s.dir)/old', 'wb').write(repr((attrs(X), attrs(Y))).encode())", f, d)
            try setfattr(s.path("f"), "v2")
            try setfattr(s.path("d"), "d2")
            #expect(try getfattr(s.path("f")) == "v2\n" && (try getfattr(s.path("d"))) == "d2\n")
            try host(
                s,
                "a, b = eval(open('\(s.dir)/old').read()); [os.setxattr(X, n, v) for n, v in a.items()]; [os.setxattr(Y, n, v) for n, v in b.items()]",
                f, d)
            let rf = try getfattr(s.path("f")), rd = try getfattr(s.path("d"))
            expectRefused(rf, hiding: "v1", in: s)
            expectRefused(rd, hiding: "d1", in: s)
        }
    }

    /// Through the mount everything stays consistent: set, replace, remove, list, and a rekey
    /// keeps the attributes (sealed again, named by the new records).
    @Test func changesThroughTheMountStayConsistentAcrossRemountAndRekey() throws {
        try MountedStore.with { s in
            try expectOK(sh("echo one > '\(s.path("f"))' && mkdir '\(s.path("d"))'"), "write")
            try setfattr(s.path("f"), "a", "user.a")
            try setfattr(s.path("f"), "b", "user.b")
            try setfattr(s.path("f"), "b2", "user.b")
            try setfattr(s.path("d"), "dir", "user.d")
            try expectOK(
                sh("python3 -c 'import os,sys; os.removexattr(sys.argv[1], \"user.a\")' '\(s.path("f"))'"), "remove")
            try s.unmount()
            expectOK(try run(Env.elastic, ["fsck", s.backing, "--unlock-keyfile", s.keyFile]), "fsck")
            expectOK(try run(Env.elastic, ["rekey", s.backing, "--unlock-keyfile", s.keyFile]), "rekey")
            expectOK(try run(Env.elastic, ["fsck", s.backing, "--unlock-keyfile", s.keyFile]), "fsck after rekey")
            try s.mount()
            let list = try sh("python3 -c 'import os,sys; print(sorted(os.listxattr(sys.argv[1])))' '\(s.path("f"))'")
            #expect(list.stdout == "['user.b']\n", "\(list.stdout)")
            #expect(try getfattr(s.path("f"), "user.b") == "b2\n" && (try getfattr(s.path("d"), "user.d")) == "dir\n")
        }
    }
}
