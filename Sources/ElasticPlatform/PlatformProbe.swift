import ElasticSystem
import Foundation

/// Which confidential-computing platform this is, from documented signals only (device nodes,
/// sysfs, configfs-tsm, cpuinfo); it never sends the guest device a probing request.
public struct PlatformProbe: Sendable {
    public enum Kind: String, Sendable {
        case plainLinux = "plain Linux"
        case snpGuest = "SEV-SNP guest"
        case tdxGuest = "TDX guest"
    }

    /// Filesystem root the probe reads under (tests point it at a fake tree).
    public let root: String
    public init(root: String = "") { self.root = root }

    func path(_ p: String) -> String { root + p }
    func exists(_ p: String) -> Bool { FileManager.default.fileExists(atPath: path(p)) }
    func read(_ p: String) -> String? {
        (try? String(contentsOfFile: path(p), encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    public var hasSEVGuestDevice: Bool { exists("/dev/sev-guest") }
    public var hasTDXGuestDevice: Bool { exists("/dev/tdx_guest") }
    public var hasConfigfsTSM: Bool { exists("/sys/kernel/config/tsm/report") }
    /// SEV_STATUS from sysfs (lowercase hex, no 0x), when the kernel exposes it.
    public var sevStatus: UInt64? { read("/sys/devices/system/cpu/sev/sev_status").flatMap { UInt64($0, radix: 16) } }
    /// The VMPL Linux runs at (0 unless under an SVSM).
    public var vmpl: UInt32 { read("/sys/devices/system/cpu/sev/vmpl").flatMap { UInt32($0) } ?? 0 }
    public var clockSource: String? { read("/sys/devices/system/clocksource/clocksource0/current_clocksource") }
    var cpuFlags: [Substring] {
        guard let info = read("/proc/cpuinfo"),
            let line = info.split(separator: "\n").first(where: { $0.hasPrefix("flags") })
        else { return [] }
        return line.split(separator: " ")
    }

    public var kind: Kind {
        if hasSEVGuestDevice || exists("/sys/devices/system/cpu/sev") { return .snpGuest }
        if hasTDXGuestDevice || cpuFlags.contains("tdx_guest") { return .tdxGuest }
        return .plainLinux
    }

    /// SEV_STATUS bits worth naming (docs/platform.md §5.1).
    public static let sevStatusBits: [(Int, String)] = [
        (0, "SEV"), (1, "SEV-ES"), (2, "SNP"), (3, "vTOM"), (4, "ReflectVC"), (5, "RestrictedInjection"),
        (6, "AlternateInjection"), (7, "DebugSwap"), (8, "PreventHostIBS"), (9, "BTBIsolation"), (11, "SecureTSC"),
        (16, "VmsaRegProt"),
    ]
}
