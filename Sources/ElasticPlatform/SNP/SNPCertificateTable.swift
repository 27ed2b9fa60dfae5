import ElasticCrypto

/// The certificate table the host returns with an extended report (SNP_GET_EXT_REPORT, or
/// configfs-tsm's `auxblob`): 24-byte entries (GUID, offset u32 LE, length u32 LE) ended by an
/// all-zero entry, offsets relative to the table (docs/platform.md §1.8). Hostile input: every
/// entry must lie inside the buffer.
public struct SNPCertificateTable: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        /// The GUID in its canonical text form.
        public let guid: String
        public let der: [UInt8]
        /// "vcek", "vlek", "ask", "ark", or nil for a GUID ELASTIC does not name.
        public var name: String? { SNPCertificateTable.names[guid] }
    }

    public static let names = [
        "63da758d-e664-4564-adc5-f4b93be8accd": "vcek", "a8074bc2-a25a-483e-aae6-39c045a0b8a1": "vlek",
        "4ab7b379-bbac-4fe4-a02f-05aef327c782": "ask", "c0b406a4-a803-4952-9743-3fb6014cd0ae": "ark",
    ]

    public let entries: [Entry]
    public init(entries: [Entry]) { self.entries = entries }

    public func certificate(_ name: String) -> [UInt8]? { entries.first { $0.name == name }?.der }

    /// Parses a table; an empty or all-zero buffer is a table without certificates.
    public init(parsing b: [UInt8]) throws {
        var out: [Entry] = []
        var at = 0
        while true {
            guard at + 24 <= b.count else {
                if b[at...].allSatisfy({ $0 == 0 }) { break }
                throw SEVError.invalidRequest("certificate table is not terminated")
            }
            let entry = b[at..<(at + 24)]
            if entry.allSatisfy({ $0 == 0 }) { break }
            let offset = Int(Self.littleEndian32(entry, 16)), length = Int(Self.littleEndian32(entry, 20))
            guard length > 0, offset >= 0, offset <= b.count, length <= b.count - offset else {
                throw SEVError.invalidRequest("certificate table entry points outside the table")
            }
            out.append(Entry(guid: Self.guidString(Array(entry.prefix(16))), der: Array(b[offset..<(offset + length)])))
            at += 24
            guard out.count <= 64 else { throw SEVError.invalidRequest("certificate table has too many entries") }
        }
        entries = out
    }

    /// The table in its wire form (for the simulator).
    public var encoded: [UInt8] {
        var header: [UInt8] = []
        var data: [UInt8] = []
        let start = 24 * (entries.count + 1)
        for e in entries {
            header +=
                Self.guidBytes(e.guid) + Self.littleEndian32Bytes(UInt32(start + data.count))
                + Self.littleEndian32Bytes(UInt32(e.der.count))
            data += e.der
        }
        return header + [UInt8](repeating: 0, count: 24) + data
    }

    static func littleEndian32(_ b: ArraySlice<UInt8>, _ off: Int) -> UInt32 {
        let s = b.startIndex + off
        return UInt32(b[s]) | UInt32(b[s + 1]) << 8 | UInt32(b[s + 2]) << 16 | UInt32(b[s + 3]) << 24
    }
    static func littleEndian32Bytes(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }

    /// GUIDs are stored as in the GHCB specification: the first three fields little-endian.
    static func guidString(_ b: [UInt8]) -> String {
        let fields: [[UInt8]] = [
            Array(b[0..<4].reversed()), Array(b[4..<6].reversed()), Array(b[6..<8].reversed()), Array(b[8..<10]),
            Array(b[10..<16]),
        ]
        return fields.map { Hex.encode($0) }.joined(separator: "-")
    }

    static func guidBytes(_ s: String) -> [UInt8] {
        let b = Hex.decode(s.replacingOccurrences(of: "-", with: "")) ?? [UInt8](repeating: 0, count: 16)
        return Array(b[0..<4].reversed()) + Array(b[4..<6].reversed()) + Array(b[6..<8].reversed()) + Array(b[8..<16])
    }
}
