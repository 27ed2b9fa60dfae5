import ElasticCrypto

/// The MSG_KEY_REQ parameters an SNP slot was sealed with, recorded so the same key is derived
/// again at mount; plus the launch measurement and policy seen at sealing (not secret: the host
/// knows them) so a refusal can name what changed.
public struct SNPSealParameters: Equatable, Sendable {
    /// Encoded layout (81 bytes): root key u8 ‖ field select u64 LE ‖ VMPL u32 BE ‖ guest SVN
    /// u32 BE ‖ TCB u64 LE ‖ policy u64 LE ‖ measurement (48). The firmware's own fields keep
    /// its little-endian order; the two counters were written big-endian like the rest of the
    /// configuration, and stay so for existing stores.
    public static let encodedSize = 1 + 8 + 4 + 4 + 8 + 8 + 48
    public var rootKey: UInt8
    public var fields: UInt64
    public var vmpl: UInt32
    public var guestSVN: UInt32
    public var tcbVersion: UInt64
    public var policy: UInt64
    public var measurement: [UInt8]

    public init(
        rootKey: UInt8, fields: UInt64, vmpl: UInt32, guestSVN: UInt32, tcbVersion: UInt64, policy: UInt64,
        measurement: [UInt8]
    ) {
        self.rootKey = rootKey
        self.fields = fields
        self.vmpl = vmpl
        self.guestSVN = guestSVN
        self.tcbVersion = tcbVersion
        self.policy = policy
        self.measurement = measurement
    }

    /// Decodes a slot's parameters (hostile input: exact size, known root key, defined fields).
    public init(encoded b: [UInt8]) throws {
        guard b.count == Self.encodedSize else {
            throw SEVError.invalidRequest("SNP slot parameters are \(b.count) bytes, not \(Self.encodedSize)")
        }
        rootKey = b[0]
        fields = Self.littleEndian(b[1..<9])
        vmpl = UInt32(truncatingIfNeeded: Self.bigEndian(b[9..<13]))
        guestSVN = UInt32(truncatingIfNeeded: Self.bigEndian(b[13..<17]))
        tcbVersion = Self.littleEndian(b[17..<25])
        policy = Self.littleEndian(b[25..<33])
        measurement = Array(b[33..<81])
        guard rootKey <= 1 else {
            throw SEVError.invalidRequest("SNP slot root key \(rootKey) is not VCEK (0) or VMRK (1)")
        }
        guard GuestFieldSelect(rawValue: fields).isSubset(of: .defined) else {
            throw SEVError.invalidRequest("SNP slot selects undefined guest fields")
        }
        guard vmpl <= 3 else { throw SEVError.invalidRequest("SNP slot VMPL \(vmpl) is above 3") }
    }

    public var encoded: [UInt8] {
        [rootKey] + Self.littleEndianBytes(fields) + Self.bigEndianBytes(UInt64(vmpl), count: 4)
            + Self.bigEndianBytes(UInt64(guestSVN), count: 4)
            + Self.littleEndianBytes(tcbVersion) + Self.littleEndianBytes(policy) + measurement
    }

    /// One line for `elastic slot list`.
    public var summary: String {
        let selected = GuestFieldSelect(rawValue: fields)
        let names = [
            (GuestFieldSelect.measurement, "measurement"), (.guestPolicy, "policy"), (.tcbVersion, "tcb"),
            (.imageID, "image-id"),
            (.familyID, "family-id"), (.guestSVN, "guest-svn"),
        ]
        .filter { selected.contains($0.0) }.map(\.1).joined(separator: "+")
        return "root=\(rootKey == 0 ? "vcek" : "vmrk") fields=\(names) vmpl=\(vmpl) tcb=\(TCBVersion(raw: tcbVersion))"
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
