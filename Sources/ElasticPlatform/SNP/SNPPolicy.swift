import ElasticCrypto
import Foundation

/// What a verifier requires of an SEV-SNP report beyond its signature (docs/attestation.md):
/// read from a JSON file whose keys are all optional (absent: anything goes) and all known
/// (an unknown key is refused: a misspelt requirement must not pass silently).
///
/// ```json
/// {
///   "measurements": ["<96 hex digits>", ...],
///   "debug": false, "migration_agent": false, "smt": true,
///   "minimum_tcb": {"bootloader": 9, "tee": 0, "snp": 23, "microcode": 72, "fmc": 0},
///   "vmpl": 0, "maximum_vmpl": 1,
///   "report_data": "<128 hex digits>", "host_data": "<64 hex digits>",
///   "report_version": {"minimum": 2, "maximum": 5},
///   "chip_ids": ["<128 hex digits>", ...]
/// }
/// ```
/// `debug`, `migration_agent`, `smt`: true requires the guest policy bit (19, 18, 16), false
/// forbids it. `minimum_tcb` applies to the report's REPORTED_TCB, component by component.
public struct SNPPolicy: Sendable {
    public var measurements: [[UInt8]]?
    public var debug: Bool?
    public var migrationAgent: Bool?
    public var smt: Bool?
    public var minimumTCB: [String: Int]?
    public var vmpl: UInt32?
    public var maximumVMPL: UInt32?
    public var reportData: [UInt8]?
    public var hostData: [UInt8]?
    public var reportVersion: ClosedRange<UInt32>?
    public var chipIDs: [[UInt8]]?

    public init() {}

    public struct Invalid: Error, CustomStringConvertible {
        public let description: String
    }

    static let keys: Set<String> = [
        "measurements", "debug", "migration_agent", "smt", "minimum_tcb", "vmpl", "maximum_vmpl", "report_data",
        "host_data", "report_version", "chip_ids",
    ]
    static let components: Set<String> = ["bootloader", "tee", "snp", "microcode", "fmc"]

    /// The file as JSON gives it (types checked by the decoder).
    struct File: Decodable {
        struct Versions: Decodable {
            var minimum: UInt32?
            var maximum: UInt32?
        }
        var measurements: [String]?
        var debug: Bool?
        var migration_agent: Bool?
        var smt: Bool?
        var minimum_tcb: [String: UInt8]?
        var vmpl: UInt32?
        var maximum_vmpl: UInt32?
        var report_data: String?
        var host_data: String?
        var report_version: Versions?
        var chip_ids: [String]?
    }

    /// Parses a policy file's JSON.
    public init(json: Data) throws {
        guard let top = (try? JSONSerialization.jsonObject(with: json)) as? [String: Any] else {
            throw Invalid(description: "the policy is not a JSON object")
        }
        if let unknown = top.keys.sorted().first(where: { !Self.keys.contains($0) }) {
            throw Invalid(description: "unknown policy key \"\(unknown)\"")
        }
        // A key given must say something: null, an empty list or object would drop it unseen.
        for (key, value) in top {
            if value is NSNull { throw Invalid(description: "\(key): null (leave the key out to allow anything)") }
            if let d = value as? [String: Any], d.isEmpty { throw Invalid(description: "\(key): empty") }
            if let d = value as? [String: Any], let k = d.first(where: { $0.value is NSNull })?.key {
                throw Invalid(description: "\(key).\(k): null")
            }
        }
        if let v = top["report_version"] as? [String: Any],
            let unknown = v.keys.sorted().first(where: { $0 != "minimum" && $0 != "maximum" })
        {
            throw Invalid(description: "report_version: unknown key \"\(unknown)\" (minimum, maximum)")
        }
        let f: File
        do { f = try JSONDecoder().decode(File.self, from: json) } catch let DecodingError.typeMismatch(_, c) {
            throw Invalid(
                description: "\(c.codingPath.map(\.stringValue).joined(separator: ".")): \(c.debugDescription)")
        } catch {
            throw Invalid(description: "\(error)")
        }
        func hex(_ key: String, _ s: String, bytes: Int) throws -> [UInt8] {
            guard let b = Hex.decode(s), b.count == bytes else {
                throw Invalid(description: "\(key): \(bytes * 2) hex digits expected")
            }
            return b
        }
        if let m = f.measurements {
            guard !m.isEmpty else { throw Invalid(description: "measurements: a non-empty list expected") }
            measurements = try m.map { try hex("measurements", $0, bytes: 48) }
        }
        if let c = f.chip_ids {
            guard !c.isEmpty else { throw Invalid(description: "chip_ids: a non-empty list expected") }
            chipIDs = try c.map { try hex("chip_ids", $0, bytes: 64) }
        }
        (debug, migrationAgent, smt) = (f.debug, f.migration_agent, f.smt)
        if let t = f.minimum_tcb {
            if let unknown = t.keys.sorted().first(where: { !Self.components.contains($0) }) {
                throw Invalid(description: "minimum_tcb: unknown component \"\(unknown)\"")
            }
            minimumTCB = t.mapValues { Int($0) }
        }
        (vmpl, maximumVMPL) = (f.vmpl, f.maximum_vmpl)
        if let r = f.report_data { reportData = try hex("report_data", r, bytes: 64) }
        if let h = f.host_data { hostData = try hex("host_data", h, bytes: 32) }
        if let r = f.report_version {
            let lo = r.minimum ?? 0, hi = r.maximum ?? UInt32.max
            guard lo <= hi else { throw Invalid(description: "report_version: minimum above maximum") }
            reportVersion = lo...hi
        }
    }

    /// The policy's checks of `report`, each with its verdict.
    public func checks(_ report: SNPReport) -> [SNPEvidenceVerifier.Check] {
        var out: [SNPEvidenceVerifier.Check] = []
        func check(_ name: String, _ ok: Bool, _ pass: String, _ fail: String) {
            out.append(
                SNPEvidenceVerifier.Check(
                    name: name, passed: ok, detail: ok ? pass : fail,
                    failure: ok ? nil : .mismatch(fail)))
        }
        if let range = reportVersion {
            check(
                "report version", range.contains(report.version), "version \(report.version)",
                "version \(report.version), the policy allows \(range.lowerBound)–\(range.upperBound)")
        }
        if let measurements {
            check(
                "measurement", measurements.contains(report.measurement), Hex.encode(report.measurement),
                "\(Hex.encode(report.measurement)) is not one the policy allows")
        }
        for (name, bit, wanted) in [("debug", 19, debug), ("migration agent", 18, migrationAgent), ("SMT", 16, smt)] {
            guard let wanted else { continue }
            let set = report.policy & (1 << UInt64(bit)) != 0
            check(
                "policy: \(name)", set == wanted,
                "\(name) \(set ? "allowed" : "not allowed") (guest policy bit \(bit))",
                "guest policy \(set ? "allows" : "does not allow") \(name) (bit \(bit)); the policy \(wanted ? "requires" : "forbids") it"
            )
        }
        if let minimumTCB {
            let tcb = report.reportedTCB
            let have: [String: Int] = [
                "bootloader": Int(tcb.bootloader), "tee": Int(tcb.tee), "snp": Int(tcb.snp),
                "microcode": Int(tcb.microcode), "fmc": Int(tcb.fmc ?? 0),
            ]
            let low = minimumTCB.keys.sorted().filter { have[$0]! < minimumTCB[$0]! }
            check(
                "minimum TCB", low.isEmpty, "reported TCB \(tcb)",
                "reported TCB \(tcb): " + low.map { "\($0) \(have[$0]!) < \(minimumTCB[$0]!)" }.joined(separator: ", "))
        }
        if let vmpl {
            check(
                "VMPL", report.vmpl == vmpl, "VMPL \(report.vmpl)", "VMPL \(report.vmpl), the policy requires \(vmpl)")
        }
        if let maximumVMPL {
            check(
                "maximum VMPL", report.vmpl <= maximumVMPL, "VMPL \(report.vmpl)",
                "VMPL \(report.vmpl), the policy allows at most \(maximumVMPL)")
        }
        if let reportData {
            check(
                "report data", report.reportData == reportData, "as expected",
                "\(Hex.encode(report.reportData)) is not the expected \(Hex.encode(reportData))")
        }
        if let hostData {
            check(
                "host data", report.hostData == hostData, "as expected",
                "\(Hex.encode(report.hostData)) is not the expected \(Hex.encode(hostData))")
        }
        if let chipIDs {
            check(
                "chip", chipIDs.contains(report.chipID), "an allowed chip",
                "chip \(Hex.encode(report.chipID)) is not one the policy allows")
        }
        return out
    }
}
