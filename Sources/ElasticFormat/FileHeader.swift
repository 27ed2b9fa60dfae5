import ElasticCrypto

/// The header at the start of every backing file of a regular file or a special file (v2,
/// `size` bytes): magic "ELFB" (4) ‖ version u16 BE = 2 (2) ‖ reserved u16 = 0 (2) ‖ file ID
/// (16 random bytes) ‖ the object's sealed `ObjectRecord`, bound to the file ID. The blocks
/// that follow are bound to the same ID. Every such backing file has one, even when empty.
public struct FileHeader: Equatable, Sendable {
    public static let size = 24 + ObjectRecord.sealedSize
    /// Where the sealed record starts (it is rewritten in place when the record changes).
    public static let recordOffset: Int64 = 24
    public static let magic: [UInt8] = Array("ELFB".utf8)
    public static let currentVersion: UInt16 = BlockFormat.current.version
    /// The v1 header (24 bytes, no record), read only by `elastic migrate`.
    public static let v1Size = 24

    public var fileID: [UInt8]
    public var record: ObjectRecord

    public init(fileID: [UInt8], record: ObjectRecord) {
        precondition(fileID.count == 16)
        self.fileID = fileID
        self.record = record
    }

    /// A header with a fresh random file ID.
    public static func new(_ record: ObjectRecord) throws -> FileHeader {
        FileHeader(fileID: try Random.bytes(16), record: record)
    }

    var prefix: [UInt8] { Self.magic + [UInt8(Self.currentVersion >> 8), UInt8(Self.currentVersion & 0xff), 0, 0] }

    /// The sealed record alone (`ObjectRecord.sealedSize` bytes at `recordOffset`).
    public func sealedRecord(with crypto: CryptoWorker) throws -> [UInt8] {
        try record.seal(objectID: fileID, with: crypto)
    }

    public func encode(with crypto: CryptoWorker) throws -> [UInt8] {
        prefix + fileID + (try sealedRecord(with: crypto))
    }

    /// Parses and authenticates a header; a v1 header names `elastic migrate`.
    public init(decoding bytes: [UInt8], with crypto: CryptoWorker) throws {
        guard bytes.count >= 8, Array(bytes[0..<4]) == Self.magic else {
            throw FormatError.corruptHeader("bad magic or short header")
        }
        let v = UInt16(bytes[4]) << 8 | UInt16(bytes[5])
        guard v == Self.currentVersion else {
            _ = try BlockFormat.forVersion(v)
            throw FormatError.corruptHeader("a version \(v) file in a version \(Self.currentVersion) store")
        }
        guard bytes.count == Self.size, bytes[6] == 0, bytes[7] == 0 else {
            throw FormatError.corruptHeader("header length or reserved bytes")
        }
        let id = Array(bytes[8..<24])
        let record = try ObjectRecord.open(Array(bytes[24...]), objectID: id, with: crypto)
        // A directory's record (from an elastic.diriv) never heads a file.
        guard record.kind != .directory else {
            throw FormatError.corruptHeader("a directory's record in a file header")
        }
        self.init(fileID: id, record: record)
    }

    /// The file ID of a v1 header (magic ‖ version 1 ‖ 0 ‖ file ID), for `elastic migrate`.
    public static func v1FileID(_ bytes: [UInt8]) throws -> [UInt8] {
        guard bytes.count == v1Size, Array(bytes[0..<4]) == magic, bytes[4] == 0, bytes[5] == 1, bytes[6] == 0,
            bytes[7] == 0
        else {
            throw FormatError.corruptHeader("not a version 1 file header")
        }
        return Array(bytes[8..<24])
    }
}
