import Foundation
import Testing

/// A host that edits BACKING gets EIO for the affected reads, never altered data, and the
/// daemon keeps serving every other file.
@Suite(.enabled(if: Env.canMount, "needs root and /dev/fuse"))
struct TamperTests {
    /// Writes victim (5 blocks) and donor (3 blocks + 100 bytes) and an innocent file, unmounts,
    /// applies `tamper` (python, with V and D the backing paths), remounts and reads.
    /// `firstBlockReads`: the tamper left every block's tag in place (only a block's bytes
    /// fail), so the untouched first block still reads; a tamper that changes which block
    /// versions the file holds (a tag moved, cut or replaced) gets the whole file refused.
    func tampered(_ tamper: String, firstBlockReads: Bool) throws {
        try MountedStore.with { s in
            try expectOK(
                sh(
                    """
                    head -c 20480 /dev/urandom > '\(s.path("victim"))'
                    head -c 12388 /dev/urandom > '\(s.path("donor"))'
                    echo innocent > '\(s.path("innocent"))'
                    """), "populate")
            try s.unmount()
            // Backing sizes: 164 + 5 * 4124 = 20784 and 164 + 3 * 4124 + 128 = 12664.
            let script = """
                import os, glob
                V = [f for f in glob.glob('\(s.backing)/*') if os.path.getsize(f) == 20784][0]
                D = [f for f in glob.glob('\(s.backing)/*') if os.path.getsize(f) == 12664][0]
                def block(path, i): return open(path, 'rb').read()[164 + i * 4124:164 + (i + 1) * 4124]
                def put(path, i, data):
                    with open(path, 'r+b') as f: f.seek(164 + i * 4124); f.write(data)
                \(tamper)
                """
            try expectOK(run("/usr/bin/env", ["python3", "-c", script]), "tamper")
            try s.mount()
            let read = try sh(
                "cat '\(s.path("victim"))' > /dev/null 2>'\(s.dir)/err' && echo READ_OK || cat '\(s.dir)/err'")
            #expect(read.stdout.contains("Input/output error"), "\(read.stdout)")
            #expect(try sh("cat '\(s.path("innocent"))'").stdout == "innocent\n")
            // One block per request (readahead, or a large page-cache folio, would take the
            // failing block into the same request).
            #expect(
                try sh("dd if='\(s.path("victim"))' bs=4096 count=1 iflag=direct status=none 2>/dev/null | wc -c")
                    .stdout
                    .trimmingCharacters(in: .whitespacesAndNewlines) == (firstBlockReads ? "4096" : "0"))
        }
    }

    @Test func flippedByteInABlock() throws {
        try tampered("b = bytearray(block(V, 3)); b[100] ^= 1; put(V, 3, bytes(b))", firstBlockReads: true)
    }

    @Test func swappedBlocksWithinAFile() throws {
        try tampered("b1, b2 = block(V, 2), block(V, 3); put(V, 2, b2); put(V, 3, b1)", firstBlockReads: false)
    }

    @Test func blockCopiedFromAnotherFile() throws {
        try tampered("put(V, 4, block(D, 1))", firstBlockReads: false)
    }

    @Test func ciphertextTruncatedMidBlock() throws {
        try tampered("os.truncate(V, 164 + 4 * 4124 + 2000)", firstBlockReads: false)
    }

    @Test func ciphertextTruncatedInsideTheTagArea() throws {
        try tampered("os.truncate(V, 164 + 4 * 4124 + 10)", firstBlockReads: false)
    }

    /// The header (file ID and record) of one file copied onto another: the directory's entry
    /// set names the old ID, so the whole directory is refused; fsck names both.
    @Test func swappedFileHeaders() throws {
        try MountedStore.with { s in
            try expectOK(
                sh(
                    "mkdir '\(s.path("d"))' && echo victim > '\(s.path("d/victim"))' && echo donor_ > '\(s.path("d/donor"))' && echo innocent > '\(s.path("innocent"))'"
                ),
                "populate")
            try s.unmount()
            try expectOK(
                sh(
                    "set -- $(find '\(s.backing)' -mindepth 2 -type f -size 199c); test $# = 2 && head -c 164 \"$2\" | dd of=\"$1\" conv=notrunc status=none"
                ), "tamper")
            try s.mount()
            let r = try sh("cat '\(s.path("d/victim"))' 2>&1; ls '\(s.path("d"))' 2>&1; true")
            #expect(r.stdout.contains("Input/output error") && !r.stdout.contains("donor_"), "\(r.stdout)")
            #expect(try sh("cat '\(s.path("innocent"))'").stdout == "innocent\n")
        }
    }

    /// The host damages a symlink's sealed target: the link is still listed and can be
    /// removed; only reading it fails (EIO), and nothing else is affected.
    @Test func damagedSymlinkTargetIsAnErrorOnlyWhenRead() throws {
        try MountedStore.with { s in
            try expectOK(sh("ln -s target '\(s.path("link"))' && echo innocent > '\(s.path("innocent"))'"), "populate")
            try s.unmount()
            // The 6-byte target is the one block of its backing file (164 + 6 + 28 bytes).
            let backingLink = try sh("find '\(s.backing)' -maxdepth 1 -type f -size 198c").stdout.trimmingCharacters(
                in: .whitespacesAndNewlines)
            #expect(!backingLink.isEmpty)
            try flipByte(backingLink, at: 164 + 14)
            try s.mount()
            #expect(try sh("ls '\(s.mountpoint)'").stdout.contains("link"))
            let read = try sh("python3 -c 'import os, sys; os.readlink(sys.argv[1])' '\(s.path("link"))' 2>&1 || true")
            #expect(read.stdout.contains("Input/output error"), "\(read.stdout)")
            try expectOK(sh("rm '\(s.path("link"))'"), "rm of the damaged link")
            #expect(try sh("ls '\(s.mountpoint)'").stdout == "innocent\n")
        }
    }
}
