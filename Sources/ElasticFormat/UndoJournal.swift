import ElasticCrypto
import ElasticSystem
import Glibc
import Synchronization

/// Crash safety of overwrites: a `kill -9` of the daemon can stop a `pwrite` of several cipher
/// blocks at a page boundary, and a cipher block (4,124 bytes) always spans two pages, so the
/// block would be left half old, half new, and fail. Before it overwrites cipher bytes in place,
/// a writer puts a copy into its own slot of `elastic.undo` in BACKING (header and payload in
/// one call, in the page cache, so the copy is complete before the overwrite starts):
/// - a **write-ahead copy** (`writeAhead`) when the write changes no length: the new cipher
///   bytes and the sealed record that names them. Recovery finishes the write.
/// - an **undo copy** (`keep`) otherwise (a block grown or cut): the old bytes. Recovery puts
///   them back, before the write.
/// A slot stays armed until its next use (recovery compares with the file's record, which is
/// written after the blocks, so an armed slot of a finished write is harmless), and the journal
/// is emptied at the clean end of a mount. At the next mount `recover` applies, newest first,
/// the copies of every file whose blocks are not the ones its record (content digest) names,
/// and keeps a change only if the file then is: a file being written reads back as its old or
/// new contents for each write. Appends (nothing old to keep) cost nothing.
///
/// Record layout (at `slot × slotSize`, slots page-aligned): magic "ELUN" ‖ version u16 = 2 ‖
/// kind u8 (0 undo, 1 write-ahead) ‖ finish u8 (1: a write-ahead copy `pin` kept) ‖ path
/// length u16 ‖ record length u16 ‖ sequence u64 ‖ file ID (16) ‖ first block u64 ‖ payload
/// length u32 ‖ the backing path (relative to BACKING) ‖ the sealed record (write-ahead only) ‖
/// the payload, cipher bytes from the first block's offset. (Version 1, left by an earlier build: no kind or record, payload at +4096.)
/// The journal holds only ciphertext and records this daemon sealed for BACKING, and what it
/// applies must leave the file as a sealed record names it: the host gains nothing by editing it.
public final class UndoJournal: Sendable {
    public static let fileName = BackingNames.undo
    static let magic: [UInt8] = Array("ELUN".utf8)
    /// Room for the header, path and record before the payload.
    static let headerSize = 4096
    /// The header before the path.
    static let fixedHeader = 48
    /// Version 1's header before the path.
    static let fixedHeaderV1 = 44
    let fd: Int32
    let slotSize: Int64
    /// Free slots, slots handed out so far, the last sequence number, slots kept for the next
    /// mount.
    private let state = Mutex<(free: [Int], slots: Int, sequence: UInt64, pinned: Set<Int>)>(([], 0, 0, []))

    /// What a record's payload is.
    enum Kind: UInt8 {
        /// The bytes before the write: put back.
        case undo = 0
        /// The bytes of the write, with the file's record after it: written (again).
        case writeAhead = 1
    }

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

    public func release(_ slot: Int) {
        state.withLock { s in
            if !s.pinned.contains(slot) { s.free.append(slot) }
        }
    }

    /// Keeps `slot`'s write-ahead record for the next mount, marked to be finished even where
    /// the file still matches its old record: it holds the only copy that can finish a write
    /// which failed half way, and whose record this session took as the file's. The slot is
    /// never handed out again, and `clear` leaves the journal.
    public func pin(_ slot: Int) throws {
        state.withLock { _ = $0.pinned.insert(slot) }
        try Syscall.pwrite(fd, [1], at: Int64(slot) * slotSize + 7)
    }

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
        try put(.undo, slot: slot, fileID: fileID, path: path, first: first, record: [], payload: scratch, count: old)
        return old
    }

    /// Copies the `count` new cipher bytes at `cipher` (blocks from `first`) and `record`, the
    /// sealed record the file gets after them, before they overwrite bytes of the file (its
    /// length unchanged) at `path`. The record stays armed until the slot's next use.
    public func writeAhead(
        slot: Int, fileID: [UInt8], path: String, first: Int64, cipher: UnsafeRawPointer, count: Int, record: [UInt8]
    ) throws {
        try put(
            .writeAhead, slot: slot, fileID: fileID, path: path, first: first, record: record, payload: cipher,
            count: count)
    }

    /// Writes one record into `slot`: its header, path and sealed record, then the payload, in
    /// one call. A kill can cut it at a page boundary, leaving a header before a payload that
    /// is partly another write's: harmless, as the overwrite it was written for has not
    /// started, so the file still matches its record.
    private func put(
        _ kind: Kind, slot: Int, fileID: [UInt8], path: String, first: Int64, record: [UInt8],
        payload: UnsafeRawPointer, count: Int
    ) throws {
        let seq = state.withLock { s in
            s.sequence += 1
            return s.sequence
        }
        // Built in place (no heap arrays: this runs before every overwrite); the path is cut
        // to what fits after the fixed fields, a 16-byte file ID among them, and the record.
        precondition(fileID.count == 16 && record.count <= Self.headerSize - Self.fixedHeader)
        try withUnsafeTemporaryAllocation(byteCount: Self.headerSize, alignment: 8) { h in
            var at = 0
            func put(_ bytes: UnsafeRawBufferPointer) {
                h.baseAddress!.advanced(by: at).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
                at += bytes.count
            }
            func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.bigEndian) { put($0) } }
            Self.magic.withUnsafeBytes { put($0) }
            put(UInt16(2))
            put(kind.rawValue)
            put(UInt8(0))
            var path = path
            let pathLength = min(path.utf8.count, Self.headerSize - Self.fixedHeader - record.count)
            put(UInt16(pathLength))
            put(UInt16(record.count))
            put(seq)
            fileID.withUnsafeBytes { put($0) }
            put(UInt64(first))
            put(UInt32(count))
            path.withUTF8 { put(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer($0)[..<pathLength])) }
            record.withUnsafeBytes { put($0) }
            try Syscall.pwritev(
                fd, UnsafeRawBufferPointer(rebasing: h[..<at]), UnsafeRawBufferPointer(start: payload, count: count),
                Int64(slot) * slotSize)
        }
    }

    /// Empties the journal at the clean end of a mount (every write's record followed), unless
    /// a slot is pinned.
    public func clear() throws {
        guard state.withLock({ $0.pinned.isEmpty }) else { return }
        try Syscall.ftruncate(fd, 0)
    }

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

    /// One armed record: its payload's and sealed record's places in the journal.
    struct Record {
        var kind: Kind
        /// A write-ahead copy to apply even where the file matches its old record (`pin`).
        var finish = false
        var seq: UInt64
        var fileID: [UInt8]
        var first: Int64
        var length: Int
        var path: String
        var record: [UInt8]
        var at: Int64
    }

    /// Recovers one file from its `records` (newest first); returns how many blocks were
    /// written back.
    static func recover(_ records: [Record], journal fd: Int32, rootfd: Int32, with crypto: CryptoWorker) throws
        -> Int
    {
        let newest = records[0]
        guard let file = try? Syscall.openBeneath(rootfd, newest.path, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        else {
            return 0  // gone or renamed since: nothing to put back there
        }
        defer { Syscall.close(file) }
        guard let header = readHeader(file, crypto), header.fileID == newest.fileID else { return 0 }
        // (At most `recordsPerFile`, newest first: a journal holds one per writer thread.)
        let usable = records.filter {
            $0.length <= slotLimit && $0.first >= 0 && $0.first < BlockLayout.maxPlaintextSize / BlockLayout.blockSize
        }.prefix(recordsPerFile)
        let cbs = Int(BlockLayout.cipherBlockSize)
        // The file's record names every block (its content digest), and a write's record is
        // written after its blocks: blocks that do not match it belong to a write whose record
        // never followed (torn or whole). Matching means the record's blocks, whole: the tags it
        // names (a pwrite torn inside a block can leave the old tag behind new bytes), and every
        // block of the records' ranges authenticates.
        func matches() -> Bool {
            guard let record = readHeader(file, crypto)?.record,
                let tags = try? BlockTags.load(fd: file, size: record.size, crypto: crypto),
                tags.digest == record.content
            else { return false }
            let fileBlocks = (record.size + BlockLayout.blockSize - 1) / BlockLayout.blockSize
            return usable.allSatisfy { r in
                let end = min(r.first + Int64((r.length + cbs - 1) / cbs), fileBlocks)
                return (r.first..<max(r.first, end)).allSatisfy { index in
                    let length = Int(BlockLayout.plaintextLength(block: index, fileSize: record.size))
                    let block =
                        (try? Syscall.preadBytes(
                            file, count: length + Int(BlockLayout.overhead), at: BlockLayout.cipherOffset(block: index)))
                        ?? []
                    return tags.tag(index) == .zero
                        ? block.allSatisfy { $0 == 0 } : authenticates(block, crypto, r.fileID, index)
                }
            }
        }
        // (A kept copy is the newest of its file: nothing changed the file after its write failed.)
        if matches() && !newest.finish { return 0 }
        let backingSize = Int64(try Syscall.fstat(file).st_size)
        var replaced: [(offset: Int64, bytes: [UInt8])] = []
        func replace(_ bytes: [UInt8], at offset: Int64) throws {
            replaced.append((offset, try Syscall.preadBytes(file, count: bytes.count, at: offset)))
            try Syscall.pwrite(file, bytes, at: offset)
        }
        var blocks = 0
        do {
            for r in usable {
                let payload = try Syscall.preadBytes(fd, count: r.length, at: r.at)
                try replace(payload, at: BlockLayout.cipherOffset(block: r.first))
                // A write-ahead copy ends with the record its write was to leave.
                if r.kind == .writeAhead { try replace(r.record, at: FileHeader.recordOffset) }
                blocks += (payload.count + cbs - 1) / cbs
                if matches() { return blocks }
            }
        } catch {
            // (A record the file cannot take, such as a place past its largest size.)
        }
        // No copy fits (the file was damaged otherwise): leave it as it was.
        for r in replaced.reversed() { try Syscall.pwrite(file, r.bytes, at: r.offset) }
        if Int64(try Syscall.fstat(file).st_size) > backingSize { try Syscall.ftruncate(file, backingSize) }
        return 0
    }

    /// The header of the backing file `file`, if it authenticates.
    static func readHeader(_ file: Int32, _ crypto: CryptoWorker) -> FileHeader? {
        guard let raw = try? Syscall.preadBytes(file, count: FileHeader.size, at: 0) else { return nil }
        return try? FileHeader(decoding: raw, with: crypto)
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
    /// boundaries (a false match inside a payload is as unlikely as a 48-bit guess, and must
    /// still leave the file as a sealed record names it).
    static func records(in fd: Int32) throws -> [Record] {
        let size = Int64(try Syscall.fstat(fd).st_size)
        var records: [Record] = []
        var slot: Int64 = 0
        while slot < size {
            defer { slot += 4096 }
            let header = try Syscall.preadBytes(fd, count: fixedHeader, at: slot)
            guard header.count >= fixedHeaderV1, Array(header[0..<4]) == magic, header[4] == 0,
                header[5] == 1 || header[5] == 2
            else { continue }
            var r = ByteReader(Array(header[6...]))
            if header[5] == 1 {
                let pathLength = Int(try r.u16()), seq = try r.u64(), fileID = try r.raw(16)
                let first = Int64(try r.u64()), length = Int(try r.u32())
                let path = try Syscall.preadBytes(fd, count: pathLength, at: slot + Int64(fixedHeaderV1))
                records.append(
                    Record(
                        kind: .undo, seq: seq, fileID: fileID, first: first, length: length,
                        path: String(decoding: path, as: UTF8.self), record: [], at: slot + Int64(headerSize)))
                continue
            }
            guard header.count == fixedHeader, let kind = Kind(rawValue: try r.u8()) else { continue }
            let finish = try r.u8() == 1 && kind == .writeAhead
            let pathLength = Int(try r.u16()), recordLength = Int(try r.u16())
            let seq = try r.u64(), fileID = try r.raw(16), first = Int64(try r.u64()), length = Int(try r.u32())
            let names = try Syscall.preadBytes(fd, count: pathLength + recordLength, at: slot + Int64(fixedHeader))
            guard fixedHeader + pathLength + recordLength <= headerSize, names.count == pathLength + recordLength,
                recordLength == (kind == .undo ? 0 : ObjectRecord.sealedSize)
            else { continue }
            records.append(
                Record(
                    kind: kind, finish: finish, seq: seq, fileID: fileID, first: first, length: length,
                    path: String(decoding: names[..<pathLength], as: UTF8.self), record: Array(names[pathLength...]),
                    at: slot + Int64(fixedHeader + pathLength + recordLength)))
        }
        return records
    }

    /// The largest record `recover` reads (a slot's payload at most).
    static let slotLimit = 64 << 20
    /// The most records `recover` tries for one file.
    static let recordsPerFile = 64

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
