import Foundation
import Testing

/// Every access to BACKING is confined to the directory opened at mount and typed: a FIFO the
/// host plants is refused (never waited on), a BACKING path swapped for a symlink while mounted
/// changes nothing, a slot with absurd scrypt costs is refused before it is tried, and the CLI
/// talks only to real ELASTIC mounts.
@Suite(.enabled(if: Env.canMount, "needs root and /dev/fuse"))
struct BackingConfinementTests {
    @Test func aFIFOInPlaceOfADirectoryIVIsAnErrorNotAHang() throws {
        try MountedStore.with { s in
            try sh("mkdir -p '\(s.path("top/d"))' && echo x > '\(s.path("top/d/f"))' && echo y > '\(s.path("other"))'")
            try s.unmount()
            // The only backing directory two levels down is d's. (top, whose entry d no longer
            // has a readable ID, is refused with it; the root is not.)
            try sh(
                """
                d=$(find '\(s.backing)' -mindepth 2 -maxdepth 2 -type d ! -name 'elastic.*')
                rm -f "$d/elastic.diriv" && mkfifo "$d/elastic.diriv"
                """)
            try s.mount()
            let ls = try sh("timeout 10 ls '\(s.path("top/d"))' 2>&1; echo status=$?")
            #expect(ls.stdout.contains("Input/output error") && !ls.stdout.contains("status=124"), "\(ls.stdout)")
            #expect(try sh("cat '\(s.path("other"))'").stdout == "y\n", "the rest is served")
        }
    }

    @Test func aFIFOInPlaceOfTheKeyStoreFailsTheMountAtOnce() throws {
        try MountedStore.with { s in
            try s.unmount()
            try sh("rm -f '\(s.backing)/elastic.keys' && mkfifo '\(s.backing)/elastic.keys'")
            let r = try sh(
                "timeout 20 '\(Env.mountElastic)' '\(s.backing)' '\(s.mountpoint)' -o keyfile='\(s.keyFile)' 2>&1; echo status=$?"
            )
            #expect(!r.stdout.contains("status=0") && !r.stdout.contains("status=124"), "\(r.stdout)")
            #expect(r.stdout.contains("elastic.keys is not a regular file"), "\(r.stdout)")
            try sh("rm '\(s.backing)/elastic.keys'")
            try s.mount()
        }
    }

    @Test func backingSwappedForASymlinkWhileMounted() throws {
        try MountedStore.with { s in
            let moved = s.dir + "/store.real", decoy = s.dir + "/decoy"
            try sh("mkdir '\(decoy)' && mv '\(s.backing)' '\(moved)' && ln -s '\(decoy)' '\(s.backing)'")
            defer { _ = try? sh("rm -f '\(s.backing)' && mv '\(moved)' '\(s.backing)'") }
            expectOK(
                try run(Env.elastic, ["key", "create", "k1", "--type", "aes256", "--mount", s.mountpoint]), "key create"
            )
            try sh("echo data > '\(s.path("file"))'")
            #expect(try sh("ls -A '\(decoy)'").stdout.isEmpty, "nothing reached the symlink's target")
            #expect(
                try sh("test -s '\(moved)/elastic.keys' && echo yes").stdout == "yes\n",
                "the key store is in the real store")
        }
    }

    @Test func aSlotWithAbsurdScryptCostsIsRefusedBeforeItIsTried() throws {
        try MountedStore.with { s in
            try s.unmount()
            // Insert a passphrase slot asking for N = 2^24, r = 32, p = 16 (64 GiB) before the MAC.
            let edit = """
                import os, struct
                p = '\(s.backing)/elastic.conf'
                b = bytearray(open(p, 'rb').read())
                count_at = 8 + 2 + 4 + 4 + 16
                b[count_at] += 1
                params = os.urandom(32) + bytes([24]) + struct.pack('>II', 32, 16)
                slot = os.urandom(8) + bytes([2]) + struct.pack('>H', len(params)) + params + os.urandom(60)
                b = b[:-32] + slot + b[-32:]
                os.chmod(p, 0o600); open(p, 'wb').write(b)
                """
            expectOK(try run("/usr/bin/env", ["python3", "-c", edit]), "edit config")
            let started = Date()
            let r = try run(Env.mountElastic, [s.backing, s.mountpoint, "-o", "keyfile=\(s.keyFile)"])
            #expect(r.status != 0 && r.stderr.contains("beyond the limits"), "\(r.stderr)")
            #expect(Date().timeIntervalSince(started) < 30, "refused without running scrypt")
        }
    }

    @Test func theCLIOnlyTalksToElasticMounts() throws {
        try MountedStore.with { s in
            try sh("mkdir -p '\(s.dir)/plain' && touch '\(s.dir)/plain/.elastic'")
            let r = try run(Env.elastic, ["time", "--mount", s.dir + "/plain"])
            #expect(r.status != 0 && r.stderr.contains("not the root of an ELASTIC mount"), "\(r.stderr)")
            let sub = try run(Env.elastic, ["time", "--mount", s.backing])
            #expect(sub.status != 0 && sub.stderr.contains("not the root of an ELASTIC mount"), "\(sub.stderr)")
            expectOK(try run(Env.elastic, ["time", "--mount", s.mountpoint]), "the real mount")
            expectOK(try run(Env.elastic, ["time"], cwd: s.path("")), "found from inside the mount")
        }
    }
}
