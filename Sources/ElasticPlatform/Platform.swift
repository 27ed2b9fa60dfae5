/// Produces attestation reports for the control file's ATTEST command.
public protocol AttestationProvider: Sendable {
    /// `ELASTIC_PLATFORM_*` and the report for `reportData` (64 bytes).
    func report(reportData: [UInt8]) throws -> (platform: UInt32, report: [UInt8])
    /// The report with what a verifier needs besides it: on SEV-SNP the host's certificate table
    /// (docs/platform.md §1.8; empty when the host supplies none).
    func evidence(reportData: [UInt8]) throws -> (platform: UInt32, report: [UInt8], certificates: [UInt8])
}

extension AttestationProvider {
    public func evidence(reportData: [UInt8]) throws -> (platform: UInt32, report: [UInt8], certificates: [UInt8]) {
        let r = try report(reportData: reportData)
        return (r.platform, r.report, [])
    }
}

/// A platform that seals store keys: it derives a secret bound to this VM from parameters a
/// key slot records, so only a VM the parameters describe can open the slot. The parameters
/// are opaque to the on-disk format (stored with the slot, read back before anything is
/// authenticated: `unseal` treats them as hostile input).
public protocol SealingPlatform: AnyObject {
    /// The platform's entry in `PlatformRegistry`.
    var descriptor: PlatformDescriptor { get }
    /// Parameters for a new slot sealed to this VM as it is now, and the secret they derive.
    func seal(_ choice: SealChoice) throws -> (parameters: [UInt8], secret: [UInt8])
    /// The secret for a slot's recorded parameters. Before asking the hardware, compares this VM
    /// with what the slot recorded, so a refusal names what changed.
    func unseal(_ parameters: [UInt8]) throws -> [UInt8]
    /// Parameters that seal the same choice to the platform's current state (after a firmware
    /// upgrade), or nil when the slot is already current.
    func resealed(_ parameters: [UInt8]) throws -> [UInt8]?
}

/// What the user chose for a new sealed slot (defaults are the platform's safe choice).
public struct SealChoice: Sendable {
    /// SNP: "vcek" (default), "vlek" or "vmrk".
    public var rootKey: String?
    public init(rootKey: String? = nil) { self.rootKey = rootKey }
}

/// A platform that seals keys, as key slots name it: the slot-kind code the on-disk format
/// stores and the name users type (`--seal NAME`, `-o platform=NAME`).
public struct PlatformDescriptor: Sendable, Equatable {
    public let slotCode: UInt8
    public let name: String
    /// One line describing a slot's parameters (`elastic slot list`), or why they are unreadable.
    public let describe: @Sendable ([UInt8]) -> String

    public static func == (a: PlatformDescriptor, b: PlatformDescriptor) -> Bool {
        a.slotCode == b.slotCode && a.name == b.name
    }
}

/// Every sealing platform ELASTIC knows. A new platform adds its folder and one entry here.
public enum PlatformRegistry {
    public static let sealing: [PlatformDescriptor] = [SNPPlatform.descriptor]

    public static func descriptor(slotCode: UInt8) -> PlatformDescriptor? { sealing.first { $0.slotCode == slotCode } }
    public static func descriptor(named name: String) -> PlatformDescriptor? { sealing.first { $0.name == name } }
}
