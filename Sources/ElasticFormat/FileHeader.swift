import ElasticCrypto

/// The 24-byte header at the start of every non-empty backing file:
/// magic "ELFB" (4) ‖ version u16 BE (2) ‖ reserved u16 = 0 (2) ‖ file ID (16 random bytes).
/// The version names the file's `BlockFormat`.
public struct FileHeader: Equatable, Sendable {
    public static let size = 24
    public static let magic: [UInt8] = Array("ELFB".utf8)
    public static let currentVersion: UInt16 = BlockFormat.current.version

    public var version: UInt16
    public var fileID: [UInt8]

    public init(version: UInt16 = FileHeader.currentVersion, fileID: [UInt8]) {
        precondition(fileID.count == 16)
        self.version = version
        self.fileID = fileID
    }

    /// A header with a fresh random file ID.
    public static func random() throws -> FileHeader { FileHeader(fileID: try Random.bytes(16)) }

    public var encoded: [UInt8] {
        Self.magic + [UInt8(version >> 8), UInt8(version & 0xff), 0, 0] + fileID
    }

    public init(decoding bytes: [UInt8]) throws {
        guard bytes.count == Self.size else { throw FormatError.corruptHeader("length \(bytes.count)") }
        guard Array(bytes[0..<4]) == Self.magic else { throw FormatError.corruptHeader("bad magic") }
        let v = UInt16(bytes[4]) << 8 | UInt16(bytes[5])
        _ = try BlockFormat.forVersion(v)
        guard bytes[6] == 0, bytes[7] == 0 else { throw FormatError.corruptHeader("reserved bytes set") }
        version = v
        fileID = Array(bytes[8..<24])
    }

    /// The block format this file is written in.
    public var format: BlockFormat { get throws { try BlockFormat.forVersion(version) } }
}
