import Foundation
import Testing

/// `elastic rekey` through the real binaries: a new master key, the same tree, the old slots
/// gone; an interrupted rekey leaves the old store intact and the next one finishes.
@Suite(.enabled(if: Env.canMount, "needs root and /dev/fuse"))
struct RekeyTests {
    /// Names, modes, owners, link counts and types of the tree, and the contents of its files.
    func snapshot(_ m: String) throws -> String {
        try sh(
            "cd '\(m)' && find . -path ./.elastic -prune -o -printf '%p %m %u %g %n %y %s\\n' | sort && find . -type f ! -name .elastic ! -name sparse -exec md5sum {} + | sort"
        ).stdout
    }

    @Test func rekeyKeepsTheTreeAndDropsEveryOtherSlot() throws {
        try MountedStore.with { s in
            let long = String(repeating: "n", count: 200)
            try expectOK(
                sh(
                    """
                    cd '\(s.mountpoint)'
                    mkdir -p a/b
                    head -c 20000 /dev/urandom > a/big
                    echo hi > a/b/small
                    ln a/big a/hard && ln a/big a/b/hard2
                    ln -s ../a/big a/link
                    ln -s "$(head -c 3000 /dev/zero | tr '\\0' y)" a/longlink
                    mkfifo a/fifo
                    truncate -s 2T a/sparse && echo end >> a/sparse
                    touch '\(long)'
                    chown 1000:1000 a/b/small && chmod 640 a/b/small
                    python3 -c 'import os; os.setxattr("a/big", "user.k", b"val")'
                    """), "populate")
            expectOK(try run(Env.elastic, ["key", "create", "kk", "--type", "aes256", "--mount", s.mountpoint]), "key")
            let before = try snapshot(s.mountpoint)
            try s.unmount()
            try sh("echo 'pass phrase' > '\(s.dir)/pass'")
            expectOK(
                try run(
                    Env.elastic,
                    [
                        "slot", "add", s.backing, "--unlock-keyfile", s.keyFile, "--passphrase-file", s.dir + "/pass",
                        "--scrypt-logn", "12",
                    ]),
                "second slot")
            try sh("cp '\(s.backing)/elastic.conf' '\(s.dir)/old.conf'")

            let rekey = try run(Env.elastic, ["rekey", s.backing, "--unlock-keyfile", s.keyFile])
            expectOK(rekey, "rekey")
            #expect(rekey.stdout.contains("1 other slot removed"), "\(rekey.stdout)")
            #expect(try sh("ls '\(s.dir)'").stdout.contains(".rekey-") == false, "nothing left beside BACKING")
            // The removed passphrase slot opens nothing; the old configuration's slots neither.
            let old = try run(Env.mountElastic, [s.backing, s.mountpoint, "-o", "passfile=\(s.dir)/pass"])
            #expect(old.status == 12, "\(old.stderr)")
            try sh(
                "cp '\(s.backing)/elastic.conf' '\(s.dir)/new.conf' && cp '\(s.dir)/old.conf' '\(s.backing)/elastic.conf'"
            )
            let oldConf = try run(Env.mountElastic, [s.backing, s.mountpoint, "-o", "passfile=\(s.dir)/pass"])
            #expect(oldConf.status != 0, "the old master key opens nothing of the new store: \(oldConf.stderr)")
            #expect(try sh("grep -c ' \(s.mountpoint) ' /proc/mounts || true").stdout.hasPrefix("0"))
            try sh("cp '\(s.dir)/new.conf' '\(s.backing)/elastic.conf'")

            try s.mount()
            #expect(try snapshot(s.mountpoint) == before)
            // A sparse file stays sparse: its tail reads, the store stays small.
            #expect(try sh("tail -c 4 '\(s.mountpoint)/a/sparse'").stdout == "end\n")
            let storeKiB = try sh("du -sk '\(s.backing)' | cut -f1").stdout.trimmingCharacters(
                in: .whitespacesAndNewlines)
            #expect((Int(storeKiB) ?? .max) < 10_000, "store of \(storeKiB) KiB")
            #expect(
                try sh("python3 -c 'import os; print(os.getxattr(\"\(s.mountpoint)/a/big\", \"user.k\"))'").stdout
                    == "b'val'\n")
            #expect(try run(Env.elastic, ["key", "list", "--mount", s.mountpoint]).stdout.contains("kk"))
            try s.unmount()
            let fsck = try run(Env.elastic, ["fsck", s.backing, "--unlock-keyfile", s.keyFile])
            #expect(fsck.status == 0, "\(fsck.stdout)")
            try s.mount()
        }
    }

    /// A rekey that could not replace BACKING in one step refuses before writing anything:
    /// through a symlink, or of a directory that is a mount point.
    @Test func rekeyRefusesPlacesItCannotReplace() throws {
        try MountedStore.with { s in
            try s.unmount()
            try sh("ln -s '\(s.backing)' '\(s.dir)/alias'")
            let viaLink = try run(Env.elastic, ["rekey", s.dir + "/alias", "--unlock-keyfile", s.keyFile])
            #expect(viaLink.status != 0 && viaLink.stderr.contains("cannot rekey in place"), "\(viaLink.stderr)")
            #expect(try sh("ls -a '\(s.dir)' | grep -c rekey || true").stdout.hasPrefix("0"), "nothing was written")
            try s.mount()
        }
    }

    @Test func anInterruptedRekeyLeavesTheOldStoreAndTheNextOneFinishes() throws {
        try MountedStore.with { s in
            try expectOK(
                sh("for i in $(seq 1 30); do head -c 4000000 /dev/urandom > '\(s.mountpoint)/f'$i; done"), "populate")
            let before = try snapshot(s.mountpoint)
            try s.unmount()
            // Kill the rekey while it writes the copy.
            try sh(
                """
                '\(Env.elastic)' rekey '\(s.backing)' --unlock-keyfile '\(s.keyFile)' >/dev/null 2>&1 &
                pid=$!
                for i in $(seq 1 3000); do ls -d '\(s.backing)'.rekey-* >/dev/null 2>&1 && break; sleep 0.01; done
                sleep 0.1
                kill -9 $pid 2>/dev/null || true
                wait $pid 2>/dev/null || true
                """)
            #expect(
                try sh("ls -d '\(s.backing)'.rekey-* 2>/dev/null | wc -l").stdout.hasPrefix("1"),
                "the kill landed while the copy was being written")
            try s.mount()
            #expect(try snapshot(s.mountpoint) == before, "the old store, whole")
            try s.unmount()
            expectOK(try run(Env.elastic, ["rekey", s.backing, "--unlock-keyfile", s.keyFile]), "rekey again")
            #expect(try sh("ls -d '\(s.backing)'.rekey-* 2>/dev/null | wc -l").stdout.hasPrefix("0"))
            try s.mount()
            #expect(try snapshot(s.mountpoint) == before)
        }
    }
}
