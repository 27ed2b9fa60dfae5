import ElasticSystem

extension CryptoWorker {
    /// The recorded part of a file's last block as a crash can leave it: already grown by a
    /// write whose record never followed (a block is sealed whole, so it no longer opens at the
    /// recorded `length`). If the backing file `fd` (of `backingSize` bytes) holds a longer
    /// block at that place, up to a full one, that opens as block `index` of `fileID`, its
    /// first `length` bytes are returned: the file's, as far as the record goes. The host
    /// gains nothing it could not already do by putting back an older block. Nil otherwise.
    /// Used by reads, writes, fsck and rekey alike.
    public func recordedPartOfGrownBlock(
        fd: Int32, fileID: [UInt8], index: Int64, length: Int, backingSize: Int64,
        headerSize: Int64 = BlockLayout.headerSize
    ) -> [UInt8]? {
        let start = BlockLayout.cipherOffset(block: index, headerSize: headerSize)
        let available = Int(min(BlockLayout.cipherBlockSize, backingSize - start))
        guard length < Int(BlockLayout.blockSize), available > length + Int(BlockLayout.overhead) else { return nil }
        var cipher = [UInt8](repeating: 0, count: available)
        var plain = [UInt8](repeating: 0, count: Int(BlockLayout.blockSize))
        guard
            (try? cipher.withUnsafeMutableBytes { try Syscall.pread(fd, $0.baseAddress!, available, start) })
                == available,
            (try? fileID.withUnsafeBytes { id in
                try cipher.withUnsafeBytes { c in
                    try plain.withUnsafeMutableBytes { p in
                        try openBlock(
                            fileID: id, index: index, cipher: c.baseAddress!, length: available, output: p.baseAddress!,
                            holes: false)
                    }
                }
            }) != nil
        else { return nil }
        return Array(plain[0..<length])
    }
}
