import Foundation
import Testing

/// `elastic fsck` through the real binaries: clean stores pass; what the host edits is found
/// and named by its plaintext path; a mounted store is refused.
@Suite(.enabled(if: Env.canMount, "needs root and /dev/fuse"))
struct FsckTests {
    @Test func fsckFindsWhatTheHostChangedAndNamesIt() throws {
        try MountedStore.with { s in
            let long = String(repeating: "n", count: 200)
            try expectOK(
                sh(
                    """
                    cd '\(s.mountpoint)'
                    mkdir -p docs/deep
                    head -c 20000 /dev/urandom > docs/report.bin
                    echo small > docs/deep/note.txt
                    echo long > 'docs/\(long)'
                    ln -s ../docs/report.bin docs/link
                    ln -s "$(head -c 3000 /dev/zero | tr '\\0' 'x')" docs/longlink
                    python3 -c 'import os; os.setxattr("docs/deep/note.txt", "user.tag", b"v")'
                    """), "populate")
            let fsck = { (args: [String]) throws -> CommandResult in
                try run(Env.elastic, ["fsck", s.backing, "--unlock-keyfile", s.keyFile] + args)
            }
            let mounted = try fsck([])
            #expect(
                mounted.status == 33 && mounted.stderr.contains("already in use"), "\(mounted.status) \(mounted.stderr)"
            )
            try s.unmount()

            let clean = try fsck([])
            #expect(clean.status == 0 && clean.stdout.contains(": clean"), "\(clean.stdout) \(clean.stderr)")
            #expect(clean.stdout.contains("3 directories") && clean.stdout.contains("3 files"), "\(clean.stdout)")

            // The host edits: a byte of report.bin's second block, note.txt's xattr value, the
            // long name's sidecar, the symlink's sealed target.
            let backingOf = { (plainSize: Int) throws -> String in
                try sh("find '\(s.backing)' -type f ! -name 'elastic.*' -size \(plainSize)c | head -1").stdout
                    .trimmingCharacters(
                        in: .whitespacesAndNewlines)
            }
            let report = try backingOf(164 + 4 * 4124 + (20000 - 4 * 4096) + 28)
            try flipByte(report, at: 164 + 4124 + 100)
            let note = try backingOf(164 + 6 + 28)
            try expectOK(
                sh(
                    "python3 -c 'import os,sys; p=sys.argv[1]; n=[a for a in os.listxattr(p) if a.startswith(\"user.\")][0]; v=bytearray(os.getxattr(p,n)); v[-1]^=1; os.setxattr(p,n,bytes(v))' '\(note)'"
                ),
                "xattr")
            try expectOK(sh("find '\(s.backing)' -name 'elastic.ln.*.name' -delete"), "sidecar")
            // docs/link's target (18 bytes) is the one block of its backing file.
            try flipByte(try backingOf(164 + 18 + 28), at: 164 + 20)

            let found = try fsck([])
            #expect(found.status == 40, "\(found.status) \(found.stderr)")
            #expect(
                found.stdout.contains("/docs/report.bin: 1 of 5 blocks fail authentication (blocks 1)"),
                "\(found.stdout)")
            #expect(
                found.stdout.contains("/docs/deep/note.txt: extended attribute user.tag: value does not open"),
                "\(found.stdout)")
            #expect(found.stdout.contains("long name without its sidecar"), "\(found.stdout)")
            #expect(found.stdout.contains("/docs/link: 1 of 1 blocks fail authentication"), "\(found.stdout)")
            let json = try fsck(["--json"])
            #expect(json.status == 40)
            let obj = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
            #expect((obj?["problems"] as? [[String: String]])?.count == 4, "\(json.stdout)")
            #expect(obj?["files"] as? Int == 2, "the file behind the lost sidecar is not counted: \(json.stdout)")
        }
    }

    /// `--repair` moves what is damaged aside, nothing is deleted, and the store checks clean.
    @Test func repairMovesDamageAsideAndTheStoreChecksClean() throws {
        try MountedStore.with { s in
            try expectOK(
                sh(
                    """
                    mkdir -p '\(s.mountpoint)/a/b'
                    head -c 9000 /dev/urandom > '\(s.mountpoint)/a/b/broken.bin'
                    echo fine > '\(s.mountpoint)/a/fine.txt'
                    """), "populate")
            try s.unmount()
            let backingSize: Int = 164 + 2 * 4124 + 808 + 28  // header, two full blocks, the 808-byte tail
            let broken = try sh("find '\(s.backing)' -type f ! -name 'elastic.*' -size \(backingSize)c").stdout
                .trimmingCharacters(in: .whitespacesAndNewlines)
            // (An empty path would send the edits below to the working directory.)
            try #require(broken.hasPrefix(s.backing + "/"), "no backing file of \(backingSize) bytes")
            try flipByte(broken, at: 164 + 100)  // in block 0
            // A backing file whose name is not one of ours.
            try expectOK(sh("echo junk > \"$(dirname '\(broken)')/not-ours\""), "inject")
            let fsck = { (args: [String]) throws -> CommandResult in
                try run(Env.elastic, ["fsck", s.backing, "--unlock-keyfile", s.keyFile] + args)
            }
            let repaired = try fsck(["--repair"])
            #expect(repaired.status == 0, "\(repaired.stdout) \(repaired.stderr)")
            #expect(
                repaired.stdout.contains(
                    "/a/b/broken.bin: 1 of 3 blocks fail authentication (blocks 0): moved to /lost+found/a%b%broken.bin"
                ), "\(repaired.stdout)")
            #expect(
                repaired.stdout.contains(
                    "/a/b/not-ours: name does not decrypt (not written by this store, or edited): moved out of the tree, to BACKING/elastic.quarantine/q-"
                ),
                "\(repaired.stdout)")
            #expect(
                repaired.stdout.contains("after repair:") && repaired.stdout.hasSuffix(": clean\n"),
                "\(repaired.stdout)")
            #expect(try fsck([]).status == 0)
            #expect(
                try sh("cat '\(s.backing)'/elastic.quarantine/q-*.origin").stdout == "not-ours",
                "the original name is kept")
            try s.mount()
            #expect(try sh("ls '\(s.mountpoint)/lost+found'").stdout == "a%b%broken.bin\n")
            #expect(try sh("cat '\(s.mountpoint)/a/fine.txt'").stdout == "fine\n")
            let read = try sh("cat '\(s.mountpoint)/lost+found/a%b%broken.bin' > /dev/null 2>&1 && echo ok || echo EIO")
                .stdout
            #expect(read == "EIO\n", "still damaged, still there for the user to decide")
            #expect(
                try sh("tail -c 808 '\(s.mountpoint)/lost+found/a%b%broken.bin' | wc -c").stdout.trimmingCharacters(
                    in: .whitespacesAndNewlines) == "808", "the intact blocks read")
        }
    }
}
