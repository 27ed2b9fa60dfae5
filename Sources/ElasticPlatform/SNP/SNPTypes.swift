import CElasticSEV

/// GUEST_FIELD_SELECT of MSG_KEY_REQ: which launch fields are mixed into a derived key
/// (docs/platform.md §2.2). VMPL, HOST_DATA and the ID/author key digest are always mixed.
public struct GuestFieldSelect: OptionSet, Sendable, Hashable {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public static let guestPolicy = GuestFieldSelect(rawValue: 1 << 0)
    public static let imageID = GuestFieldSelect(rawValue: 1 << 1)
    public static let familyID = GuestFieldSelect(rawValue: 1 << 2)
    public static let measurement = GuestFieldSelect(rawValue: 1 << 3)
    public static let guestSVN = GuestFieldSelect(rawValue: 1 << 4)
    public static let tcbVersion = GuestFieldSelect(rawValue: 1 << 5)
    /// Bits the firmware accepts (Genoa 1.55: 0–5).
    public static let defined: GuestFieldSelect = [
        .guestPolicy, .imageID, .familyID, .measurement, .guestSVN, .tcbVersion,
    ]
}

/// The root secret a derived key comes from.
public enum SNPRootKey: UInt32, Sendable {
    /// The chip's VCEK hash (for the reported TCB, or for the requested TCB with `.tcbVersion`).
    case vcek = 0
    /// The VM root key: random at every launch, so keys do not survive a restart.
    case vmrk = 1
}

/// A MSG_KEY_REQ (`struct snp_derived_key_req`, 32 bytes).
public struct SNPDerivedKeyRequest: Sendable, Equatable {
    public var rootKey: SNPRootKey
    public var fields: GuestFieldSelect
    public var vmpl: UInt32
    public var guestSVN: UInt32
    public var tcbVersion: UInt64

    public init(
        rootKey: SNPRootKey = .vcek, fields: GuestFieldSelect, vmpl: UInt32, guestSVN: UInt32 = 0,
        tcbVersion: UInt64 = 0
    ) {
        self.rootKey = rootKey
        self.fields = fields
        self.vmpl = vmpl
        self.guestSVN = guestSVN
        self.tcbVersion = tcbVersion
    }

    /// The kernel struct.
    public var raw: snp_derived_key_req {
        var r = snp_derived_key_req()
        r.root_key_select = rootKey.rawValue
        r.rsvd = 0
        r.guest_field_select = fields.rawValue
        r.vmpl = vmpl
        r.guest_svn = guestSVN
        r.tcb_version = tcbVersion
        return r
    }

    public init(_ raw: snp_derived_key_req) {
        rootKey = SNPRootKey(rawValue: raw.root_key_select & 1) ?? .vcek
        fields = GuestFieldSelect(rawValue: raw.guest_field_select)
        vmpl = raw.vmpl
        guestSVN = raw.guest_svn
        tcbVersion = raw.tcb_version
    }
}

/// SEV firmware status codes ELASTIC names (docs/platform.md §1.6).
public enum SNPFirmwareStatus: UInt32, Sendable, Error {
    case success = 0x00
    case invalidParam = 0x16
    case aeadOverflow = 0x1D
    case invalidKey = 0x27

    public static func describe(_ code: UInt32) -> String {
        switch SNPFirmwareStatus(rawValue: code) {
        case .success: return "success"
        case .invalidParam:
            return
                "INVALID_PARAM (0x16): a field is out of range — VMPL below the guest's, a TCB above the committed TCB, a guest SVN above the ID block's, or reserved bits set"
        case .aeadOverflow: return "AEAD_OFLOW (0x1d): message sequence number error"
        case .invalidKey: return "INVALID_KEY (0x27): the requested root key is not available to this guest"
        case nil: return "unknown firmware status 0x\(String(code, radix: 16))"
        }
    }
}

/// Fields of an attestation report (docs/platform.md §3.2) that ELASTIC reads.
public struct SNPReport: Sendable {
    public static let size = 0x4A0
    public let bytes: [UInt8]
    public init(bytes: [UInt8]) { self.bytes = bytes }

    func u64(_ off: Int) -> UInt64 { (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[off + $1]) << (8 * UInt64($1)) } }
    func u32(_ off: Int) -> UInt32 { (0..<4).reduce(UInt32(0)) { $0 | UInt32(bytes[off + $1]) << (8 * UInt32($1)) } }

    public var version: UInt32 { u32(0x00) }
    public var guestSVN: UInt32 { u32(0x04) }
    public var policy: UInt64 { u64(0x08) }
    public var currentTCB: UInt64 { u64(0x38) }
    public var vmpl: UInt32 { u32(0x30) }
    public var reportData: [UInt8] { Array(bytes[0x50..<0x90]) }
    public var measurement: [UInt8] { Array(bytes[0x90..<0xC0]) }
    public var hostData: [UInt8] { Array(bytes[0xC0..<0xE0]) }
    public var reportedTCB: UInt64 { u64(0x180) }
    public var committedTCB: UInt64 { u64(0x1E0) }
    public var launchTCB: UInt64 { u64(0x1F0) }
    /// SIGNING_KEY (0 VCEK, 1 VLEK, 7 none).
    public var signingKey: UInt32 { (u32(0x48) >> 2) & 7 }
    /// The signed bytes (0x000–0x29F).
    public var signedBytes: [UInt8] { Array(bytes[0..<0x2A0]) }
    /// R and S as big-endian 48-byte scalars (stored as 72-byte little-endian integers).
    public var signature: (r: [UInt8], s: [UInt8]) {
        (Array(bytes[0x2A0..<(0x2A0 + 48)].reversed()), Array(bytes[(0x2A0 + 72)..<(0x2A0 + 72 + 48)].reversed()))
    }
}

/// A TCB_VERSION (Milan/Genoa layout): bootloader, TEE, reserved ×4, SNP, microcode SVNs.
public struct TCBVersion: Sendable, Equatable, CustomStringConvertible {
    public var raw: UInt64
    public init(raw: UInt64) { self.raw = raw }
    public var bootloader: UInt8 { UInt8(truncatingIfNeeded: raw) }
    public var tee: UInt8 { UInt8(truncatingIfNeeded: raw >> 8) }
    public var snp: UInt8 { UInt8(truncatingIfNeeded: raw >> 48) }
    public var microcode: UInt8 { UInt8(truncatingIfNeeded: raw >> 56) }
    public var reservedBytes: UInt64 { (raw >> 16) & 0xFFFF_FFFF }
    /// True if no component exceeds `other`'s.
    public func isAtMost(_ other: TCBVersion) -> Bool {
        bootloader <= other.bootloader && tee <= other.tee && snp <= other.snp && microcode <= other.microcode
    }
    public var description: String { "bl=\(bootloader) tee=\(tee) snp=\(snp) ucode=\(microcode)" }
}
