import ArgumentParser
import ElasticPlatform
import Foundation

/// `elastic doctor [--json]`: where this machine stands, one marked line per fact.
struct DoctorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor", abstract: "Show the platform and which key-slot kinds work here.")

    @Flag(name: .customLong("json")) var json = false
    @Option(name: .customLong("root"), help: .hidden) var root: String = ""

    func run() throws {
        let probe = PlatformProbe(root: root)
        var lines: [(mark: String, name: String, detail: String)] = []
        let kind = probe.kind
        lines.append((kind == .plainLinux ? "warn" : "pass", "platform", kind.rawValue))
        if let status = probe.sevStatus {
            let names = PlatformProbe.sevStatusBits.filter { status & (1 << UInt64($0.0)) != 0 }.map(\.1)
            lines.append(("pass", "sev_status", "0x\(String(status, radix: 16)) (\(names.joined(separator: ", ")))"))
        }
        if kind == .snpGuest {
            let tsc = probe.secureTSC
            lines.append(
                (tsc.enabled ? "pass" : "warn", "secure_tsc", (tsc.enabled ? "on" : "off") + " (\(tsc.evidence))"))
        }
        lines.append(("pass", "clock_source", probe.clockSource ?? "unknown"))
        if kind == .snpGuest { lines.append(("pass", "vmpl", "\(probe.vmpl)")) }
        func device(_ path: String, _ present: Bool) -> (String, String, String) {
            guard present else { return ("warn", path, "absent") }
            let ok = access(probe.root + path, R_OK | W_OK) == 0
            return (ok ? "pass" : "fail", path, ok ? "present, accessible" : "present, not accessible (run as root)")
        }
        lines.append(device("/dev/sev-guest", probe.hasSEVGuestDevice))
        lines.append(device("/dev/tdx_guest", probe.hasTDXGuestDevice))
        lines.append(
            (
                probe.hasConfigfsTSM ? "pass" : "warn", "configfs-tsm",
                probe.hasConfigfsTSM ? "present (reports only, never keys)" : "absent"
            ))
        var slots = ["keyfile", "passphrase"]
        if probe.hasSEVGuestDevice { slots.append("snp") }
        lines.append(
            (
                "pass", "key slots",
                slots.joined(separator: ", ") + (probe.hasSEVGuestDevice ? "" : " (snp sealing needs an SEV-SNP guest)")
            ))
        if json {
            let objects = lines.map { ["check": $0.name, "status": $0.mark, "detail": $0.detail] }
            let data = try JSONSerialization.data(
                withJSONObject: ["platform": kind.rawValue, "checks": objects],
                options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
            print(String(decoding: data, as: UTF8.self))
        } else {
            for l in lines { print("[\(l.mark)] \(l.name): \(l.detail)") }
        }
    }
}
