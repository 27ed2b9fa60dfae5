import ElasticSystem

extension BlockLayout {
    /// The first block at or after `index` that holds data in the backing file `fd`, skipping
    /// holes without reading them (a sparse file of 900 TB reads in a moment); nil when only
    /// holes follow.
    public static func nextDataBlock(_ fd: Int32, from index: Int64, headerSize: Int64 = headerSize) throws
        -> Int64?
    {
        guard let offset = try Syscall.nextData(fd, from: cipherOffset(block: index, headerSize: headerSize)) else {
            return nil
        }
        return max(index, (offset - headerSize) / cipherBlockSize)
    }
}
