import ElasticFormat
import ElasticSystem
import Glibc

/// File contents: reads decrypt whole blocks; writes read-modify-write the partial blocks at
/// either end and seal everything they touch in one pass. Holes (from sparse extension) are
/// all-zero cipher blocks and read as zeros.
extension ElasticFilesystem {
    static let bs = BlockLayout.blockSize
    static let cbs = BlockLayout.cipherBlockSize

    /// Reads and authenticates the header of the regular backing file `name` in `dirfd`, which
    /// must be the object `expected` (not something swapped in since it was listed).
    func readHeader(dirfd: Int32, name: String, expected: DevIno) throws -> FileHeader {
        // O_NOATIME: reading the header is ELASTIC's business, not an access by the user.
        let flags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC
        let fd: Int32
        do { fd = try opening { try Syscall.openat(dirfd, name, flags | LinuxConstants.oNoAtime) } } catch let e
            as Errno
            where e == .notPermitted
        {
            fd = try opening { try Syscall.openat(dirfd, name, flags) }  // not the owner (a shared store)
        }
        defer { Syscall.close(fd) }
        let st = try Syscall.fstat(fd)
        guard st.st_mode & S_IFMT == S_IFREG, DevIno(st) == expected else { throw Errno.staleNFSFileHandle }
        let h = try readHeader(fd: fd, backingIno: st.st_ino)
        // With no inode for it, nothing of this daemon is changing the file: its record must be
        // the version the store recorded or this mount last wrote. Compared under the table
        // lock, where a new inode (and so any write) would have to be.
        let accepted = inodes.withLock { t -> Bool in
            guard t.byKey[expected] == nil else { return true }
            return versions.accepts(VersionKey(ObjectID(h.fileID), .record), h.record.version)
        }
        if !accepted {
            logger.error(
                "file header is an earlier version than the store recorded: refusing the file",
                metadata: ["backing.ino": "\(st.st_ino)"])
            throw FormatError.corruptHeader(
                "an earlier version of the file (its record is not the one the store recorded)")
        }
        return h
    }

    /// Notes `record`, just sealed by `crypto` for the file `fileID`, as its current version.
    func remember(_ fileID: [UInt8], _ record: ObjectRecord, sealedBy crypto: CryptoWorker) {
        versions.note(VersionKey(ObjectID(fileID), .record), record.sealedBy(crypto).version)
    }

    func readHeader(fd: Int32, backingIno: ino_t) throws -> FileHeader {
        var raw = [UInt8](repeating: 0, count: FileHeader.size)
        do {
            let n = try raw.withUnsafeMutableBytes { try Syscall.pread(fd, $0.baseAddress!, $0.count, 0) }
            guard n == FileHeader.size else { throw FormatError.corruptHeader("header cut short (\(n) bytes)") }
            return try FileHeader(decoding: raw, with: worker().crypto)
        } catch let e as FormatError {
            logger.error(
                "file header failed its checks: refusing the file",
                metadata: ["backing.ino": "\(backingIno)", "why": "\(e)"])
            throw e
        }
    }

    /// The header of `i` (a regular or special file): cached since its lookup.
    func header(_ i: Inode) throws -> FileHeader {
        if i.unfinished.load(ordering: .acquiring) {
            throw FormatError.integrity("an overwrite failed half way: the next mount finishes it from the journal")
        }
        if let h = i.header.withLock({ $0 }) { return h }
        let h = try atName(
            i, { dirfd, name in try readHeader(dirfd: dirfd, name: name, expected: i.key) }, check: { _ in true })
        i.header.withLock { $0 = h }
        return h
    }

    /// Changes the record of `i` and writes it back in place (one sealed record, at the same
    /// offset of the header); every change sets ctime to now (before `change` runs, so it may
    /// set mtime from it). Call with the content write lock held; `fd` open for writing.
    func updateRecord(_ i: Inode, fd: Int32, _ change: (inout ObjectRecord) -> Void) throws {
        try commitRecord(i, fd: fd, try sealRecord(i, change))
    }

    /// A record sealed for its file: the header it belongs to, the sealed bytes, its version.
    typealias SealedRecord = (header: FileHeader, sealed: [UInt8], version: ObjectVersion)

    /// `i`'s header with the record `change` makes of it (a new ctime, and the content digest
    /// of its tags as they now are), and that record sealed: `commitRecord` writes it.
    func sealRecord(_ i: Inode, _ change: (inout ObjectRecord) -> Void) throws -> SealedRecord {
        var h = try header(i)
        h.record.ctime = ObjectRecord.now()
        change(&h.record)
        // The record names the blocks as they now are (the tags follow every block written).
        if let tags = i.tags.withLock({ $0 }) { h.record.content = tags.digest }
        let (sealed, version) = try h.record.sealWithVersion(objectID: h.fileID, with: worker().crypto)
        return (h, sealed, version)
    }

    /// Writes `r` (from `sealRecord`) into `i`'s backing file `fd`, makes its header the one `i`
    /// has and its version the file's.
    func commitRecord(_ i: Inode, fd: Int32, _ r: SealedRecord) throws {
        try r.sealed.withUnsafeBytes { try Syscall.pwrite(fd, $0.baseAddress!, $0.count, FileHeader.recordOffset) }
        i.header.withLock { $0 = r.header }
        let t = try worker()
        versions.note(VersionKey(ObjectID(r.header.fileID), .record), r.version)
        // The write's blocks and record are both in place: nothing to put back if it fails
        // later (its journal slot stays armed, harmlessly, until the next overwrite).
        t.kept = nil
    }

    /// Creates the header of a new backing file (open for writing as `fd`).
    func writeNewHeader(fd: Int32, _ record: ObjectRecord) throws -> FileHeader {
        let h = try FileHeader.new(record)
        let crypto = try worker().crypto
        try Syscall.pwrite(fd, try h.encode(with: crypto), at: 0)
        remember(h.fileID, h.record, sealedBy: crypto)
        return h
    }

    func cipherSize(_ fd: Int32) throws -> Int64 { Int64(try Syscall.fstat(fd).st_size) }

    /// The tags of `i`'s blocks (`fd`: its backing file), loaded and checked against the
    /// record's content digest on first use while the file is open. Call with the content lock
    /// held (read or write).
    func blockTags(_ i: Inode, fd: Int32, _ t: ThreadState) throws -> BlockTags {
        if let tags = i.tags.withLock({ $0 }) { return tags }
        let h = try header(i)
        let loaded =
            try TagSnapshot.read(
                fd: fd, fileID: h.fileID, size: h.record.size, digest: h.record.content, with: t.crypto)
            ?? loadTags(fd: fd, size: h.record.size, sparse: h.record.sparse, t)
        // (Logged once, with the inode, where the error becomes EIO.)
        guard loaded.digest == h.record.content else { throw FormatError.contentMismatch }
        return i.tags.withLock { current in
            if let current { return current }
            current = loaded
            return loaded
        }
    }

    /// `BlockTags.load`, the second half of a large file (32 MiB and more) on the crypto helper:
    /// reading the tags touches every page of the backing file, two cores do it in half the time.
    func loadTags(fd: Int32, size: Int64, sparse: Bool, _ t: ThreadState) throws -> BlockTags {
        let blocks = (size + Self.bs - 1) / Self.bs
        let split = BlockTags.splitPoint(blocks: blocks)
        if blocks >= 8192, let helper {
            var tail: Result<BlockTags, any Error> = .failure(Errno.ioError)
            var head: Result<BlockTags, any Error> = .failure(Errno.ioError)
            let ran = helper.run(
                background: {
                    tail = Result {
                        try BlockTags.load(
                            fd: fd, size: size, range: split..<blocks, mayHaveHoles: sparse,
                            crypto: self.worker().crypto)
                    }
                },
                foreground: {
                    head = Result {
                        try BlockTags.load(fd: fd, size: size, range: 0..<split, mayHaveHoles: sparse, crypto: t.crypto)
                    }
                })
            if ran {
                let tags = try head.get()
                tags.merge(try tail.get())
                return tags
            }
        }
        return try BlockTags.load(fd: fd, size: size, mayHaveHoles: sparse, crypto: t.crypto)
    }

    /// Opens block `index` (`clen` cipher bytes at `cipher`) into `dst`: it must be the version
    /// `tags` names (a hole: all zero bytes, read as zeros) and authenticate for the file and index.
    func openChecked(
        _ t: ThreadState, fileID: UnsafeRawBufferPointer, index: Int64, cipher: UnsafeRawPointer, length clen: Int,
        into dst: UnsafeMutableRawPointer, tags: BlockTags
    ) throws {
        let expected = tags.tag(index)
        if expected == .zero {
            guard CryptoWorker.isAllZero(cipher, clen) else { throw FormatError.authenticationFailed(block: index) }
            dst.initializeMemory(as: UInt8.self, repeating: 0, count: clen - Int(BlockLayout.overhead))
            return
        }
        guard BlockTags.tag(ofSealed: cipher, length: clen) == expected else {
            throw FormatError.authenticationFailed(block: index)
        }
        let opened = try t.crypto.openBlock(
            fileID: fileID, index: index, cipher: cipher, length: clen, output: dst, holes: false)
        guard opened == clen - Int(BlockLayout.overhead) else { throw FormatError.corruptLength(Int64(opened)) }
    }

    /// Decrypts block `index` (holding `length` plaintext bytes) into `dst`.
    func loadBlock(
        _ t: ThreadState, fd: Int32, fileID: [UInt8], index: Int64, length: Int64, into dst: UnsafeMutableRawPointer,
        tags: BlockTags
    ) throws {
        let clen = Int(length + BlockLayout.overhead)
        let got = try Syscall.pread(fd, t.cipher, clen, BlockLayout.cipherOffset(block: index))
        guard got == clen else { throw FormatError.corruptLength(Int64(got)) }
        try fileID.withUnsafeBytes {
            try openChecked(t, fileID: $0, index: index, cipher: t.cipher, length: clen, into: dst, tags: tags)
        }
    }

    /// Seals `count` plaintext bytes (from `t.plain` unless given) as blocks starting at `first`
    /// and writes them.
    func storeBlocks(
        _ t: ThreadState, fd: Int32, fileID: [UInt8], first: Int64, from plain: UnsafeRawPointer? = nil, count: Int,
        of inode: Inode? = nil, tags: BlockTags
    ) throws {
        let src = plain ?? UnsafeRawPointer(t.plain)
        let clen = try seal(t, fileID: fileID, first: first, plaintext: src, count: count)
        let offset = BlockLayout.cipherOffset(block: first)
        // The bytes this overwrites, kept first: a kill during the pwrite below leaves each
        // block old or new (`UndoJournal`). A file without a name needs none (gone after a crash).
        if let undo = t.undo, let inode {
            // Whole old blocks: a truncate that shrinks the last block keeps all of it.
            let whole = (clen + Int(Self.cbs) - 1) / Int(Self.cbs) * Int(Self.cbs)
            let kept = try undo.journal.keep(
                slot: undo.slot, file: fd, fileID: fileID, path: { backingPath(inode, t) }, first: first,
                offset: offset,
                length: whole,
                scratch: undo.scratch)
            if kept > 0 { t.kept = (fd, offset, kept) }
        }
        // The slot stays armed until the next keep replaces it: recovery compares with the
        // file's record (which follows the blocks), so an armed slot of a finished write is
        // harmless, and a write that fails half way keeps its old copy.
        try Syscall.pwrite(fd, t.cipher, clen, offset)
        try noteTags(t, first: first, count: count, tags: tags)
    }

    /// Seals `count` plaintext bytes at `plain` as blocks from `first`, which all exist (the
    /// file's length stays), writes them over the old ones and then the record that names them
    /// (mtime and ctime now). The new bytes and record go to the journal first
    /// (`UndoJournal.writeAhead`): a kill during the overwrite leaves a file the next mount
    /// finishes, without a read of the old bytes. A file without a name needs no copy.
    func overwriteBlocks(
        _ i: Inode, _ t: ThreadState, fd: Int32, fileID: [UInt8], first: Int64, from plain: UnsafeRawPointer,
        count: Int, tags: BlockTags
    ) throws {
        let clen = try seal(t, fileID: fileID, first: first, plaintext: plain, count: count)
        try noteTags(t, first: first, count: count, tags: tags)
        let record = try sealRecord(i) { $0.mtime = $0.ctime }
        var copied = false
        if let undo = t.undo, let path = backingPath(i, t) {
            try undo.journal.writeAhead(
                slot: undo.slot, fileID: fileID, path: path, first: first, cipher: t.cipher, count: clen,
                record: record.sealed)
            copied = true
        }
        do {
            try Syscall.pwrite(fd, t.cipher, clen, BlockLayout.cipherOffset(block: first))
            try commitRecord(i, fd: fd, record)
        } catch {
            // The old bytes are gone, and the copy is the only way back to a file a record
            // names: it is kept (never reused or emptied) for the next mount, which finishes
            // the write, and its record is the version this session records. The file is
            // refused until then (a later change would commit a record naming neither).
            i.unfinished.store(true, ordering: .releasing)
            if copied {
                do {
                    try t.keepJournalSlot()
                    versions.note(VersionKey(ObjectID(fileID), .record), record.version)
                    let path = ancestry(i)?.map(\.id) ?? [i.id]
                    keptCopyPaths.withLock { $0.formUnion(path) }
                } catch {
                    logger.error(
                        "could not keep the journal copy of a failed overwrite", metadata: ["why": "\(error)"])
                }
            }
            logger.error(
                "an overwrite failed half way: the file is refused (EIO) until the next mount finishes it from the journal",
                metadata: ["fuse.ino": "\(i.id)", "why": "\(error)"])
            throw error
        }
    }

    /// Runs `body`, a change of `i`'s blocks and record; if it fails before the record
    /// follows, the bytes its overwrite replaced are put back and the tags are read again, so
    /// the file stays what its record names (a failed write, an EFBIG truncate, ENOSPC half way).
    /// (An overwrite with a write-ahead copy keeps no old bytes: `overwriteBlocks` leaves its
    /// failure to the next mount.)
    func rollingBack<R>(_ i: Inode, _ t: ThreadState, _ body: () throws -> R) throws -> R {
        do {
            return try body()
        } catch {
            i.tags.withLock { $0 = nil }
            if let kept = t.kept, let undo = t.undo {
                t.kept = nil
                if (try? Syscall.pwrite(kept.fd, undo.scratch, kept.count, kept.offset)) != nil {
                    try? undo.journal.done(slot: undo.slot)
                } else {
                    logger.error(
                        "a failed write could not be undone: the next mount puts the old blocks back",
                        metadata: ["fuse.ino": "\(i.id)"])
                }
            }
            throw error
        }
    }

    /// Records the tags of the blocks just sealed into `t.cipher` (`count` plaintext bytes
    /// from block `first`).
    func noteTags(_ t: ThreadState, first: Int64, count: Int, tags: BlockTags) throws {
        let bs = Int(Self.bs), cbs = Int(Self.cbs), ov = Int(BlockLayout.overhead)
        let blocks = (count + bs - 1) / bs
        try withUnsafeTemporaryAllocation(of: BlockTag.self, capacity: blocks) { out in
            for k in 0..<blocks {
                let length = min(bs, count - k * bs) + ov
                out[k] = BlockTags.tag(ofSealed: t.cipher + k * cbs, length: length)
            }
            try tags.set(first: first, tags: out.baseAddress!, count: blocks, crypto: t.crypto)
        }
    }

    /// The backing path of `i` from the root of BACKING, by its first name (nil: it has none);
    /// made again only for another inode than `t`'s last, or after the inode table changed
    /// (a stream of overwrites asks for one file's path again and again).
    func backingPath(_ i: Inode, _ t: ThreadState) -> String? {
        inodes.read { table -> String? in
            if let last = t.lastPath, last.inode == i.id, last.generation == table.generation { return last.path }
            guard let chain = ancestry(i, in: table) else { return nil }
            let path = chain.reversed().map(\.name).joined(separator: "/")
            t.lastPath = (i.id, table.generation, path)
            return path
        }
    }

    /// `i` and the directories above it, up to (not including) the root, each with the first
    /// name it has in the next: nil when one has no name (or the chain is implausibly deep).
    func ancestry(_ i: Inode) -> [(id: UInt64, name: String)]? { inodes.read { ancestry(i, in: $0) } }

    /// `ancestry`, the table's lock held.
    private func ancestry(_ i: Inode, in _: InodeTable) -> [(id: UInt64, name: String)]? {
        var chain: [(id: UInt64, name: String)] = []
        var current = i
        while current !== root {
            guard let link = current.links.first, chain.count < 4096 else { return nil }
            chain.append((current.id, link.name))
            current = link.parent
        }
        return chain
    }

    /// Seals into `t.cipher`; requests of 256 KiB and more are split with the crypto helper
    /// (second half on the helper thread, first half here). Returns the ciphertext length.
    func seal(_ t: ThreadState, fileID: [UInt8], first: Int64, plaintext src: UnsafeRawPointer, count: Int) throws
        -> Int
    {
        let bs = Int(Self.bs), cbs = Int(Self.cbs)
        let blocks = (count + bs - 1) / bs
        if count >= 256 * 1024, let helper {
            let half = blocks / 2
            let tailCount = count - half * bs
            let cipher = t.cipher
            var tailResult: Result<Int, any Error> = .success(0)
            var headResult: Result<Int, any Error> = .success(0)
            let ran = helper.run(
                background: {
                    tailResult = Result {
                        try fileID.withUnsafeBytes { id in
                            try self.worker().crypto.sealBlocks(
                                fileID: id, first: first + Int64(half), plaintext: src + half * bs, count: tailCount,
                                output: cipher + half * cbs)
                        }
                    }
                },
                foreground: {
                    headResult = Result {
                        try fileID.withUnsafeBytes { id in
                            try t.crypto.sealBlocks(
                                fileID: id, first: first, plaintext: src, count: half * bs, output: cipher)
                        }
                    }
                })
            if ran { return try headResult.get() + tailResult.get() }
        }
        return try fileID.withUnsafeBytes {
            try t.crypto.sealBlocks(fileID: $0, first: first, plaintext: src, count: count, output: t.cipher)
        }
    }

    /// Grows a partial last block (of a file of `size` bytes) to `newLength` plaintext bytes,
    /// the new bytes zero. Call with the write lock held.
    func growLastBlock(
        _ t: ThreadState, fd: Int32, header h: FileHeader, newLength: Int64, of inode: Inode, tags: BlockTags
    ) throws {
        let size = h.record.size, fileID = h.fileID
        let index = size / Self.bs
        let old = size % Self.bs
        guard old != 0, newLength > old else { return }
        try loadBlock(t, fd: fd, fileID: fileID, index: index, length: old, into: t.plain, tags: tags)
        memset(t.plain + Int(old), 0, Int(newLength - old))
        try storeBlocks(t, fd: fd, fileID: fileID, first: index, count: Int(newLength), of: inode, tags: tags)
    }

    // MARK: Read

    /// Reads up to `size` bytes at `offset`; returns a pointer into this thread's buffer.
    ///
    /// The reply holds only bytes that this request authenticated for this file at these block
    /// indexes (or zeros of a hole): the ciphertext wanted is fixed from one size before
    /// reading, a backing file that is shorter than that by the time it is read (the host cut
    /// it) fails with EIO, and every block must decrypt to exactly the length the layout gives
    /// it. Nothing left in the thread's buffers by an earlier request can reach the reply.
    func read(_ ino: UInt64, fd: Int32, size: Int, offset: Int64) throws -> (UnsafeRawPointer, Int) {
        let i = try inode(ino)
        let t = try worker()
        return try i.content.withReadLock {
            let h = try header(i)
            let plain = h.record.size
            guard offset < plain, size > 0 else { return (UnsafeRawPointer(t.plain), 0) }
            let tags = try blockTags(i, fd: fd, t)
            let n = Int(min(Int64(min(size, ThreadState.maxRequest)), plain - offset))
            let blocks = BlockLayout.blocks(offset: offset, length: Int64(n))
            let cstart = BlockLayout.cipherOffset(block: blocks.lowerBound)
            let cend =
                BlockLayout.cipherOffset(block: blocks.upperBound)
                + BlockLayout.plaintextLength(block: blocks.upperBound, fileSize: plain) + BlockLayout.overhead
            let want = Int(cend - cstart)
            let got = try Syscall.pread(fd, t.cipher, want, cstart)
            guard got == want else {
                logger.error(
                    "backing file shorter than its size a moment before: refusing the read",
                    metadata: [
                        "fuse.ino": "\(ino)", "backing.ino": "\(i.key.ino)", "wanted": "\(want)", "got": "\(got)",
                    ])
                throw FormatError.corruptLength(cstart + Int64(got))
            }
            let id = h.fileID
            var cipherAt = 0, produced = 0
            try id.withUnsafeBytes { idp in
                for b in blocks {
                    let length = Int(BlockLayout.plaintextLength(block: b, fileSize: plain))
                    let clen = length + Int(BlockLayout.overhead)
                    do {
                        try openChecked(
                            t, fileID: idp, index: b, cipher: t.cipher + cipherAt, length: clen,
                            into: t.plain + produced, tags: tags)
                    } catch {
                        logger.error(
                            "block is not the version the file's record names, or fails authentication: refusing to return it",
                            metadata: [
                                "fuse.ino": "\(ino)", "backing.ino": "\(i.key.ino)", "block": "\(b)",
                            ])
                        throw error
                    }
                    cipherAt += clen
                    produced += length
                }
            }
            let start = Int(offset - blocks.lowerBound * Self.bs)
            guard start + n <= produced else { throw FormatError.corruptLength(Int64(produced)) }
            return (UnsafeRawPointer(t.plain + start), n)
        }
    }

    // MARK: Write

    func write(_ ino: UInt64, fd: Int32, data: UnsafeRawPointer, size: Int, offset: Int64, caller: Caller) throws -> Int
    {
        let i = try inode(ino)
        guard size > 0 else { return 0 }
        guard offset >= 0, offset <= BlockLayout.maxPlaintextSize - Int64(size) else { throw FormatError.fileTooLarge }
        let t = try worker()
        try i.content.withWriteLock {
            try dropPrivilegeBits(i, fd: fd, caller: caller)
            var done = 0
            while done < size {
                let chunk = min(size - done, ThreadState.maxRequest)
                try rollingBack(i, t) {
                    try writeChunk(i, t, fd: fd, data: data + done, size: chunk, offset: offset + Int64(done))
                }
                done += chunk
            }
        }
        return size
    }

    private func writeChunk(_ i: Inode, _ t: ThreadState, fd: Int32, data: UnsafeRawPointer, size: Int, offset: Int64)
        throws
    {
        let h = try header(i)
        let oldSize = h.record.size, id = h.fileID
        let tags = try blockTags(i, fd: fd, t)
        let end = offset + Int64(size)
        if end > oldSize {
            // Ciphertext past the last block's place (from a write a crash cut off before its
            // record, or put there by the host) must not show through as the new range's holes:
            // drop it. (The last block's place is kept: a grown last block is read from it.)
            let keep = BlockLayout.ciphertextSize(plain: (oldSize + Self.bs - 1) / Self.bs * Self.bs)
            if try cipherSize(fd) > keep { try Syscall.ftruncate(fd, keep) }
        }
        let first = offset / Self.bs, last = (end - 1) / Self.bs
        // A partial last block before the written range becomes a full block of its data and zeros.
        if oldSize % Self.bs != 0 && first > oldSize / Self.bs {
            try growLastBlock(t, fd: fd, header: h, newLength: Self.bs, of: i, tags: tags)
        }
        // Blocks between the old end and this write are never written: holes, which the
        // record must allow from now on.
        let makesHoles = first * Self.bs > (oldSize + Self.bs - 1) / Self.bs * Self.bs
        let newSize = max(oldSize, end)
        let regionStart = first * Self.bs
        let regionEnd = min(newSize, (last + 1) * Self.bs)
        // Head block: keep the bytes before `offset` (and after `end` if it is also the last).
        let headOld = BlockLayout.plaintextLength(block: first, fileSize: oldSize)
        let headSkip = offset - regionStart
        var loadedAny = false
        if headOld > 0 && (headSkip > 0 || end < regionStart + headOld) {
            try loadBlock(t, fd: fd, fileID: id, index: first, length: headOld, into: t.plain, tags: tags)
            loadedAny = true
        }
        if headSkip > headOld { memset(t.plain + Int(headOld), 0, Int(headSkip - headOld)) }
        // Tail block: keep the bytes after `end`.
        if last != first {
            let tailOld = BlockLayout.plaintextLength(block: last, fileSize: oldSize)
            if end < last * Self.bs + tailOld {
                try loadBlock(
                    t, fd: fd, fileID: id, index: last, length: tailOld, into: t.plain + Int((last - first) * Self.bs),
                    tags: tags)
                loadedAny = true
            }
        }
        let source: UnsafeRawPointer, count: Int
        if headSkip == 0 && regionEnd - regionStart == Int64(size) && !loadedAny {
            (source, count) = (data, size)  // nothing to merge: sealed straight from the request
        } else {
            (t.plain + Int(headSkip)).copyMemory(from: data, byteCount: size)
            (source, count) = (UnsafeRawPointer(t.plain), Int(regionEnd - regionStart))
        }
        if end <= oldSize {
            try overwriteBlocks(i, t, fd: fd, fileID: id, first: first, from: source, count: count, tags: tags)
            return
        }
        try storeBlocks(t, fd: fd, fileID: id, first: first, from: source, count: count, of: i, tags: tags)
        // The data first, then the record that makes it part of the file (and the new mtime
        // and ctime).
        try updateRecord(i, fd: fd) { r in
            r.size = newSize
            r.mtime = r.ctime
            if makesHoles { r.sparse = true }
        }
    }

    /// With HANDLE_KILLPRIV_V2 the kernel leaves it to us: a write or truncate by a caller
    /// without CAP_FSETID (taken as: not root) clears setuid, and setgid if group-executable,
    /// as the kernel's should_remove_suid() does. Call with the content write lock held.
    func dropPrivilegeBits(_ i: Inode, fd: Int32, caller: Caller) throws {
        guard killPrivV2, caller.uid != 0 else { return }
        let mode = try header(i).record.mode
        let kept = Self.withoutPrivilegeBits(mode)
        if kept != mode {
            try updateRecord(i, fd: fd) { $0.mode = kept }
        }
    }

    /// `mode` without setuid, and without setgid if group-executable.
    static func withoutPrivilegeBits(_ mode: mode_t) -> mode_t {
        var kill: mode_t = S_ISUID
        if mode & S_IXGRP != 0 { kill |= S_ISGID }
        return mode & ~kill
    }

    // MARK: Truncate

    /// Sets the plaintext size. Growing leaves holes (nothing is written past the old last
    /// block), so a huge truncate is instant or fails with the backing filesystem's EFBIG.
    func truncate(_ i: Inode, fd: Int32, to newSize: Int64) throws {
        guard newSize <= BlockLayout.maxPlaintextSize else { throw FormatError.fileTooLarge }
        let t = try worker()
        try i.content.withWriteLock {
            try rollingBack(i, t) { try truncateLocked(i, t, fd: fd, to: newSize) }
        }
    }

    private func truncateLocked(_ i: Inode, _ t: ThreadState, fd: Int32, to newSize: Int64) throws {
        let h = try header(i)
        let oldSize = h.record.size, id = h.fileID
        if newSize == oldSize { return }
        // Emptied: no block is left whose tag would be needed (so a file whose blocks fail
        // their check can still be overwritten with O_TRUNC).
        if newSize == 0 { i.tags.withLock { $0 = BlockTags() } }
        let tags = try blockTags(i, fd: fd, t)
        if newSize > oldSize {
            // Drop ciphertext past the last block's place first (see writeChunk), then grow: holes.
            let keep = BlockLayout.ciphertextSize(plain: (oldSize + Self.bs - 1) / Self.bs * Self.bs)
            if try cipherSize(fd) > keep { try Syscall.ftruncate(fd, keep) }
            let lastOld = oldSize / Self.bs
            let grownLength = newSize / Self.bs > lastOld ? Self.bs : newSize % Self.bs
            try growLastBlock(t, fd: fd, header: h, newLength: grownLength, of: i, tags: tags)
            try Syscall.ftruncate(fd, BlockLayout.ciphertextSize(plain: newSize))
            // Past the old last block, nothing is written: holes.
            let makesHoles = newSize > (oldSize + Self.bs - 1) / Self.bs * Self.bs
            try updateRecord(i, fd: fd) { r in
                r.size = newSize
                r.mtime = r.ctime
                if makesHoles { r.sparse = true }
            }
            return
        }
        if newSize % Self.bs != 0 {
            let index = newSize / Self.bs
            try loadBlock(
                t, fd: fd, fileID: id, index: index,
                length: BlockLayout.plaintextLength(block: index, fileSize: oldSize), into: t.plain, tags: tags)
            try storeBlocks(
                t, fd: fd, fileID: id, first: index, count: Int(newSize % Self.bs), of: i, tags: tags)
        }
        try tags.drop(from: (newSize + Self.bs - 1) / Self.bs, crypto: t.crypto)
        try updateRecord(i, fd: fd) { r in
            r.size = newSize
            r.mtime = r.ctime
            if newSize == 0 { r.sparse = false }  // nothing left that could be a hole
        }
        try Syscall.ftruncate(fd, BlockLayout.ciphertextSize(plain: newSize))
    }

    /// `fallocate(2)`: mode 0 grows the file like truncate; KEEP_SIZE is accepted and does
    /// nothing (space for ciphertext is not reserved); other modes are not supported.
    func fallocate(_ ino: UInt64, fd: Int32, mode: Int32, offset: Int64, length: Int64) throws {
        let i = try inode(ino)
        guard offset >= 0, length > 0, offset <= BlockLayout.maxPlaintextSize - length else {
            throw Errno.invalidArgument
        }
        if mode == LinuxConstants.fallocKeepSize { return }
        guard mode == 0 else { throw Errno.notSupported }
        let t = try worker()
        // Allocation means the bytes exist: sealed zeros, not holes (so the file stays one in
        // which a zeroed block is an error).
        try i.content.withWriteLock {
            var at = try header(i).record.size
            let end = offset + length
            while at < end {
                let n = Int(min(Int64(ThreadState.maxRequest), end - at))
                try rollingBack(i, t) {
                    try writeChunk(i, t, fd: fd, data: UnsafeRawPointer(Self.zeros), size: n, offset: at)
                }
                at += Int64(n)
            }
        }
    }

    /// `ThreadState.maxRequest` zero bytes (what fallocate writes).
    nonisolated(unsafe) static let zeros: UnsafeMutableRawPointer = {
        let p = UnsafeMutableRawPointer.allocate(byteCount: ThreadState.maxRequest, alignment: 4096)
        p.initializeMemory(as: UInt8.self, repeating: 0, count: ThreadState.maxRequest)
        return p
    }()
}
