import Foundation
import Testing

/// Every block is bound to its version: the file's record holds a digest of its blocks' tags,
/// so a single block (or a mix of blocks) put back to an earlier version of the same file, at
/// the same index, is refused — between mounts and while mounted — and fsck names the file.
@Suite(.enabled(if: Env.canMount, "needs root and /dev/fuse"))
struct BlockVersionTests {
    /// Copies cipher block `index` of `from` over the same block of `to` (a host's put-back).
    func putBack(block index: Int, from: String, to: String) -> String {
        "dd if='\(from)' of='\(to)' bs=1 skip=\(164 + index * 4124) seek=\(164 + index * 4124) count=4124 conv=notrunc status=none"
    }

    @Test func aBlockPutBackBetweenMountsIsRefused() throws {
        try MountedStore.with { s in
            try expectOK(
                sh("head -c 12288 /dev/urandom > '\(s.path("db"))' && echo other > '\(s.path("other"))'"), "write")
            try s.unmount()
            let b = try s.backingFile(plainSize: 12288)
            try expectOK(sh("cp '\(b)' '\(s.dir)/old'"), "save")
            try s.mount()
            // One block changes (its tag with it); the others stay as they were.
            try expectOK(
                sh("head -c 4096 /dev/urandom | dd of='\(s.path("db"))' bs=4096 seek=1 conv=notrunc status=none"),
                "update block 1")
            let current = try sh("md5sum < '\(s.path("db"))'").stdout
            try s.unmount()
            try expectOK(
                sh("cp '\(b)' '\(s.dir)/new' && \(putBack(block: 1, from: "\(s.dir)/old", to: b))"), "put back block 1")
            try s.mount()
            let r = try sh("cat '\(s.path("db"))' 2>&1 >/dev/null; true").stdout
            #expect(r.contains("Input/output error"), "\(r)")
            #expect(try sh("cat '\(s.path("other"))'").stdout == "other\n", "the rest of the store is served")
            try s.unmount()
            let fsck = try run(Env.elastic, ["fsck", s.backing, "--unlock-keyfile", s.keyFile])
            #expect(
                fsck.status == 40 && fsck.stdout.contains("/db: its blocks are not the versions its record names"),
                "\(fsck.stdout)")
            // The newer block back in place: the file reads again, exactly as written.
            try expectOK(sh("cp '\(s.dir)/new' '\(b)'"), "the newer version back")
            try s.mount()
            #expect(try sh("md5sum < '\(s.path("db"))'").stdout == current)
        }
    }

    /// While mounted: a block put back once the file is closed and the kernel dropped its
    /// pages is refused at the next open (the record in the daemon's memory names the blocks).
    @Test func aBlockPutBackWhileMountedIsRefused() throws {
        try MountedStore.with { s in
            try expectOK(sh("head -c 12288 /dev/urandom > '\(s.path("f"))'"), "write")
            let b = try s.backingFile(plainSize: 12288)
            try expectOK(
                sh(
                    "cp '\(b)' '\(s.dir)/old' && head -c 4096 /dev/zero | dd of='\(s.path("f"))' bs=4096 seek=2 conv=notrunc status=none && sync"
                ), "overwrite block 2")
            try expectOK(
                sh("\(putBack(block: 2, from: "\(s.dir)/old", to: b)) && echo 2 > /proc/sys/vm/drop_caches"),
                "put back block 2")
            let r = try sh("tail -c 4096 '\(s.path("f"))' 2>&1 | head -c 200 | tr -d '\\0'; true").stdout
            #expect(r.contains("Input/output error"), "\(r)")
        }
    }

    /// A header put back over newer blocks (what a crash without the undo journal would leave,
    /// or a host's partial rollback): refused as a whole, named by fsck, not sealed again by rekey.
    @Test func aHeaderPutBackOverNewerBlocksIsRefused() throws {
        try MountedStore.with { s in
            try expectOK(sh("echo 'fsynced data' > '\(s.path("f"))'"), "write")
            try s.unmount()
            let f = try s.backingFile(plainSize: 13)
            try expectOK(sh("head -c 164 '\(f)' > '\(s.dir)/f-header'"), "save")
            try s.mount()
            try expectOK(sh("echo appended >> '\(s.path("f"))'"), "append")
            try s.unmount()
            try expectOK(sh("dd if='\(s.dir)/f-header' of='\(f)' conv=notrunc status=none"), "put back the header")
            try s.mount()
            let r = try sh("cat '\(s.path("f"))' 2>&1; true").stdout
            expectRefused(r, hiding: "fsynced", in: s)
            try s.unmount()
            let fsck = try run(Env.elastic, ["fsck", s.backing, "--unlock-keyfile", s.keyFile])
            #expect(
                fsck.status == 40 && fsck.stdout.contains("/f: 1 of 1 blocks fail authentication"), "\(fsck.stdout)")
            let rekey = try run(Env.elastic, ["rekey", s.backing, "--unlock-keyfile", s.keyFile])
            #expect(rekey.status != 0, "rekey must not seal a rolled-back file again: \(rekey.stdout)")
            try s.mount()
        }
    }

    /// A grow the backing filesystem refuses (EFBIG: ext4 stops at 16 TiB) after the partial
    /// last block was rewritten: the old block is put back at once, so the file stays what its
    /// record names, readable and writable, and fsck finds it clean.
    @Test func aFailedGrowLeavesTheFileAsItWas() throws {
        try MountedStore.with { s in
            try expectOK(sh("head -c 5000 /dev/urandom > '\(s.path("f"))'"), "write")
            let sum = try sh("md5sum < '\(s.path("f"))'").stdout
            let grow = try sh("truncate -s 20T '\(s.path("f"))' 2>&1; echo rc=$?").stdout
            let write = try sh(
                "printf x | dd of='\(s.path("f"))' bs=1 seek=$((20 << 40)) conv=notrunc 2>&1; echo rc=$?"
            ).stdout
            if grow.contains("rc=0") || write.contains("rc=0") {
                // The backing filesystem took it: nothing failed, nothing to undo.
                try expectOK(sh("truncate -s 5000 '\(s.path("f"))'"), "shrink back")
            } else {
                #expect(grow.contains("File too large") && write.contains("File too large"), "\(grow) \(write)")
            }
            #expect(try sh("md5sum < '\(s.path("f"))'").stdout == sum)
            try expectOK(sh("echo more >> '\(s.path("f"))'"), "append after")
            try s.unmount()
            expectOK(try run(Env.elastic, ["fsck", s.backing, "--unlock-keyfile", s.keyFile]), "fsck")
            try s.mount()
            #expect(try sh("head -c 5000 '\(s.path("f"))' | md5sum").stdout == sum)
        }
    }

    /// A large file keeps a sealed snapshot of its block tags after its last block (opened
    /// without reading every block's tag); it vouches for the record's version only: a block
    /// put back still fails where it is read, and the blocks around it still read.
    @Test func aLargeFileOpensFromItsTagSnapshotAndStillRefusesAnOldBlock() throws {
        try MountedStore.with { s in
            let size = 40 << 20
            try expectOK(sh("head -c \(size) /dev/urandom > '\(s.path("big"))'"), "write")
            let head = try sh("head -c 16384 '\(s.path("big"))' | md5sum").stdout
            try s.unmount()
            let blocks = size / 4096
            let cipher = 164 + blocks * 4124
            let withSnapshot = (cipher + 4095) / 4096 * 4096 + 13 + 12 + blocks * 16 + 16
            let b = try sh("find '\(s.backing)' -type f ! -name 'elastic.*' -size +1M").stdout.trimmingCharacters(
                in: .whitespacesAndNewlines)
            #expect(try sh("stat -c %s '\(b)'").stdout == "\(withSnapshot)\n", "the snapshot follows the blocks")
            try expectOK(sh("cp '\(b)' '\(s.dir)/old'"), "save")
            try s.mount()
            try expectOK(
                sh("head -c 4096 /dev/urandom | dd of='\(s.path("big"))' bs=4096 seek=5 conv=notrunc status=none"),
                "overwrite block 5")
            try s.unmount()
            try expectOK(sh(putBack(block: 5, from: "\(s.dir)/old", to: b)), "put back block 5")
            try s.mount()
            let r = try sh("cat '\(s.path("big"))' 2>&1 >/dev/null; true").stdout
            #expect(r.contains("Input/output error"), "\(r)")
            // Blocks 0-3, one block per request: readahead (and a large page-cache folio) would
            // take block 5 into the same request, which then fails as a whole.
            let around = try sh("dd if='\(s.path("big"))' bs=4096 count=4 iflag=direct status=none | md5sum")
            #expect(around.stdout == head, "\(around.stdout) \(around.stderr)")
        }
    }
}
