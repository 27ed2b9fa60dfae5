import ArgumentParser
import ElasticControlClient
import ElasticCrypto
import ElasticPlatform
import ElasticRuntime
import ElasticTLS
import Foundation

/// `elastic tls cert|csr|verify-cert`: attested certificates for keys of the key store.
struct TLSCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tls", abstract: "Attested TLS certificates (docs/tls.md).",
        subcommands: [TLSCertCommand.self, TLSCSRCommand.self, TLSVerifyCertCommand.self])
}

/// What a certificate or request names besides its key.
struct CertificateSubjectOptions: ParsableArguments {
    @Option(name: .customLong("key"), help: "A key of your key store (EC P-256/P-384, Ed25519 or RSA).")
    var key: String
    @Option(name: .customLong("san"), help: "A DNS name or IP address the certificate is for (repeatable).")
    var sans: [String] = []
    @Option(name: .customLong("cn"), help: "The subject's common name (default: the first --san, else the key's name).")
    var commonName: String?
    @Option(name: .customLong("days"), help: "Validity in days (1-3650).")
    var days: Int = 30
    @Option(name: .customLong("nonce"), help: "A verifier's nonce to bind too (hex).")
    var nonce: String?
    @Option(name: .customLong("out"), help: "Write the PEM here (default: standard output).")
    var out: String?

    func subject() throws -> AttestedCertificate.Subject {
        var s = AttestedCertificate.Subject(commonName: commonName ?? sans.first ?? key)
        for san in sans {
            var v4 = in_addr(), v6 = in6_addr()
            if inet_pton(AF_INET, san, &v4) == 1 || inet_pton(AF_INET6, san, &v6) == 1 {
                s.ipAddresses.append(san)
            } else {
                s.dnsNames.append(san)
            }
        }
        s.days = days
        if let nonce {
            guard let bytes = Hex.decode(nonce), !bytes.isEmpty, bytes.count <= 64 else {
                throw CLIError("--nonce is 1 to 64 bytes in hex", .usage)
            }
            s.nonce = bytes
        }
        return s
    }

    func write(_ pem: [UInt8]) throws {
        if let out {
            guard FileManager.default.createFile(atPath: out, contents: Data(pem)) else {
                throw CLIError("cannot write \(out)")
            }
        } else {
            FileHandle.standardOutput.write(Data(pem))
        }
    }
}

/// Says on stderr what the evidence is (a simulator's is no evidence of hardware).
func describe(_ e: CertificateEvidence, _ what: String) {
    let report = SNPReport(bytes: e.report)
    printError(
        "\(what): SEV-SNP report v\(report.version), measurement \(Hex.encode(report.measurement).prefix(24))…, "
            + "\(e.certificates.isEmpty ? "no host certificates (verifiers need --vcek)" : "with the host's certificates")"
    )
    if e.platform == "sev-snp-simulator" {
        printError("\(what): WARNING: the report comes from the SEV-SNP SIMULATOR, not hardware: for tests only")
    }
}

/// `elastic tls cert --key NAME [--san ...] [--days N] [--out FILE]`
struct TLSCertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cert",
        abstract: "Issue a self-signed certificate for a key of the key store, carrying fresh evidence that binds it.")
    @OptionGroup var mount: MountOption
    @OptionGroup var options: CertificateSubjectOptions

    func run() throws {
        do {
            let client = try mount.client()
            let key = try RemoteKey(client: client, name: options.key)
            let (cert, evidence) = try AttestedCertificate.issue(
                key: key, subject: try options.subject(), client: client)
            try options.write(try AttestedCertificate.pem(cert))
            describe(evidence, "certificate")
        } catch let e as CLIError { throw failure(e) } catch { throw controlFailure(error) }
    }
}

/// `elastic tls csr --key NAME [--san ...] [--out FILE]`
struct TLSCSRCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "csr",
        abstract: "A certificate request (PKCS #10) for a key of the key store, with the same evidence, for a CA.")
    @OptionGroup var mount: MountOption
    @OptionGroup var options: CertificateSubjectOptions

    func run() throws {
        do {
            let client = try mount.client()
            let key = try RemoteKey(client: client, name: options.key)
            let (pem, evidence) = try AttestedCertificate.request(
                key: key, subject: try options.subject(), client: client)
            try options.write(pem)
            describe(evidence, "request")
        } catch let e as CLIError { throw failure(e) } catch { throw controlFailure(error) }
    }
}

/// `elastic tls verify-cert CERT [--policy FILE] [--root FILE] [--vcek FILE] [--json]`
struct TLSVerifyCertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify-cert",
        abstract: "Check an attested certificate from anyone: binding, evidence, chain and policy.",
        discussion: "Exit 0 only when every check passes; 23 when one fails.")
    @Argument(help: "The certificate (PEM or DER).") var certificate: String
    @Option(name: .customLong("policy"), help: "A policy file (JSON, docs/attestation.md).") var policy: String?
    @Option(name: .customLong("root"), help: "Trust this root too (repeatable; a simulator's root only this way).")
    var roots: [String] = []
    @Option(name: .customLong("vcek"), help: "The VCEK or VLEK certificate, when the evidence carries none.")
    var vcek: String?
    @Option(name: .customLong("at"), help: "Check the validity at this time (seconds since the epoch; default: now).")
    var at: Int64?
    @Flag(name: .customLong("json")) var json = false

    func run() throws {
        let cert: X509Certificate
        var verifier: AttestedCertificateVerifier
        var given: Set<String> = []
        do {
            cert = try certificates(at: certificate)[0]
            let roots = try roots.flatMap { try certificates(at: $0) }
            given = Set(roots.compactMap(\.subjectCommonName))
            verifier = try AttestedCertificateVerifier(givenRoots: roots, policy: try policy.map(readPolicy))
            if let vcek { verifier.endorsement = try certificates(at: vcek)[0] }
            if let at { verifier.now = Date(timeIntervalSince1970: TimeInterval(at)) }
        } catch { throw failure(error) }
        let result = verifier.verify(cert)
        try printChecks(
            result.checks, json: json, report: result.report, root: result.root,
            rootIsGiven: result.root.map(given.contains) ?? false, policy: policy)
        if !result.passed { throw ExitCode(ElasticExitCode.evidenceRefused.rawValue) }
    }
}

/// The certificates in a PEM or DER file.
func certificates(at path: String) throws -> [X509Certificate] {
    guard let data = FileManager.default.contents(atPath: path) else { throw CLIError("cannot read \(path)") }
    do {
        if data.starts(with: Array("-----BEGIN".utf8)) { return try X509Certificate.pem(Array(data)) }
        return [try X509Certificate(der: Array(data))]
    } catch { throw CLIError("\(path): not a certificate (\(error))") }
}

/// A policy file.
func readPolicy(_ path: String) throws -> SNPPolicy {
    guard let data = FileManager.default.contents(atPath: path) else { throw CLIError("cannot read \(path)") }
    do { return try SNPPolicy(json: data) } catch { throw CLIError("\(path): \(error)") }
}

/// Prints each check with its verdict (or one JSON object), as `attest verify` and `tls
/// verify-cert` do.
func printChecks(
    _ checks: [SNPEvidenceVerifier.Check], json: Bool, report: SNPReport?, root: String?, rootIsGiven: Bool,
    policy: String?
) throws {
    let passed = !checks.isEmpty && checks.allSatisfy(\.passed)
    if json {
        var obj: [String: Any] = [
            "verdict": passed ? "pass" : "fail",
            "checks": checks.map { ["check": $0.name, "result": $0.passed ? "pass" : "fail", "detail": $0.detail] },
        ]
        if let report, report.bytes.count == SNPReport.size {
            obj["report"] = [
                "version": Int(report.version), "measurement": Hex.encode(report.measurement),
                "policy": String(format: "0x%llx", report.policy), "vmpl": Int(report.vmpl),
                "reported_tcb": "\(report.reportedTCB)", "chip_id": Hex.encode(report.chipID),
                "report_data": Hex.encode(report.reportData),
            ]
        }
        if let root { obj["root"] = ["name": root, "source": rootIsGiven ? "--root" : "AMD"] }
        obj["policy"] = policy ?? NSNull()
        print(try jsonLine(obj))
        return
    }
    for c in checks { print("\(c.passed ? "PASS" : "FAIL")  \(c.name): \(c.detail)") }
    if let root, rootIsGiven {
        print("note: the chain ends at \(root), a root given with --root, not one of AMD's")
    }
    if policy == nil {
        print(
            "note: no --policy: the measurement, guest policy bits, TCB minimum, VMPL and report data were not checked")
    }
    print(passed ? "verdict: all \(checks.count) checks pass" : "verdict: REFUSED")
}
