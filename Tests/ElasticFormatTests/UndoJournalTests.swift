import ElasticCrypto
import ElasticSystem
import Foundation
import Testing

@testable import ElasticFormat

/// The undo journal, made deterministic: an overwrite is kept, then torn by hand as a killed
/// `pwrite` tears it (the first bytes new, the rest old), and `recover` must give back the
/// blocks the file's record names (the write's record never followed: all of them old), and
/// leave a write that completed alone.
@Suite struct UndoJournalTests {
    let crypto: CryptoWorker
    let dir: String
    let root: OpenDirectory
    let cbs = Int(BlockLayout.cipherBlockSize)
    let bs = Int(BlockLayout.blockSize)

    init() throws {
        crypto = try CryptoWorker(keys: StoreKeys(master: try SecureBytes.random(count: 32)))
        dir = NSTemporaryDirectory() + "elastic-undo-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        root = try Syscall.openDirectory(dir)
    }

    func cleanUp() { try? FileManager.default.removeItem(atPath: dir) }

    /// Three blocks, each of one repeated byte, sealed for `id`.
    func sealed(_ id: [UInt8], _ fill: UInt8) throws -> [UInt8] {
        let plain = [UInt8](repeating: fill, count: 3 * bs)
        var out = [UInt8](repeating: 0, count: 3 * cbs)
        let n = try id.withUnsafeBytes { i in
            try plain.withUnsafeBytes { p in
                try out.withUnsafeMutableBytes { o in
                    try crypto.sealBlocks(
                        fileID: i, first: 0, plaintext: p.baseAddress!, count: plain.count, output: o.baseAddress!)
                }
            }
        }
        #expect(n == 3 * cbs)
        return out
    }

    /// The byte block `index` of the file decrypts to (nil: it does not authenticate).
    func block(_ fd: Int32, _ id: [UInt8], _ index: Int) throws -> UInt8? {
        let c = try Syscall.preadBytes(fd, count: cbs, at: BlockLayout.cipherOffset(block: Int64(index)))
        var out = [UInt8](repeating: 0, count: bs)
        let ok = c.withUnsafeBytes { cp in
            id.withUnsafeBytes { i in
                out.withUnsafeMutableBytes { o in
                    (try? crypto.openBlock(
                        fileID: i, index: Int64(index), cipher: cp.baseAddress!, length: c.count,
                        output: o.baseAddress!, holes: false)) != nil
                }
            }
        }
        return ok && out.allSatisfy({ $0 == out[0] }) ? out[0] : nil
    }

    /// A file of three blocks of 1s, then an overwrite with 2s, its old bytes kept in the
    /// journal (or, with `ahead`, its new bytes and record), torn in block 1; `complete` says
    /// whether the write then finished and the file's record followed (its journal slot left
    /// armed, as the daemon leaves it); `cutJournal` tears the journal's own copy instead,
    /// before the overwrite starts; `started` false: the kill came before the overwrite.
    func tornOverwrite(
        complete: Bool, tornAt: Int? = nil, cutJournal: Bool = false, ahead: Bool = false, started: Bool = true
    ) throws -> (fd: Int32, id: [UInt8], restored: Int) {
        var header = try FileHeader.new(ObjectRecord(kind: .regular, mode: 0o600, uid: 0, gid: 0, size: Int64(3 * bs)))
        let old = try sealed(header.fileID, 1)
        let tags = BlockTags()
        for i in 0..<3 {
            var t = old.withUnsafeBytes { BlockTags.tag(ofSealed: $0.baseAddress! + i * cbs, length: cbs) }
            try tags.set(first: Int64(i), tags: &t, count: 1, crypto: crypto)
        }
        header.record.content = tags.digest
        let fd = try Syscall.openat(root.fd, "f", O_RDWR | O_CREAT | O_EXCL, 0o600)
        try Syscall.pwrite(fd, try header.encode(with: crypto) + old, at: 0)
        let journal = try UndoJournal(rootfd: root.fd, maxPayload: 4 * cbs)
        let slot = journal.acquire()
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: 4 * cbs, alignment: 16)
        defer { scratch.deallocate() }
        let offset = BlockLayout.cipherOffset(block: 0)
        let new = try sealed(header.fileID, 2)
        var newHeader = header
        let now = BlockTags()
        for i in 0..<3 {
            var t = new.withUnsafeBytes { BlockTags.tag(ofSealed: $0.baseAddress! + i * cbs, length: cbs) }
            try now.set(first: Int64(i), tags: &t, count: 1, crypto: crypto)
        }
        newHeader.record.content = now.digest
        let newRecord = try newHeader.sealedRecord(with: crypto)
        if ahead {
            try new.withUnsafeBytes {
                try journal.writeAhead(
                    slot: slot, fileID: header.fileID, path: "f", first: 0, cipher: $0.baseAddress!, count: new.count,
                    record: newRecord)
            }
        } else {
            #expect(
                try journal.keep(
                    slot: slot, file: fd, fileID: header.fileID, path: { "f" }, first: 0, offset: offset,
                    length: 3 * cbs, scratch: scratch) == 3 * cbs)
        }
        let payloadAt = Int64(UndoJournal.fixedHeader + 1 + (ahead ? newRecord.count : 0))
        if !started {
        } else if cutJournal {
            // A kill cut the journal's one pwritev after its header: the payload is partly
            // another write's bytes, and the overwrite never began.
            let undo = try Syscall.openat(root.fd, UndoJournal.fileName, O_RDWR)
            try Syscall.pwrite(undo, [UInt8](repeating: 9, count: 2 * cbs), at: payloadAt + Int64(cbs / 2))
            Syscall.close(undo)
        } else if complete {
            try Syscall.pwrite(fd, new, at: offset)
            try Syscall.pwrite(fd, newRecord, at: FileHeader.recordOffset)
        } else {
            try Syscall.pwrite(fd, Array(new[0..<(tornAt ?? (cbs + 2000))]), at: offset)  // stopped inside block 1
        }
        return (fd, header.fileID, try UndoJournal.recover(rootfd: root.fd, with: crypto))
    }

    @Test func aTornBlockGetsItsOldContentsBack() throws {
        defer { cleanUp() }
        let (fd, id, restored) = try tornOverwrite(complete: false)
        defer { Syscall.close(fd) }
        #expect(restored == 3)
        for i in 0..<3 { #expect(try block(fd, id, i) == 1, "block \(i) is the version the record names") }
    }

    /// A tear inside block 0 before its tag: the tags are still the old ones (the digest
    /// matches), but block 0's bytes are half new; it must be put back all the same.
    @Test func aTearThatLeavesTheOldTagIsPutBackToo() throws {
        defer { cleanUp() }
        let (fd, id, restored) = try tornOverwrite(complete: false, tornAt: cbs - 100)
        defer { Syscall.close(fd) }
        #expect(restored == 3)
        for i in 0..<3 { #expect(try block(fd, id, i) == 1, "block \(i) is the version the record names") }
    }

    @Test func aCompletedWriteIsLeftAlone() throws {
        defer { cleanUp() }
        let (fd, id, restored) = try tornOverwrite(complete: true)
        defer { Syscall.close(fd) }
        #expect(restored == 0)
        for i in 0..<3 { #expect(try block(fd, id, i) == 2) }
    }

    @Test func aJournalCopyCutShortChangesNothing() throws {
        defer { cleanUp() }
        let (fd, id, restored) = try tornOverwrite(complete: false, cutJournal: true)
        defer { Syscall.close(fd) }
        #expect(restored == 0)
        for i in 0..<3 { #expect(try block(fd, id, i) == 1) }
    }

    /// A write-ahead copy: the torn overwrite is finished (every block new, and the record
    /// that names them written).
    @Test func aTornOverwriteWithItsNewBytesCopiedIsFinished() throws {
        defer { cleanUp() }
        for tornAt in [cbs + 2000, cbs - 100, 3 * cbs] {
            let (fd, id, restored) = try tornOverwrite(complete: false, tornAt: tornAt, ahead: true)
            defer {
                Syscall.close(fd)
                _ = unlink(dir + "/f")
            }
            #expect(restored == 3)
            for i in 0..<3 { #expect(try block(fd, id, i) == 2, "block \(i) is the new version (torn at \(tornAt))") }
            #expect(try UndoJournal.recover(rootfd: root.fd, with: crypto) == 0, "the file now matches its record")
        }
    }

    /// A write-ahead copy whose overwrite never began, or whose own copy was cut short: the
    /// file is left as it was; one whose write completed: left as it is.
    @Test func aWriteAheadCopyChangesOnlyAnUnfinishedFile() throws {
        defer { cleanUp() }
        for (complete, cut, started, expected) in [
            (false, false, false, UInt8(1)), (false, true, true, 1), (true, false, true, 2),
        ] {
            let (fd, id, restored) = try tornOverwrite(
                complete: complete, cutJournal: cut, ahead: true, started: started)
            defer {
                Syscall.close(fd)
                _ = unlink(dir + "/f")
            }
            #expect(restored == 0)
            for i in 0..<3 { #expect(try block(fd, id, i) == expected) }
        }
    }

    @Test func nothingIsPutBackIntoAnotherFile() throws {
        defer { cleanUp() }
        // The same record, but the file at its path is now another object: left alone.
        let header = try FileHeader.new(ObjectRecord(kind: .regular, mode: 0o600, uid: 0, gid: 0, size: Int64(3 * bs)))
        Syscall.close(try tornOverwrite(complete: false).fd)
        let other = try Syscall.openat(root.fd, "f", O_RDWR | O_TRUNC)
        defer { Syscall.close(other) }
        try Syscall.pwrite(other, try header.encode(with: crypto) + [UInt8](repeating: 7, count: 3 * cbs), at: 0)
        #expect(try UndoJournal.recover(rootfd: root.fd, with: crypto) == 0)
    }
}
