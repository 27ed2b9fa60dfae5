import ElasticCrypto
import ElasticSystem
import Glibc

/// A block's 16-byte AES-GCM tag as it lies in memory; zero stands for a hole (no block).
public typealias BlockTag = SIMD2<UInt64>

/// The tags of a file's blocks and the **content digest** its record commits to: the XOR, over
/// every block i below the file's length that holds data, of
/// `E(E(be128(i)) ⊕ tag_i)`, E = AES-256 under the `elastic/v2/content-digest/aes-256` subkey
/// (a two-block CBC-MAC, a pseudorandom function of (i, tag)). A block's tag changes with every
/// write of it (fresh nonce), so the digest names the exact version of every block: a block
/// put back, moved, zeroed, dropped or added makes the set differ, and with it the digest.
/// Updated in O(1) per block written (the old term out, the new one in); checked in full when
/// a file's tags are first loaded, then each block read is compared with its tag here.
/// Guarded by its user (the FUSE layer: the file's content lock).
public final class BlockTags: @unchecked Sendable {
    static let chunkBlocks: Int64 = 256
    /// The tags of blocks `key × chunkBlocks ..< key × chunkBlocks + tags.count`, in a box that
    /// is changed in place (a tag is set at every write).
    private final class Chunk {
        var tags: [BlockTag]
        init(_ tags: [BlockTag]) { self.tags = tags }
    }
    private var chunks: [Int64: Chunk] = [:]
    /// The digest of the tags held.
    public private(set) var digest: BlockTag = .zero
    /// Whether the tags changed since they were read from, or written to, a `TagSnapshot`.
    public var changedSinceSnapshot = true

    public init() {}

    /// The tags of blocks `0..<flat.count` (`.zero`: a hole), whose digest is known to be
    /// `digest` (from a sealed `TagSnapshot`).
    init(flat: UnsafeBufferPointer<BlockTag>, digest: BlockTag) {
        var start = 0
        while start < flat.count {
            let end = min(flat.count, start + Int(Self.chunkBlocks))
            var last = end
            while last > start && flat[last - 1] == .zero { last -= 1 }
            if last > start { chunks[Int64(start) / Self.chunkBlocks] = Chunk(Array(flat[start..<last])) }
            start = end
        }
        self.digest = digest
        changedSinceSnapshot = false
    }

    /// Every tag of blocks `0..<blocks` in order, holes as zero.
    func flat(blocks: Int64) -> [BlockTag] {
        var out = [BlockTag](repeating: .zero, count: Int(blocks))
        for (key, chunk) in chunks {
            for (k, t) in chunk.tags.enumerated() where key * Self.chunkBlocks + Int64(k) < blocks {
                out[Int(key * Self.chunkBlocks) + k] = t
            }
        }
        return out
    }

    /// Tag of block `index`; `.zero` for a hole.
    public func tag(_ index: Int64) -> BlockTag {
        guard let c = chunks[index / Self.chunkBlocks] else { return .zero }
        let k = Int(index % Self.chunkBlocks)
        return k < c.tags.count ? c.tags[k] : .zero
    }

    /// Sets the tags of `count` consecutive blocks from `first` (`.zero`: a hole), updating
    /// the digest with one batch of the pseudorandom function.
    public func set(first: Int64, tags: UnsafePointer<BlockTag>, count: Int, crypto: CryptoWorker) throws {
        // (No heap arrays: this runs for every block written.)
        try withUnsafeTemporaryAllocation(of: Int64.self, capacity: 2 * count) { indices in
            try withUnsafeTemporaryAllocation(of: BlockTag.self, capacity: 2 * count) { terms in
                var n = 0
                // Chunk by chunk: one lookup, at most one growth and no per-tag checks per run
                // of blocks (an append of 1 MiB sets 256 tags).
                var k = 0
                while k < count {
                    let i0 = first + Int64(k)
                    let key = i0 / Self.chunkBlocks, start = Int(i0 % Self.chunkBlocks)
                    let run = min(count - k, Int(Self.chunkBlocks) - start)
                    var chunk = chunks[key]
                    let held = chunk.map { max(0, min(run, $0.tags.count - start)) } ?? 0
                    // The last block of the run that gets data: the chunk must reach it.
                    var last = -1
                    for j in 0..<run where tags[k + j] != .zero { last = j }
                    if last >= held {
                        let c = chunk ?? Chunk([])
                        if chunk == nil { chunks[key] = c }
                        chunk = c
                        c.tags.append(contentsOf: repeatElement(.zero, count: start + last + 1 - c.tags.count))
                    }
                    if let c = chunk {
                        c.tags.withUnsafeMutableBufferPointer { b in
                            for j in 0..<run {
                                let i = i0 + Int64(j), new = tags[k + j]
                                let old = start + j < b.count ? b[start + j] : .zero
                                guard old != new else { continue }
                                if old != .zero { (indices[n], terms[n], n) = (i, old, n + 1) }
                                if new != .zero { (indices[n], terms[n], n) = (i, new, n + 1) }
                                b[start + j] = new  // (new is zero past the end: equal to old, skipped)
                            }
                        }
                    }
                    k += run
                }
                guard n > 0 else { return }
                digest ^= try crypto.digestTerms(indices: indices.baseAddress!, tags: terms.baseAddress!, count: n)
                changedSinceSnapshot = true
            }
        }
    }

    /// Drops every block from `first` on (a file cut to `first` blocks).
    public func drop(from first: Int64, crypto: CryptoWorker) throws {
        var terms: [(Int64, BlockTag)] = []
        for key in chunks.keys where (key + 1) * Self.chunkBlocks > first {
            let c = chunks[key]!
            for (k, t) in c.tags.enumerated() where t != .zero && key * Self.chunkBlocks + Int64(k) >= first {
                terms.append((key * Self.chunkBlocks + Int64(k), t))
            }
            let keep = Int(max(0, first - key * Self.chunkBlocks))
            if keep == 0 { chunks[key] = nil } else { c.tags.removeSubrange(min(keep, c.tags.count)...) }
        }
        digest ^= try crypto.digestTerms(terms)
        if !terms.isEmpty { changedSinceSnapshot = true }
    }

    /// The tag in a sealed block of `length` bytes (overhead included) at `block`.
    public static func tag(ofSealed block: UnsafeRawPointer, length: Int) -> BlockTag {
        (block + length - Int(BlockLayout.tagSize)).loadUnaligned(as: BlockTag.self)
    }

    /// Adds the tags of `other`, which holds other blocks than this (a load of another range).
    public func merge(_ other: BlockTags) {
        for (key, chunk) in other.chunks {
            precondition(chunks[key] == nil, "merging overlapping block ranges")
            chunks[key] = Chunk(chunk.tags)
        }
        digest ^= other.digest
    }

    /// Where a load of a file of `blocks` blocks may be split in two (a chunk boundary).
    public static func splitPoint(blocks: Int64) -> Int64 { blocks / 2 / chunkBlocks * chunkBlocks }

    /// Reads the tags of a file of `size` plaintext bytes from its backing file `fd` (holes
    /// skipped with SEEK_DATA, only the 16 tag bytes of each block copied out) and computes
    /// their digest; `range` limits it to some blocks (see `splitPoint` and `merge`). A block
    /// the backing file is too short to hold counts as absent. `mayHaveHoles` false (a record
    /// without the sparse flag) skips the search for holes (one `lseek` per batch).
    public static func load(
        fd: Int32, size: Int64, range: Range<Int64>? = nil, mayHaveHoles: Bool = true, crypto: CryptoWorker
    ) throws -> BlockTags {
        let t = BlockTags()
        let all = (size + BlockLayout.blockSize - 1) / BlockLayout.blockSize
        let blocks = min(all, range?.upperBound ?? all)
        // Two iovecs per block: IOV_MAX is 1024 (a small file allocates for its own blocks).
        let batch = Int(max(1, min(512, blocks - (range?.lowerBound ?? 0))))
        let junk = UnsafeMutableRawPointer.allocate(byteCount: Int(BlockLayout.blockSize) + 12, alignment: 64)
        let tags = UnsafeMutablePointer<BlockTag>.allocate(capacity: batch)
        let iov = UnsafeMutablePointer<iovec>.allocate(capacity: 2 * batch)
        defer {
            junk.deallocate()
            tags.deallocate()
            iov.deallocate()
        }
        var index: Int64 = range?.lowerBound ?? 0
        while index < blocks {
            guard let next = mayHaveHoles ? try BlockLayout.nextDataBlock(fd, from: index) : index, next < blocks
            else { break }
            index = next
            let n = Int(min(Int64(batch), blocks - index))
            var wanted = 0
            for k in 0..<n {
                let body = Int(
                    BlockLayout.nonceSize + BlockLayout.plaintextLength(block: index + Int64(k), fileSize: size))
                iov[2 * k] = iovec(iov_base: junk, iov_len: body)
                iov[2 * k + 1] = iovec(iov_base: UnsafeMutableRawPointer(tags + k), iov_len: 16)
                wanted += body + 16
            }
            let got = try Syscall.preadv(fd, iov, Int32(2 * n), BlockLayout.cipherOffset(block: index))
            // Blocks wholly read; a short read is the end of the backing file.
            var complete = 0, covered = 0
            while complete < n, covered + iov[2 * complete].iov_len + 16 <= got {
                covered += iov[2 * complete].iov_len + 16
                complete += 1
            }
            try t.set(first: index, tags: tags, count: complete, crypto: crypto)
            if got < wanted { break }
            index += Int64(n)
        }
        return t
    }
}

extension CryptoWorker {
    /// XOR of the content-digest terms `E(E(be128(i)) ⊕ tag)` of `terms` (see `BlockTags`).
    public func digestTerms(_ terms: [(Int64, BlockTag)]) throws -> BlockTag {
        try digestTerms(indices: terms.map(\.0), tags: terms.map(\.1), count: terms.count)
    }

    /// The same for the `count` pairs (`indices[k]`, `tags[k]`).
    public func digestTerms(indices: UnsafePointer<Int64>, tags: UnsafePointer<BlockTag>, count: Int) throws
        -> BlockTag
    {
        guard count > 0 else { return .zero }
        return try withUnsafeTemporaryAllocation(of: BlockTag.self, capacity: count) { b in
            for k in 0..<count { b[k] = BlockTag(0, UInt64(bitPattern: indices[k]).bigEndian) }
            let p = UnsafeMutableRawPointer(b.baseAddress!)
            try digestPRF.encrypt(p, blocks: count, output: p)
            for k in 0..<count { b[k] ^= tags[k] }
            try digestPRF.encrypt(p, blocks: count, output: p)
            var acc = BlockTag.zero
            for k in 0..<count { acc ^= b[k] }
            return acc
        }
    }
}
