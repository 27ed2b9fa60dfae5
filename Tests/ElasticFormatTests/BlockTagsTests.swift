import ElasticCrypto
import ElasticSystem
import Glibc
import Testing

@testable import ElasticFormat

/// The content digest: updated block by block it equals the digest computed from scratch, and
/// any other version of any block, a block dropped, added or moved gives another digest.
@Suite struct BlockTagsTests {
    let crypto: CryptoWorker
    init() throws { crypto = try CryptoWorker(keys: StoreKeys(master: try SecureBytes.random(count: 32))) }

    func tag(_ seed: UInt64) -> BlockTag { BlockTag(seed &* 0x9E37_79B9_7F4A_7C15, ~seed) }

    func digest(_ tags: [Int64: BlockTag]) throws -> BlockTag {
        let t = BlockTags()
        for (i, v) in tags {
            var v = v
            try t.set(first: i, tags: &v, count: 1, crypto: crypto)
        }
        return t.digest
    }

    @Test func sizesArePinned() {
        #expect(ObjectRecord.plainSize == 112 && ObjectRecord.sealedSize == 140)
        #expect(FileHeader.size == 164 && MemoryLayout<BlockTag>.size == 16)
    }

    @Test func incrementalEqualsFromScratchAndEveryChangeShows() throws {
        let base: [Int64: BlockTag] = [0: tag(1), 1: tag(2), 7: tag(3), 300: tag(4)]
        let t = BlockTags()
        var v = tag(99)
        try t.set(first: 1, tags: &v, count: 1, crypto: crypto)  // an older version of block 1
        for (i, v) in base {
            var v = v
            try t.set(first: i, tags: &v, count: 1, crypto: crypto)
        }
        #expect(t.digest == (try digest(base)))
        #expect(t.tag(300) == tag(4) && t.tag(2) == .zero && t.tag(5000) == .zero)
        var rolledBack = base
        rolledBack[1] = tag(99)
        var moved = base
        moved[8] = moved.removeValue(forKey: 7)
        var dropped = base
        dropped[0] = nil
        var added = base
        added[9] = tag(5)
        var swapped = base
        (swapped[0], swapped[1]) = (base[1], base[0])
        for other in [rolledBack, moved, dropped, added, swapped] {
            #expect(try digest(other) != t.digest)
        }
        #expect(try digest([:]) == .zero)
        // Cutting the file drops the blocks from the digest.
        try t.drop(from: 7, crypto: crypto)
        #expect(t.digest == (try digest([0: tag(1), 1: tag(2)])) && t.tag(300) == .zero)
        try t.drop(from: 0, crypto: crypto)
        #expect(t.digest == .zero)
    }

    /// Runs of tags set at once (appends, overwrites, holes, runs across chunks, a file cut)
    /// leave the same tags and digest as a plain map of them, block by block.
    @Test func runsMatchAModel() throws {
        var rng = SystemRandomNumberGenerator()
        let t = BlockTags()
        var model: [Int64: BlockTag] = [:]
        for step in 0..<400 {
            if step % 97 == 96 {
                let cut = Int64.random(in: 0..<1200, using: &rng)
                try t.drop(from: cut, crypto: crypto)
                model = model.filter { $0.key < cut }
                continue
            }
            let first = Int64.random(in: 0..<1000, using: &rng)
            let count = Int.random(in: 1...300, using: &rng)
            var run = (0..<count).map { _ in Int.random(in: 0..<4, using: &rng) == 0 ? .zero : tag(rng.next()) }
            try t.set(first: first, tags: &run, count: count, crypto: crypto)
            for (k, v) in run.enumerated() { model[first + Int64(k)] = v == .zero ? nil : v }
            for i in Int64(0)..<1300 where t.tag(i) != (model[i] ?? .zero) {
                Issue.record("block \(i) after step \(step)")
                return
            }
        }
        #expect(t.digest == (try digest(model)))
    }

    /// Tags read back from a backing file: holes skipped, a block the file is too short to
    /// hold counts as absent.
    @Test func loadReadsTheTagsOfABackingFile() throws {
        let path = "/tmp/elastic-blocktags-\(getpid())"
        let fd = try Syscall.openat(AT_FDCWD, path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        defer {
            Syscall.close(fd)
            unlink(path)
        }
        let id = [UInt8](repeating: 7, count: 16)
        let size: Int64 = 600 * 4096 + 100  // block 600 partial
        let written = BlockTags()
        for index in [Int64(0), 1, 2, 513, 600] {
            let length = Int(BlockLayout.plaintextLength(block: index, fileSize: size))
            var plain = [UInt8](repeating: UInt8(index & 0xff), count: length)
            var sealed = [UInt8](repeating: 0, count: length + 28)
            let n = try id.withUnsafeBytes { i in
                try plain.withUnsafeMutableBytes { p in
                    try sealed.withUnsafeMutableBytes { s in
                        try crypto.sealBlocks(
                            fileID: i, first: index, plaintext: p.baseAddress!, count: length, output: s.baseAddress!)
                    }
                }
            }
            try Syscall.pwrite(fd, sealed, at: BlockLayout.cipherOffset(block: index))
            var t = sealed.withUnsafeBytes { BlockTags.tag(ofSealed: $0.baseAddress!, length: n) }
            try written.set(first: index, tags: &t, count: 1, crypto: crypto)
        }
        let loaded = try BlockTags.load(fd: fd, size: size, crypto: crypto)
        #expect(loaded.digest == written.digest && loaded.tag(513) == written.tag(513) && loaded.tag(3) == .zero)
        // Loaded in two ranges split at a chunk boundary and merged: the same.
        let head = try BlockTags.load(fd: fd, size: size, range: 0..<512, crypto: crypto)
        head.merge(try BlockTags.load(fd: fd, size: size, range: 512..<601, crypto: crypto))
        #expect(head.digest == written.digest && head.tag(600) == written.tag(600) && head.tag(2) == written.tag(2))
        // The last block cut short: absent, and the digest differs.
        try Syscall.ftruncate(fd, BlockLayout.cipherOffset(block: 600) + 50)
        #expect(try BlockTags.load(fd: fd, size: size, crypto: crypto).digest != written.digest)
    }
}
