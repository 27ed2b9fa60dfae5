import ElasticCrypto

/// The MSG_KEY_REQ parameters an SNP slot was sealed with, recorded so the same key is derived
/// again at mount; plus what the VM looked like at sealing (launch measurement, policy, and for a
/// VCEK root the CHIP_ID; none of it secret: the host knows it) so a refusal can name what
/// changed.
public struct SNPSealParameters: Equatable, Sendable {
    /// Encoded layout: root u8 (dword 0 of MSG_KEY_REQ: ROOT_KEY_SELECT and KEY_SEL, see
    /// `SNPRootKey`) ‖ field select u64 LE ‖ VMPL u32 BE ‖ guest SVN u32 BE ‖ TCB u64 LE ‖
    /// policy u64 LE ‖ measurement (48) [‖ CHIP_ID (64)]. 81 bytes for slots written before the
    /// chip was recorded, 145 with it. The firmware's own fields keep its little-endian order;
    /// the two counters were written big-endian like the rest of the configuration, and stay so.
    public static let encodedSize = 1 + 8 + 4 + 4 + 8 + 8 + 48
    public static let encodedSizeWithChip = encodedSize + 64
    public var rootKey: SNPRootKey
    public var fields: UInt64
    public var vmpl: UInt32
    public var guestSVN: UInt32
    public var tcbVersion: UInt64
    public var policy: UInt64
    public var measurement: [UInt8]
    /// The CHIP_ID the slot was sealed on (VCEK roots; all zero when the host masked it), or nil.
    public var chipID: [UInt8]?

    public init(
        rootKey: SNPRootKey, fields: UInt64, vmpl: UInt32, guestSVN: UInt32, tcbVersion: UInt64, policy: UInt64,
        measurement: [UInt8], chipID: [UInt8]? = nil
    ) {
        self.rootKey = rootKey
        self.fields = fields
        self.vmpl = vmpl
        self.guestSVN = guestSVN
        self.tcbVersion = tcbVersion
        self.policy = policy
        self.measurement = measurement
        self.chipID = chipID
    }

    /// Decodes a slot's parameters (hostile input: exact size, known root, defined fields).
    public init(encoded b: [UInt8]) throws {
        guard b.count == Self.encodedSize || b.count == Self.encodedSizeWithChip else {
            throw SEVError.invalidRequest(
                "SNP slot parameters are \(b.count) bytes, not \(Self.encodedSize) or \(Self.encodedSizeWithChip)")
        }
        guard let root = SNPRootKey(rawValue: UInt32(b[0])) else {
            throw SEVError.invalidRequest(
                "SNP slot root key selector \(b[0]) is not VCEK, VLEK, VMRK or the firmware default")
        }
        rootKey = root
        fields = Self.littleEndian(b[1..<9])
        vmpl = UInt32(truncatingIfNeeded: Self.bigEndian(b[9..<13]))
        guestSVN = UInt32(truncatingIfNeeded: Self.bigEndian(b[13..<17]))
        tcbVersion = Self.littleEndian(b[17..<25])
        policy = Self.littleEndian(b[25..<33])
        measurement = Array(b[33..<81])
        chipID = b.count == Self.encodedSizeWithChip ? Array(b[81..<145]) : nil
        guard GuestFieldSelect(rawValue: fields).isSubset(of: .defined) else {
            throw SEVError.invalidRequest("SNP slot selects undefined guest fields")
        }
        guard vmpl <= 3 else { throw SEVError.invalidRequest("SNP slot VMPL \(vmpl) is above 3") }
    }

    public var encoded: [UInt8] {
        [UInt8(rootKey.rawValue)] + Self.littleEndianBytes(fields) + Self.bigEndianBytes(UInt64(vmpl), count: 4)
            + Self.bigEndianBytes(UInt64(guestSVN), count: 4) + Self.littleEndianBytes(tcbVersion)
            + Self.littleEndianBytes(policy) + measurement + (chipID ?? [])
    }

    /// One line for `elastic slot list`.
    public var summary: String {
        let selected = GuestFieldSelect(rawValue: fields)
        let names = [
            (GuestFieldSelect.measurement, "measurement"), (.guestPolicy, "policy"), (.tcbVersion, "tcb"),
            (.imageID, "image-id"), (.familyID, "family-id"), (.guestSVN, "guest-svn"),
        ]
        .filter { selected.contains($0.0) }.map(\.1).joined(separator: "+")
        var s = "root=\(rootKey.name) fields=\(names) vmpl=\(vmpl) tcb=\(TCBVersion(raw: tcbVersion))"
        if let chipID { s += " chip=" + Self.chipName(chipID) }
        return s
    }

    /// A CHIP_ID as users compare them: its first 8 bytes in hex ("masked" when all zero).
    public static func chipName(_ id: [UInt8]) -> String {
        id.allSatisfy { $0 == 0 } ? "masked" : Hex.encode(id.prefix(8)) + "…"
    }

    static func littleEndian(_ b: ArraySlice<UInt8>) -> UInt64 { b.reversed().reduce(0) { $0 << 8 | UInt64($1) } }
    static func bigEndian(_ b: ArraySlice<UInt8>) -> UInt64 { b.reduce(0) { $0 << 8 | UInt64($1) } }
    static func littleEndianBytes(_ v: UInt64) -> [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * UInt64($0))) }
    }
    static func bigEndianBytes(_ v: UInt64, count: Int) -> [UInt8] {
        (0..<count).reversed().map { UInt8(truncatingIfNeeded: v >> (8 * UInt64($0))) }
    }
}
