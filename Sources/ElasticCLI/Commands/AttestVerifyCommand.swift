import ArgumentParser
import ElasticCrypto
import ElasticPlatform
import ElasticRuntime
import Foundation

/// `elastic attest verify --report FILE [--vcek FILE | --certs DIR] [--root FILE] [--policy FILE]
/// [--json]`: checks an SEV-SNP report as a remote verifier does and prints every check with
/// its verdict; exit 0 only when all pass (23 when one fails). docs/attestation.md.
struct AttestVerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check an SEV-SNP attestation report: signature, AMD certificate chain, TCB, chip and a policy.")
    @Option(name: .customLong("report"), help: "The report: 1,184 bytes, or their hex.") var report: String
    @Option(name: .customLong("vcek"), help: "The VCEK (or VLEK) certificate, PEM or DER.") var vcek: String?
    @Option(
        name: .customLong("certs"),
        help: "A directory with vcek|vlek, ask|asvk (.pem or .der) or cert_chain.pem, as snpguest writes them.")
    var certs: String?
    @Option(
        name: .customLong("root"),
        help: "Trust this root too, for this run only (PEM or DER; the simulator's root, say). AMD's are built in.")
    var roots: [String] = []
    @Option(name: .customLong("policy"), help: "A JSON policy file (docs/attestation.md).") var policy: String?
    @Flag(name: .customLong("json"), help: "Print one JSON object with every check.") var json = false

    func run() throws {
        let reportBytes = try readReport(report)
        let parsed = SNPReport(bytes: reportBytes)
        let vlek = reportBytes.count == SNPReport.size && parsed.signingKey == 1
        let (endorsement, intermediate) = try evidenceCertificates(vlek: vlek)
        let given = try roots.flatMap { try certificates(at: $0) }
        let amd = try AMDCertificateAuthorities.all.flatMap { try X509Certificate.pem(Array($0.arkPEM.utf8)) }
        let rules = try policy.map(readPolicy)
        var checks: [SNPEvidenceVerifier.Check] = []
        var root: String?
        do {
            try parsed.checkFormat()
            checks.append(
                SNPEvidenceVerifier.Check(
                    name: "report format", passed: true, detail: "version \(parsed.version), ECDSA P-384",
                    failure: nil))
            let evidence = SNPEvidenceVerifier(roots: amd + given).checks(
                report: parsed, endorsement: endorsement, intermediate: intermediate)
            checks += evidence.checks
            root = evidence.root
            checks += rules?.checks(parsed) ?? []
        } catch {
            checks.append(
                SNPEvidenceVerifier.Check(name: "report format", passed: false, detail: "\(error)", failure: nil))
        }
        let rootIsGiven = root != nil && !amd.contains { $0.subjectCommonName == root && intermediate.isSigned(by: $0) }
        let passed = checks.allSatisfy(\.passed)
        try printChecks(
            checks, json: json, report: reportBytes.count == SNPReport.size ? parsed : nil, root: root,
            rootIsGiven: rootIsGiven, policy: policy)
        if !passed { throw ExitCode(ElasticExitCode.evidenceRefused.rawValue) }
    }

    /// The report's bytes: the binary report, or its hex (whitespace ignored).
    func readReport(_ path: String) throws -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else { throw CLIError("cannot read \(path)") }
        if data.count == SNPReport.size { return Array(data) }
        let text = String(decoding: data, as: UTF8.self).filter { !$0.isWhitespace }
        guard let bytes = Hex.decode(text), bytes.count == SNPReport.size else {
            throw CLIError("\(path): not an SEV-SNP report (\(SNPReport.size) bytes, or their hex)")
        }
        return bytes
    }

    /// The endorsement certificate and its intermediate: from the options, a certificate
    /// directory, or AMD's intermediates (matched by issuer).
    func evidenceCertificates(vlek: Bool) throws -> (X509Certificate, X509Certificate) {
        func inDirectory(_ names: [String]) throws -> X509Certificate? {
            guard let certs else { return nil }
            for n in names {
                let path = (certs as NSString).appendingPathComponent(n)
                if FileManager.default.fileExists(atPath: path) { return try certificates(at: path).first }
            }
            return nil
        }
        let endorsement: X509Certificate
        if let vcek {
            guard let c = try certificates(at: vcek).first else { throw CLIError("\(vcek): no certificate") }
            endorsement = c
        } else if let c = try inDirectory(
            vlek ? ["vlek.der", "vlek.pem", "vcek.der", "vcek.pem"] : ["vcek.der", "vcek.pem", "vlek.der", "vlek.pem"])
        {
            endorsement = c
        } else {
            throw CLIError("no endorsement certificate: give --vcek FILE or --certs DIR (with vcek.pem or vcek.der)")
        }
        if let c = try inDirectory(
            vlek
                ? ["asvk.der", "asvk.pem", "cert_chain.pem", "ask.der", "ask.pem"]
                : ["ask.der", "ask.pem", "cert_chain.pem", "asvk.der", "asvk.pem"])
        {
            return (endorsement, c)
        }
        let known = try AMDIntermediates.allPEM.flatMap { try X509Certificate.pem(Array($0.utf8)) }
        guard let issuer = endorsement.issuerCommonName, let c = known.first(where: { $0.subjectCommonName == issuer })
        else {
            throw CLIError(
                "no intermediate for \(endorsement.issuerCommonName ?? "the certificate"): give --certs DIR with ask.pem"
            )
        }
        return (endorsement, c)
    }
}
