import ElasticCrypto
import ElasticPlatform
import Foundation
import Testing

/// `elastic attest verify`, through the built binary, on evidence from the SEV-SNP simulator:
/// its own ARK → ASK → VCEK chain and an extended report with the host's certificate table.
/// Every check is printed with its verdict; exit 0 only when all pass (23 otherwise).
@Suite struct AttestVerifyTests {
    /// A simulated guest's evidence written as snpguest lays it out: report.bin, and
    /// certs/{vcek,ask,ark}.der. `change` adjusts the simulated launch first.
    func evidence(
        reportData: [UInt8] = [UInt8](repeating: 0x5A, count: 64),
        _ change: (inout SNPSimulator.State) -> Void = { _ in }
    ) throws -> (dir: String, report: SNPReport) {
        var state = try SNPSimulator.State.fresh()
        change(&state)
        _ = try state.installCertificateChain()
        let e = try SNPGuest(transport: SNPSimulator(state: state)).extendedReport(reportData: reportData, vmpl: 0)
        let dir = try sh("mktemp -d /tmp/elastic-attest.XXXXXX").stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        try FileManager.default.createDirectory(atPath: dir + "/certs", withIntermediateDirectories: true)
        try Data(e.report.bytes).write(to: URL(fileURLWithPath: dir + "/report.bin"))
        for name in ["vcek", "ask", "ark"] {
            try Data(try #require(e.certificates.certificate(name))).write(
                to: URL(fileURLWithPath: "\(dir)/certs/\(name).der"))
        }
        return (dir, e.report)
    }

    func verify(_ dir: String, _ extra: [String] = [], policy: String? = nil) throws -> CommandResult {
        if let policy { try policy.write(toFile: dir + "/policy.json", atomically: true, encoding: .utf8) }
        return try run(
            Env.elastic,
            ["attest", "verify", "--report", dir + "/report.bin", "--certs", dir + "/certs"] + extra
                + (policy == nil ? [] : ["--policy", dir + "/policy.json"]))
    }

    @Test func theSimulatorsRootIsTrustedOnlyWhenGiven() throws {
        let (dir, _) = try evidence()
        defer { _ = try? sh("rm -rf '\(dir)'") }
        // The ARK in the certificate directory came with the evidence: not a trust anchor.
        let untrusted = try verify(dir)
        #expect(untrusted.status == 23, "\(untrusted.stdout)")
        #expect(untrusted.stdout.contains("FAIL  certificate chain: "), "\(untrusted.stdout)")
        #expect(untrusted.stdout.contains("PASS  signature: "), "\(untrusted.stdout)")
        let given = try verify(dir, ["--root", dir + "/certs/ark.der"])
        #expect(given.status == 0, "\(given.stdout)")
        for check in ["report format", "signing key", "certificate chain", "signature", "certificate TCB", "chip ID"] {
            #expect(given.stdout.contains("PASS  \(check): "), "\(check): \(given.stdout)")
        }
        #expect(given.stdout.contains("ELASTIC SIMULATOR (not AMD), a root given with --root"), "\(given.stdout)")
    }

    @Test func aPolicyIsCheckedItemByItem() throws {
        let data = [UInt8](repeating: 0x42, count: 64)
        let (dir, report) = try evidence(reportData: data)
        defer { _ = try? sh("rm -rf '\(dir)'") }
        let root = ["--root", dir + "/certs/ark.der"]
        let m = Hex.encode(report.measurement)
        let good = """
            {"measurements": ["\(m)"], "debug": false, "migration_agent": false, "smt": true,
             "minimum_tcb": {"bootloader": 0, "snp": 0}, "vmpl": 0, "report_data": "\(Hex.encode(data))",
             "report_version": {"minimum": 2, "maximum": 5}}
            """
        let ok = try verify(dir, root, policy: good)
        #expect(ok.status == 0, "\(ok.stdout)")
        for check in ["measurement", "policy: debug", "policy: migration agent", "policy: SMT", "minimum TCB", "VMPL"] {
            #expect(ok.stdout.contains("PASS  \(check): "), "\(check): \(ok.stdout)")
        }
        // Each requirement that does not hold fails on its own line.
        let refusals: [(String, String)] = [
            (#"{"measurements": ["\#(String(repeating: "00", count: 48))"]}"#, "FAIL  measurement: "),
            (#"{"smt": false}"#, "FAIL  policy: SMT: "),
            (#"{"minimum_tcb": {"snp": 255}}"#, "FAIL  minimum TCB: "),
            (#"{"report_data": "\#(String(repeating: "11", count: 64))"}"#, "FAIL  report data: "),
            (#"{"report_version": {"minimum": 4}}"#, "FAIL  report version: "),
            (#"{"vmpl": 2}"#, "FAIL  VMPL: "),
        ]
        for (policy, line) in refusals {
            let r = try verify(dir, root, policy: policy)
            #expect(
                r.status == 23 && r.stdout.contains(line) && r.stdout.contains("verdict: REFUSED"),
                "\(policy): \(r.stdout)")
        }
        // A debug launch against a policy that forbids debugging.
        let (debugDir, _) = try evidence { $0.policy |= 1 << 19 }
        defer { _ = try? sh("rm -rf '\(debugDir)'") }
        let debug = try verify(debugDir, ["--root", debugDir + "/certs/ark.der"], policy: #"{"debug": false}"#)
        #expect(debug.status == 23 && debug.stdout.contains("FAIL  policy: debug: "), "\(debug.stdout)")
        // A requirement written as null or left empty is refused too, not dropped.
        for policy in [#"{"debug": null}"#, #"{"minimum_tcb": {}}"#, #"{"report_version": {"minimum": null}}"#] {
            let r = try verify(dir, root, policy: policy)
            #expect(
                r.status == 1 && (r.stderr.contains("null") || r.stderr.contains("empty")), "\(policy): \(r.stderr)")
        }
        // Without a policy it says what it did not check.
        let bare = try verify(dir, root)
        #expect(bare.status == 0 && bare.stdout.contains("note: no --policy"), "\(bare.stdout)")
        // A misspelt requirement is refused, not ignored.
        let typo = try verify(dir, root, policy: #"{"measurment": []}"#)
        #expect(typo.status == 1 && typo.stderr.contains("unknown policy key \"measurment\""), "\(typo.stderr)")
        // JSON: every check, the verdict and the report's fields.
        let json = try verify(dir, root + ["--json"], policy: good)
        let obj = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        #expect(obj?["verdict"] as? String == "pass")
        #expect((obj?["checks"] as? [[String: String]])?.count == 14, "\(json.stdout)")
        #expect((obj?["report"] as? [String: Any])?["measurement"] as? String == m)
    }

    @Test func tamperedEvidenceIsRefused() throws {
        let (dir, report) = try evidence()
        defer { _ = try? sh("rm -rf '\(dir)'") }
        let root = ["--root", dir + "/certs/ark.der"]
        // A byte of the measurement changed: the signature no longer verifies.
        var bytes = report.bytes
        bytes[0x90] ^= 1
        try Data(bytes).write(to: URL(fileURLWithPath: dir + "/report.bin"))
        let r = try verify(dir, root)
        #expect(r.status == 23 && r.stdout.contains("FAIL  signature: "), "\(r.stdout)")
        // The high, unused bytes of R (a 72-byte field holding a 48-byte scalar) must be zero.
        bytes = report.bytes
        bytes[0x2A0 + 60] = 1
        try Data(bytes).write(to: URL(fileURLWithPath: dir + "/report.bin"))
        let padded = try verify(dir, root)
        #expect(padded.status == 23 && padded.stdout.contains("FAIL  signature: "), "\(padded.stdout)")
        // Another chip's VCEK (the same VM moved to another host): chain fine, signature and chip fail.
        try Data(report.bytes).write(to: URL(fileURLWithPath: dir + "/report.bin"))
        let (other, _) = try evidence()
        defer { _ = try? sh("rm -rf '\(other)'") }
        let swapped = try run(
            Env.elastic,
            [
                "attest", "verify", "--report", dir + "/report.bin", "--vcek", other + "/certs/vcek.der", "--certs",
                other + "/certs", "--root", other + "/certs/ark.der",
            ])
        #expect(swapped.status == 23 && swapped.stdout.contains("FAIL  signature: "), "\(swapped.stdout)")
        #expect(swapped.stdout.contains("FAIL  chip ID: "), "\(swapped.stdout)")
        // Not a report at all.
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: dir + "/report.bin"))
        let junk = try verify(dir, root)
        #expect(junk.status == 1 && junk.stderr.contains("not an SEV-SNP report"), "\(junk.stderr)")
    }

    /// AMD's roots are built in: a simulator chain does not reach them, and AMD's real ASK
    /// (built in too) does not vouch for the simulator's VCEK.
    @Test func amdsRootsDoNotVouchForTheSimulator() throws {
        let (dir, _) = try evidence()
        defer { _ = try? sh("rm -rf '\(dir)'") }
        try FileManager.default.removeItem(atPath: dir + "/certs/ask.der")
        let r = try verify(dir)
        // The VCEK names SEV-Genoa as its issuer: AMD's SEV-Genoa is found, chains to ARK-Genoa,
        // and did not sign this VCEK.
        #expect(
            r.status == 23
                && r.stdout.contains(
                    "FAIL  certificate chain: the certificate chain is not trusted: the VCEK certificate is not signed by SEV-Genoa"
                ),
            "\(r.stdout)")
    }

    /// End to end through a mount on the simulator: the host serves its certificate table,
    /// `elastic attest --evidence DIR` writes the report and the certificates, and `attest
    /// verify` accepts them with the simulator's root given (and only then).
    @Test(.enabled(if: Env.canMount, "needs root and /dev/fuse"))
    func evidenceFromTheControlFileVerifies() throws {
        try MountedStore.with { s in
            let state = s.dir + "/sim.json", ark = s.dir + "/sim-ark.der", dir = s.dir + "/evidence"
            expectOK(try run(Env.elastic, ["simulator", "init", "--state", state]), "simulator")
            try s.remount(options: ["platform=snp-simulator", "simulator_state=\(state)"])
            // No certificates from the host yet: said so, and no VCEK file.
            let bare = try run(
                Env.elastic, ["attest", "--report-data", "01", "--evidence", s.dir + "/bare", "--mount", s.mountpoint])
            expectOK(bare, "attest --evidence")
            #expect(
                bare.stderr.contains("supplies no certificates") && bare.stderr.contains("SIMULATOR"), "\(bare.stderr)")
            #expect(!FileManager.default.fileExists(atPath: s.dir + "/bare/vcek.der"))
            // The host installs its certificate table (the simulated platform is read at mount).
            expectOK(
                try run(Env.elastic, ["simulator", "set", "--state", state, "--install-certificates", ark]), "install")
            try s.remount(options: ["platform=snp-simulator", "simulator_state=\(state)"])
            let data = String(repeating: "ab", count: 64)
            let e = try run(Env.elastic, ["attest", "--report-data", data, "--evidence", dir, "--mount", s.mountpoint])
            expectOK(e, "attest --evidence")
            for f in ["report.bin", "vcek.der", "ask.der", "ark.der"] {
                #expect(FileManager.default.fileExists(atPath: "\(dir)/\(f)"), "\(f): \(e.stdout)")
            }
            try #"{"report_data": "\#(data)", "debug": false}"#.write(
                toFile: s.dir + "/policy.json", atomically: true, encoding: .utf8)
            let args = [
                "attest", "verify", "--report", dir + "/report.bin", "--certs", dir, "--policy", s.dir + "/policy.json",
            ]
            let refused = try run(Env.elastic, args)
            #expect(refused.status == 23 && refused.stdout.contains("FAIL  certificate chain"), "\(refused.stdout)")
            let accepted = try run(Env.elastic, args + ["--root", ark])
            #expect(accepted.status == 0 && accepted.stdout.contains("PASS  report data"), "\(accepted.stdout)")
        }
    }
}
