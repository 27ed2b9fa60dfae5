import ElasticCrypto
import ElasticSystem
import Glibc
import Synchronization

/// Crash safety of overwrites: a `kill -9` of the daemon can stop a `pwrite` of several cipher
/// blocks at a page boundary, and a cipher block (4,124 bytes) always spans two pages, so the
/// block would be left half old, half new, and fail. Before it overwrites cipher bytes in place,
/// a writer copies the old bytes into its own slot of `elastic.undo` in BACKING (the slot's
/// header and the payload in one call, in the page cache, so the copy is complete before the
/// overwrite starts). The slot stays armed until its next use (recovery compares with the
/// file's record, which follows the blocks, so an armed slot of a finished write is harmless),
/// and the journal is emptied at the clean end of a mount. At the next mount,
/// `recover` puts the kept bytes back into every file whose blocks are not the ones its record
/// (content digest) names, and keeps them only if the file then is: a file being written reads
/// back as its old or new contents for each write.
/// Appends (nothing old to keep) cost nothing.
///
/// Slot layout (at `slot × slotSize`): a 4,096-byte header, magic "ELUN" ‖ version u16 = 1 ‖
/// path length u16 ‖ sequence u64 ‖ file ID (16) ‖ first block u64 ‖ payload length u32 ‖ the
/// backing path (relative to BACKING), then the old cipher bytes from the first block's offset.
/// The journal holds only ciphertext that was in BACKING before, and what it puts back must
/// leave the file as its sealed record names it: the host gains nothing by editing it.
public final class UndoJournal: Sendable {
    public static let fileName = BackingNames.undo
    static let magic: [UInt8] = Array("ELUN".utf8)
    static let headerSize = 4096
    /// The header before the path.
    static let fixedHeader = 44
    /// Zeros from the end of a slot's header to its payload.
    static let padding = [UInt8](repeating: 0, count: headerSize)
    let fd: Int32
    let slotSize: Int64
    /// Free slots, slots handed out so far, the last sequence number.
    private let state = Mutex<(free: [Int], slots: Int, sequence: UInt64)>(([], 0, 0))

    /// Opens (creating) the journal of the store whose root is `rootfd`, emptied: run `recover` first.
    public init(rootfd: Int32, maxPayload: Int) throws {
        fd = try Syscall.openat(rootfd, Self.fileName, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0o600)
        guard try Syscall.fstat(fd).st_mode & S_IFMT == S_IFREG else {
            Syscall.close(fd)
            throw FormatError.corruptMetadata("\(Self.fileName): not a regular file")
        }
        try Syscall.ftruncate(fd, 0)
        slotSize = Int64((Self.headerSize + maxPayload + 4095) / 4096 * 4096)
    }

    deinit { Syscall.close(fd) }

    /// A slot for one writer thread (give it back with `release`).
    public func acquire() -> Int {
        state.withLock { s in
            if let slot = s.free.popLast() { return slot }
            s.slots += 1
            return s.slots - 1
        }
    }

    public func release(_ slot: Int) { state.withLock { $0.free.append(slot) } }

    /// Keeps the bytes of `file` in `[offset, offset + length)` that exist (blocks from `first`)
    /// before they are overwritten; `scratch` holds at least `length` bytes; `path` (the file's
    /// backing path, asked only when there is something to keep; nil: none) names it. Returns
    /// how many bytes were kept (left in `scratch`; 0: no record was written). The record stays
    /// armed until the slot's next use; `done` disarms it after a write that was undone.
    @discardableResult
    public func keep(
        slot: Int, file: Int32, fileID: [UInt8], path: () -> String?, first: Int64, offset: Int64, length: Int,
        scratch: UnsafeMutableRawPointer
    ) throws -> Int {
        let old = try Syscall.pread(file, scratch, length, offset)
        guard old > 0, let path = path() else { return 0 }
        let seq = state.withLock { s in
            s.sequence += 1
            return s.sequence
        }
        let p = Array(path.utf8.prefix(Self.headerSize - Self.fixedHeader))
        var w = ByteWriter()
        w.raw(Self.magic)
        w.u16(1)
        w.u16(UInt16(p.count))
        w.u64(seq)
        w.raw(fileID)
        w.u64(UInt64(first))
        w.u32(UInt32(old))
        w.raw(p)
        // Header, its padding and payload in one call. A kill can still cut it at a page
        // boundary, leaving a header before a payload that is partly another write's: harmless,
        // as the overwrite it was kept for has not started, so the file still matches its record.
        let header = w.bytes
        try header.withUnsafeBytes { h in
            try Self.padding.withUnsafeBytes { z in
                try Syscall.pwritev(
                    fd,
                    [
                        h, UnsafeRawBufferPointer(rebasing: z[header.count...]),
                        UnsafeRawBufferPointer(start: scratch, count: old),
                    ],
                    Int64(slot) * slotSize)
            }
        }
        return old
    }

    /// Empties the journal (at the clean end of a mount: every write's record followed).
    public func clear() throws { try Syscall.ftruncate(fd, 0) }

    /// The write the slot's record was kept for was undone: the record no longer counts.
    public func done(slot: Int) throws {
        try Syscall.pwrite(fd, [0, 0, 0, 0], at: Int64(slot) * slotSize)
    }

    /// Puts back, in the store whose root is `rootfd`, what writes a kill interrupted changed
    /// in files whose records never followed (each file left as its record names it); returns
    /// how many blocks.
    public static func recover(rootfd: Int32, with crypto: CryptoWorker) throws -> Int {
        guard let fd = try openJournal(rootfd) else { return 0 }
        defer { Syscall.close(fd) }
        let records = try self.records(in: fd)
        // Per file, its records newest first: a write that failed earlier may have left an
        // older one armed; the copies are applied one after the other until the file matches.
        var byFile: [[UInt8]: [Record]] = [:]
        var order: [[UInt8]] = []
        for r in records.sorted(by: { $0.seq > $1.seq }) {
            if byFile[r.fileID] == nil { order.append(r.fileID) }
            byFile[r.fileID, default: []].append(r)
        }
        var restored = 0
        for id in order {
            restored += try recover(byFile[id]!, journal: fd, rootfd: rootfd, with: crypto)
        }
        return restored
    }

    typealias Record = (seq: UInt64, fileID: [UInt8], first: Int64, length: Int, path: String, at: Int64)

    /// Recovers one file from its `records` (newest first); returns how many blocks were put back.
    static func recover(_ records: [Record], journal fd: Int32, rootfd: Int32, with crypto: CryptoWorker) throws
        -> Int
    {
        let newest = records[0]
        guard let file = try? Syscall.openBeneath(rootfd, newest.path, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        else {
            return 0  // gone or renamed since: nothing to put back there
        }
        defer { Syscall.close(file) }
        // The file's record names every block (its content digest), and a write's record
        // follows its blocks: blocks that do not match it belong to a write whose record never
        // followed (torn or whole), and the kept copy is what the record names.
        guard let raw = try? Syscall.preadBytes(file, count: FileHeader.size, at: 0),
            let header = try? FileHeader(decoding: raw, with: crypto), header.fileID == newest.fileID
        else { return 0 }
        let usable = records.filter {
            $0.length <= slotLimit && $0.first >= 0 && $0.first < BlockLayout.maxPlaintextSize / BlockLayout.blockSize
        }
        let cbs = Int(BlockLayout.cipherBlockSize)
        let fileBlocks = (header.record.size + BlockLayout.blockSize - 1) / BlockLayout.blockSize
        // The record's blocks, whole: the tags it names (a pwrite torn inside a block can leave
        // the old tag behind new bytes), and every block of the records' ranges authenticates.
        func matches() -> Bool {
            guard let tags = try? BlockTags.load(fd: file, size: header.record.size, crypto: crypto),
                tags.digest == header.record.content
            else { return false }
            return usable.allSatisfy { r in
                let end = min(r.first + Int64((r.length + cbs - 1) / cbs), fileBlocks)
                return (r.first..<max(r.first, end)).allSatisfy { index in
                    let length = Int(BlockLayout.plaintextLength(block: index, fileSize: header.record.size))
                    let block =
                        (try? Syscall.preadBytes(
                            file, count: length + Int(BlockLayout.overhead), at: BlockLayout.cipherOffset(block: index)))
                        ?? []
                    return tags.tag(index) == .zero
                        ? block.allSatisfy { $0 == 0 } : authenticates(block, crypto, r.fileID, index)
                }
            }
        }
        if matches() { return 0 }
        let backingSize = Int64(try Syscall.fstat(file).st_size)
        var replaced: [(offset: Int64, bytes: [UInt8])] = []
        var blocks = 0
        for r in usable {
            let old = try Syscall.preadBytes(fd, count: r.length, at: r.at)
            let offset = BlockLayout.cipherOffset(block: r.first)
            replaced.append((offset, try Syscall.preadBytes(file, count: old.count, at: offset)))
            try Syscall.pwrite(file, old, at: offset)
            blocks += (old.count + cbs - 1) / cbs
            if matches() { return blocks }
        }
        // No copy fits (the file was damaged otherwise): leave it as it was.
        for r in replaced.reversed() { try Syscall.pwrite(file, r.bytes, at: r.offset) }
        if Int64(try Syscall.fstat(file).st_size) > backingSize { try Syscall.ftruncate(file, backingSize) }
        return 0
    }

    /// Whether the journal of the store whose root is `rootfd` holds a record a crash left
    /// (for a read-only mount, which does not recover).
    public static func hasRecords(rootfd: Int32) -> Bool {
        guard let fd = try? openJournal(rootfd) else { return false }
        defer { Syscall.close(fd) }
        return !((try? records(in: fd)) ?? []).isEmpty
    }

    /// The journal of the store whose root is `rootfd`, read-only; nil when there is none.
    static func openJournal(_ rootfd: Int32) throws -> Int32? {
        do { return try Syscall.openat(rootfd, fileName, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC) } catch let e
            as Errno where e == .noSuchFileOrDirectory
        {
            return nil
        }
    }

    /// The armed records of the journal `fd`. Slots are found by their headers, at page
    /// boundaries (old cipher bytes never start with the magic and version: a nonce is random,
    /// and a false match must still leave the file as its record names it).
    static func records(in fd: Int32) throws -> [Record] {
        let size = Int64(try Syscall.fstat(fd).st_size)
        var records: [Record] = []
        var header = [UInt8](repeating: 0, count: fixedHeader)
        var slot: Int64 = 0
        while slot < size {
            let n = try header.withUnsafeMutableBytes { try Syscall.pread(fd, $0.baseAddress!, fixedHeader, slot) }
            if n == fixedHeader, Array(header[0..<4]) == magic, header[4] == 0, header[5] == 1 {
                var r = ByteReader(Array(header[6...]))
                let pathLength = Int(try r.u16()), seq = try r.u64(), fileID = try r.raw(16)
                let first = Int64(try r.u64()), length = Int(try r.u32())
                let path = try Syscall.preadBytes(fd, count: pathLength, at: slot + Int64(fixedHeader))
                records.append(
                    (seq, fileID, first, length, String(decoding: path, as: UTF8.self), slot + Int64(headerSize)))
            }
            slot += 4096
        }
        return records
    }

    /// The largest record `recover` reads (a slot's payload at most).
    static let slotLimit = 64 << 20

    /// Whether `block` (a whole cipher block) opens as block `index` of `fileID`.
    static func authenticates(_ block: [UInt8], _ crypto: CryptoWorker, _ fileID: [UInt8], _ index: Int64) -> Bool {
        guard block.count > Int(BlockLayout.overhead) else { return false }
        var out = [UInt8](repeating: 0, count: block.count)
        return block.withUnsafeBytes { b in
            fileID.withUnsafeBytes { id in
                out.withUnsafeMutableBytes { o in
                    (try? crypto.openBlock(
                        fileID: id, index: index, cipher: b.baseAddress!, length: b.count, output: o.baseAddress!,
                        holes: false)) != nil
                }
            }
        }
    }
}
