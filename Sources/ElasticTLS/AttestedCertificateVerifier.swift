import COpenSSL
import ElasticCrypto
import ElasticPlatform
import Foundation

/// Checks an attested certificate from anyone, the way a TLS peer does: the certificate is
/// within its validity; its evidence extension parses; the evidence binds exactly this
/// certificate's key and validity (REPORT_DATA); a self-issued certificate is signed by its own
/// key; the SEV-SNP report verifies up to a trusted root (AMD's, or one given explicitly); and
/// the report satisfies the policy. Every check is reported with its verdict.
public struct AttestedCertificateVerifier: Sendable {
    public typealias Check = SNPEvidenceVerifier.Check

    /// Trusted roots: AMD's ARKs plus the ones given (a simulator's root only this way).
    public var roots: [X509Certificate]
    /// The endorsement (VCEK or VLEK) and intermediate certificates to use instead of the ones
    /// the evidence carries (or AMD's intermediates, matched by issuer).
    public var endorsement: X509Certificate?
    public var intermediate: X509Certificate?
    public var policy: SNPPolicy?
    /// The time the certificate must be valid at (nil: the moment each is verified; a server
    /// verifies clients long after it made its verifier).
    public var now: Date? = nil
    /// A nonce the evidence must carry (a verifier's challenge, for freshness).
    public var expectedNonce: [UInt8]?
    /// The certification authority of a certificate that is not self-issued (offline checks).
    public var authority: X509Certificate?
    /// Whether the peer proved it holds the certificate's key (a TLS handshake): then the
    /// signature on the certificate adds nothing, and one a CA issued needs no `authority`.
    public var keyProvenByHandshake = false

    public init(givenRoots: [X509Certificate] = [], policy: SNPPolicy? = nil) throws {
        roots =
            try AMDCertificateAuthorities.all.flatMap { try X509Certificate.pem(Array($0.arkPEM.utf8)) } + givenRoots
        self.policy = policy
    }

    /// What `verify` found.
    public struct Result: Sendable {
        public var checks: [Check] = []
        public var report: SNPReport?
        public var evidence: CertificateEvidence?
        /// The trusted root the chain ended at.
        public var root: String?
        public var passed: Bool { !checks.isEmpty && checks.allSatisfy(\.passed) }
    }

    public func verify(_ cert: X509Certificate) -> Result {
        var r = Result()
        func pass(_ name: String, _ detail: String) { r.checks.append(Check(name: name, passed: true, detail: detail)) }
        func fail(_ name: String, _ detail: String) {
            r.checks.append(Check(name: name, passed: false, detail: detail))
        }
        let subject = cert.subjectCommonName ?? "(no common name)"
        let t = Int64((now ?? Date()).timeIntervalSince1970)
        if let nb = cert.notBefore, let na = cert.notAfter, nb <= t, t <= na {
            pass("validity", "\(subject): valid until \(Self.date(na))")
        } else if let na = cert.notAfter, t > na {
            fail("validity", "\(subject): expired at \(Self.date(na))")
        } else {
            fail("validity", "\(subject): not valid yet (or no validity)")
        }
        guard let value = cert.extensionValue(oid: CertificateEvidence.extensionOID) else {
            fail("evidence", "no attestation evidence (extension \(CertificateEvidence.extensionOID))")
            return r
        }
        let evidence: CertificateEvidence
        do { evidence = try CertificateEvidence(decoding: value) } catch {
            fail("evidence", "\(error)")
            return r
        }
        r.evidence = evidence
        pass("evidence", "\(evidence.platform) report, \(evidence.certificates.isEmpty ? "no" : "with") certificates")
        // The binding: this certificate's key and validity are the ones the report names.
        let spki = (try? cert.publicKey().publicKeyDER()) ?? []
        if let hash = try? CertificateEvidence.hash(spki: spki), hash == evidence.publicKeyHash {
            pass("key binding", "the evidence names this certificate's public key")
        } else {
            fail("key binding", "the evidence names another public key (a certificate re-used with a different key)")
        }
        if let nb = cert.notBefore, let na = cert.notAfter, let enb = Int64(exactly: evidence.notBefore),
            let ena = Int64(exactly: evidence.notAfter), nb >= enb, na <= ena
        {
            pass("validity binding", "the certificate's validity lies within the one the evidence names")
        } else {
            fail("validity binding", "the certificate is valid outside the period the evidence names")
        }
        let report = SNPReport(bytes: evidence.report)
        r.report = report
        if evidence.report.count == SNPReport.size, let expected = try? evidence.expectedReportData(),
            report.reportData == expected
        {
            pass(
                "report data",
                "REPORT_DATA is SHA-512 of the claims (key, validity\(evidence.nonce == nil ? "" : ", nonce"))")
        } else {
            fail(
                "report data", "the report's REPORT_DATA does not bind these claims (tampered, or another key's report)"
            )
        }
        if let expectedNonce {
            if evidence.nonce == expectedNonce {
                pass("nonce", "the evidence carries the expected nonce")
            } else {
                fail("nonce", "the evidence does not carry the expected nonce (not fresh, or another verifier's)")
            }
        }
        // Self-issued: the whole issuer name is the subject's (an attested certificate has no
        // keyCertSign usage, so X509_check_issued would not say so).
        if X509_NAME_cmp(X509_get_issuer_name(cert.x509), X509_get_subject_name(cert.x509)) == 0 {
            if cert.isSigned(by: cert) {
                pass("certificate signature", "self-signed by the attested key")
            } else {
                fail("certificate signature", "the self-signed certificate does not verify with its own key")
            }
        } else if let authority {
            if cert.isSigned(by: authority) {
                pass("certificate signature", "issued by \(authority.subjectCommonName ?? "the given CA")")
            } else {
                fail("certificate signature", "not signed by the given CA")
            }
        } else if keyProvenByHandshake {
            pass("certificate signature", "issued by \(cert.issuerCommonName ?? "a CA"); the handshake proved the key")
        } else {
            fail(
                "certificate signature",
                "issued by \(cert.issuerCommonName ?? "a CA"), not self-signed: give that CA (--ca) to check it")
        }
        do {
            try report.checkFormat()
            let (endorsement, intermediate) = try chain(for: evidence, report: report)
            let e = SNPEvidenceVerifier(roots: roots).checks(
                report: report, endorsement: endorsement, intermediate: intermediate)
            r.checks += e.checks
            r.root = e.root
        } catch {
            fail("report", "\(error)")
        }
        if let policy {
            if report.bytes.count == SNPReport.size {
                r.checks += policy.checks(report)
            } else {
                fail("policy", "no report of the right size to check")
            }
        }
        return r
    }

    /// The endorsement and intermediate certificates: given, from the evidence's certificate
    /// table, or AMD's intermediate matched by issuer.
    func chain(for evidence: CertificateEvidence, report: SNPReport) throws -> (X509Certificate, X509Certificate) {
        let table = evidence.certificates.isEmpty ? nil : try SNPCertificateTable(parsing: evidence.certificates)
        let vlek = report.signingKey == 1
        let endorsement =
            try endorsement
            ?? table?.certificate(vlek ? "vlek" : "vcek").map { try X509Certificate(der: $0) }
        guard let endorsement else {
            throw TLSFailure(
                "the evidence carries no \(vlek ? "VLEK" : "VCEK") certificate: give one (--vcek FILE)")
        }
        if let intermediate { return (endorsement, intermediate) }
        if let der = table?.certificate("ask") { return (endorsement, try X509Certificate(der: der)) }
        let known = try AMDIntermediates.allPEM.flatMap { try X509Certificate.pem(Array($0.utf8)) }
        guard let issuer = endorsement.issuerCommonName, let c = known.first(where: { $0.subjectCommonName == issuer })
        else {
            throw TLSFailure("no intermediate certificate for \(endorsement.issuerCommonName ?? "?")")
        }
        return (endorsement, c)
    }

    static func date(_ seconds: Int64) -> String {
        let f = ISO8601DateFormatter()
        return f.string(from: Date(timeIntervalSince1970: TimeInterval(seconds)))
    }
}
