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

/// The root secret a derived key comes from, as dword 0 of MSG_KEY_REQ selects it: bit 0
/// ROOT_KEY_SELECT (1 = VMRK), bits 2:1 KEY_SEL for the other roots (docs/platform.md §1.4).
/// The raw value is that dword, which is also what a key slot records.
public enum SNPRootKey: UInt32, Sendable, CaseIterable {
    /// KEY_SEL 0: the VLEK if the host installed one, else the VCEK. Written by ELASTIC before it
    /// chose explicitly; such slots still open, and `elastic slot reseal` makes them explicit.
    case firmwareDefault = 0
    /// The VM root key: random at every launch, so keys do not survive a restart.
    case vmrk = 1
    /// KEY_SEL 1: this chip's VCEK hash (for the reported TCB, or for the requested TCB with
    /// `.tcbVersion`). Bound to the chip: another host derives another key.
    case vcek = 2
    /// KEY_SEL 2: the VLEK the cloud provider installed (the same across its fleet).
    case vlek = 4

    public var name: String {
        switch self {
        case .firmwareDefault: return "vlek-or-vcek"
        case .vmrk: return "vmrk"
        case .vcek: return "vcek"
        case .vlek: return "vlek"
        }
    }
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
        r.root_key_select = rootKey.rawValue  // ROOT_KEY_SELECT and KEY_SEL
        r.rsvd = 0
        r.guest_field_select = fields.rawValue
        r.vmpl = vmpl
        r.guest_svn = guestSVN
        r.tcb_version = tcbVersion
        return r
    }

    public init(_ raw: snp_derived_key_req) {
        rootKey = SNPRootKey(rawValue: raw.root_key_select & 0b111) ?? .firmwareDefault
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
    /// Report versions whose layout ELASTIC knows (3 and 4 add the CPUID fields, 5 the
    /// mitigation vectors).
    public static let knownVersions: ClosedRange<UInt32> = 2...5
    public let bytes: [UInt8]
    public init(bytes: [UInt8]) { self.bytes = bytes }

    func littleEndian64(_ off: Int) -> UInt64 {
        (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[off + $1]) << (8 * UInt64($1)) }
    }
    func littleEndian32(_ off: Int) -> UInt32 {
        (0..<4).reduce(UInt32(0)) { $0 | UInt32(bytes[off + $1]) << (8 * UInt32($1)) }
    }

    public var version: UInt32 { littleEndian32(0x00) }
    public var guestSVN: UInt32 { littleEndian32(0x04) }
    public var policy: UInt64 { littleEndian64(0x08) }
    public var vmpl: UInt32 { littleEndian32(0x30) }
    /// 1 = ECDSA P-384 with SHA-384.
    public var signatureAlgorithm: UInt32 { littleEndian32(0x34) }
    public var currentTCB: TCBVersion { tcb(0x38) }
    public var reportData: [UInt8] { Array(bytes[0x50..<0x90]) }
    public var measurement: [UInt8] { Array(bytes[0x90..<0xC0]) }
    public var hostData: [UInt8] { Array(bytes[0xC0..<0xE0]) }
    public var reportedTCB: TCBVersion { tcb(0x180) }
    /// CPUID family (combined), from version 3 on; nil before.
    public var cpuFamily: UInt8? { version >= 3 ? bytes[0x188] : nil }
    public var cpuModel: UInt8? { version >= 3 ? bytes[0x189] : nil }
    /// CHIP_ID: all zero when the host masks it (MASK_CHIP_ID).
    public var chipID: [UInt8] { Array(bytes[0x1A0..<0x1E0]) }
    public var committedTCB: TCBVersion { tcb(0x1E0) }
    public var launchTCB: TCBVersion { tcb(0x1F0) }
    /// SIGNING_KEY (0 VCEK, 1 VLEK, 7 none).
    public var signingKey: UInt32 { (littleEndian32(0x48) >> 2) & 7 }
    /// MASK_CHIP_KEY as the report states it.
    public var chipKeyMasked: Bool { littleEndian32(0x48) & 2 != 0 }
    /// The signed bytes (0x000–0x29F).
    public var signedBytes: [UInt8] { Array(bytes[0..<0x2A0]) }
    /// R and S as big-endian 48-byte scalars (stored as 72-byte little-endian integers).
    public var signature: (r: [UInt8], s: [UInt8]) {
        (Array(bytes[0x2A0..<(0x2A0 + 48)].reversed()), Array(bytes[(0x2A0 + 72)..<(0x2A0 + 72 + 48)].reversed()))
    }

    /// The TCB layout of the chip that produced the report: Turin's from family 0x1A on.
    /// Reports before version 3 carry no family; every chip that emits those (Milan, Genoa)
    /// uses the older layout.
    public var tcbLayout: TCBVersion.Layout { (cpuFamily ?? 0) >= 0x1A ? .turin : .milanGenoa }

    func tcb(_ off: Int) -> TCBVersion { TCBVersion(raw: littleEndian64(off), layout: tcbLayout) }

    /// Refuses a report ELASTIC cannot read: an unknown version or signature algorithm.
    public func checkFormat() throws {
        guard bytes.count == Self.size else { throw SEVError.invalidRequest("report of \(bytes.count) bytes") }
        guard Self.knownVersions.contains(version) else {
            throw SEVError.invalidRequest("attestation report version \(version) is not one ELASTIC reads (2 to 5)")
        }
        guard signatureAlgorithm == 1 || signingKey == 7 else {
            throw SEVError.invalidRequest(
                "attestation report signature algorithm \(signatureAlgorithm) is not ECDSA P-384 (1)")
        }
    }
}

/// A TCB_VERSION: the security version numbers of the firmware components, whose byte layout
/// depends on the chip generation (docs/platform.md §3.3).
public struct TCBVersion: Sendable, Equatable, CustomStringConvertible {
    public enum Layout: Sendable, Equatable {
        /// Milan, Genoa: boot loader (0), TEE (1), reserved (2–5), SNP (6), microcode (7).
        case milanGenoa
        /// Turin: FMC (0), boot loader (1), TEE (2), SNP (3), reserved (4–6), microcode (7).
        case turin
    }

    public var raw: UInt64
    public var layout: Layout
    public init(raw: UInt64, layout: Layout = .milanGenoa) {
        self.raw = raw
        self.layout = layout
    }

    func byte(_ i: Int) -> UInt8 { UInt8(truncatingIfNeeded: raw >> (8 * UInt64(i))) }

    public var fmc: UInt8? { layout == .turin ? byte(0) : nil }
    public var bootloader: UInt8 { layout == .turin ? byte(1) : byte(0) }
    public var tee: UInt8 { layout == .turin ? byte(2) : byte(1) }
    public var snp: UInt8 { layout == .turin ? byte(3) : byte(6) }
    public var microcode: UInt8 { byte(7) }
    /// The reserved bytes (must be zero in a key request).
    public var reservedBytes: UInt64 {
        layout == .turin ? (raw >> 32) & 0xFF_FFFF : (raw >> 16) & 0xFFFF_FFFF
    }

    var components: [UInt8] { [fmc ?? 0, bootloader, tee, snp, microcode] }

    /// True if no component exceeds `other`'s (both read in this layout).
    public func isAtMost(_ other: TCBVersion) -> Bool {
        let o = TCBVersion(raw: other.raw, layout: layout)
        return zip(components, o.components).allSatisfy { $0 <= $1 }
    }

    public var description: String {
        let common = "bl=\(bootloader) tee=\(tee) snp=\(snp) ucode=\(microcode)"
        return fmc.map { "fmc=\($0) " + common } ?? common
    }
}
