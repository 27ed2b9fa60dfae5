import CElasticRemoteKey
import COpenSSL
import ElasticControlClient
import ElasticCrypto
import Foundation

/// Issues X.509 v3 certificates (self-signed) and certificate requests for a key of the
/// mount's key store, carrying fresh attestation evidence that binds the key
/// (`CertificateEvidence`). Signed through the control file: the private key never leaves
/// the daemon.
public enum AttestedCertificate {
    /// What to put in the certificate besides the key and the evidence.
    public struct Subject: Sendable {
        public var commonName: String
        public var dnsNames: [String] = []
        public var ipAddresses: [String] = []
        public var days: Int = 30
        public var nonce: [UInt8]? = nil

        public init(commonName: String) { self.commonName = commonName }

        /// A subject named by `sans` (DNS names and IP addresses; the first is the common name
        /// unless one is given).
        public init(commonName: String?, sans: [String], fallbackName: String) {
            self.commonName = commonName ?? sans.first ?? fallbackName
            for san in sans {
                if isIPAddress(san) { ipAddresses.append(san) } else { dnsNames.append(san) }
            }
        }
    }

    /// Names of the platforms whose reports the evidence carries, by `elastic_platform` code.
    static func platformName(_ code: UInt32) throws -> String {
        switch code {
        case 1: return "sev-snp"
        case 2: return "sev-snp-simulator"
        default:
            throw TLSFailure(
                "attested certificates carry SEV-SNP reports; this mount's platform has none (code \(code))")
        }
    }

    /// Fresh evidence for `key` valid from `notBefore` for `subject.days` days.
    public static func evidence(for key: RemoteKey, subject: Subject, notBefore: UInt64, client: ControlClient)
        throws -> CertificateEvidence
    {
        guard (1...3650).contains(subject.days) else { throw TLSFailure("--days is 1 to 3650") }
        let notAfter = notBefore + UInt64(subject.days) * 86400
        let hash = try CertificateEvidence.hash(spki: try key.publicKey.publicKeyDER())
        let data = try CertificateEvidence.reportData(
            publicKeyHash: hash, notBefore: notBefore, notAfter: notAfter, nonce: subject.nonce)
        let e = try client.evidence(reportData: data)
        return CertificateEvidence(
            platform: try platformName(e.platform), report: e.report, certificates: e.certificates,
            nonce: subject.nonce, notBefore: notBefore, notAfter: notAfter, publicKeyHash: hash)
    }

    /// A self-signed certificate for `key`, valid from now, with fresh evidence.
    public static func issue(key: RemoteKey, subject: Subject, client: ControlClient) throws -> (
        certificate: X509Certificate, evidence: CertificateEvidence
    ) {
        let now = UInt64(Date().timeIntervalSince1970)
        let evidence = try evidence(for: key, subject: subject, notBefore: now, client: client)
        guard let x = X509_new_ex(CElasticRemoteKey_libctx(), nil) else { throw CryptoError.drain("X509_new_ex") }
        let cert = X509Certificate(taking: x)
        var serial = try Random.bytes(16)
        serial[0] &= 0x7F  // positive, 127 bits of randomness
        let serialOK = serial.withUnsafeBufferPointer { b -> Bool in
            guard let bn = BN_bin2bn(b.baseAddress, Int32(b.count), nil) else { return false }
            defer { BN_free(bn) }
            return BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != nil
        }
        guard X509_set_version(x, 2) == 1, serialOK,
            ASN1_TIME_set(X509_getm_notBefore(x), time_t(evidence.notBefore)) != nil,
            ASN1_TIME_set(X509_getm_notAfter(x), time_t(evidence.notAfter)) != nil,
            X509_set_pubkey(x, key.publicKey.pkey) == 1,
            try withName(subject.commonName, { X509_set_subject_name(x, $0) == 1 && X509_set_issuer_name(x, $0) == 1 })
        else { throw CryptoError.drain("certificate fields") }
        var ctx = X509V3_CTX()
        X509V3_set_ctx(&ctx, x, x, nil, nil, 0)
        for ext in try standardExtensions(subject, &ctx) + [try evidenceExtension(evidence)] {
            defer { X509_EXTENSION_free(ext) }
            guard X509_add_ext(x, ext, -1) == 1 else { throw CryptoError.drain("X509_add_ext") }
        }
        guard X509_sign(x, key.pkey, key.certificateDigest) > 0 else {
            throw CryptoError.drain("signing the certificate through the control file")
        }
        return (cert, evidence)
    }

    /// A certificate signing request (PKCS #10) for `key` with the same extensions, for a CA
    /// that copies them into the certificate it issues (within the evidence's validity).
    public static func request(key: RemoteKey, subject: Subject, client: ControlClient) throws -> (
        pem: [UInt8], evidence: CertificateEvidence
    ) {
        let now = UInt64(Date().timeIntervalSince1970)
        let evidence = try evidence(for: key, subject: subject, notBefore: now, client: client)
        guard let req = X509_REQ_new_ex(CElasticRemoteKey_libctx(), nil) else {
            throw CryptoError.drain("X509_REQ_new")
        }
        defer { X509_REQ_free(req) }
        guard X509_REQ_set_version(req, 0) == 1, X509_REQ_set_pubkey(req, key.publicKey.pkey) == 1,
            try withName(subject.commonName, { X509_REQ_set_subject_name(req, $0) == 1 })
        else { throw CryptoError.drain("request fields") }
        var ctx = X509V3_CTX()
        X509V3_set_ctx(&ctx, nil, nil, req, nil, 0)
        let exts = try standardExtensions(subject, &ctx) + [try evidenceExtension(evidence)]
        guard let stack = OPENSSL_sk_new_null() else { throw CryptoError.drain("OPENSSL_sk_new_null") }
        defer {
            OPENSSL_sk_free(stack)
            for e in exts { X509_EXTENSION_free(e) }
        }
        for e in exts { guard OPENSSL_sk_push(stack, UnsafeRawPointer(e)) > 0 else { throw CryptoError.drain("push") } }
        guard X509_REQ_add_extensions(req, stack) == 1 else {
            throw CryptoError.drain("X509_REQ_add_extensions")
        }
        guard X509_REQ_sign(req, key.pkey, key.certificateDigest) > 0 else {
            throw CryptoError.drain("signing the request through the control file")
        }
        guard let bio = BIO_new(BIO_s_mem()) else { throw CryptoError.drain("BIO_new") }
        defer { BIO_free(bio) }
        guard PEM_write_bio_X509_REQ(bio, req) == 1 else { throw CryptoError.drain("PEM_write_bio_X509_REQ") }
        return (readAll(bio), evidence)
    }

    /// A certificate as PEM.
    public static func pem(_ cert: X509Certificate) throws -> [UInt8] {
        guard let bio = BIO_new(BIO_s_mem()) else { throw CryptoError.drain("BIO_new") }
        defer { BIO_free(bio) }
        guard PEM_write_bio_X509(bio, cert.x509) == 1 else { throw CryptoError.drain("PEM_write_bio_X509") }
        return readAll(bio)
    }

    static func readAll(_ bio: OpaquePointer) -> [UInt8] {
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = BIO_read(bio, &chunk, Int32(chunk.count))
            if n <= 0 { break }
            out += chunk[0..<Int(n)]
        }
        return out
    }

    static func withName(_ cn: String, _ set: (OpaquePointer) -> Bool) throws -> Bool {
        guard !cn.isEmpty, cn.utf8.count <= 64 else { throw TLSFailure("the common name is 1 to 64 bytes") }
        guard let name = X509_NAME_new() else { throw CryptoError.drain("X509_NAME_new") }
        defer { X509_NAME_free(name) }
        guard X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, cn, -1, -1, 0) == 1 else {
            throw CryptoError.drain("the common name")
        }
        return set(name)
    }

    /// basicConstraints (critical, not a CA), keyUsage (critical, digitalSignature),
    /// extKeyUsage (server and client), subjectAltName, and a subject key identifier.
    static func standardExtensions(_ s: Subject, _ ctx: inout X509V3_CTX) throws -> [OpaquePointer] {
        for name in s.dnsNames {
            guard !name.isEmpty, name.utf8.count <= 253,
                name.utf8.allSatisfy({
                    $0 == 0x2E || $0 == 0x2D || $0 == 0x2A || (0x30...0x39).contains($0)
                        || (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0)
                })
            else { throw TLSFailure("\(name) is not a DNS name") }
        }
        for ip in s.ipAddresses {
            guard isIPAddress(ip) else { throw TLSFailure("\(ip) is not an IP address") }
        }
        var specs: [(Int32, String)] = [
            (NID_basic_constraints, "critical,CA:FALSE"), (NID_key_usage, "critical,digitalSignature"),
            (NID_ext_key_usage, "serverAuth,clientAuth"), (NID_subject_key_identifier, "hash"),
        ]
        let alt = s.dnsNames.map { "DNS:\($0)" } + s.ipAddresses.map { "IP:\($0)" }
        if !alt.isEmpty { specs.append((NID_subject_alt_name, alt.joined(separator: ","))) }
        var out: [OpaquePointer] = []
        for (nid, value) in specs {
            guard let ext = X509V3_EXT_conf_nid(nil, &ctx, nid, value) else {
                for e in out { X509_EXTENSION_free(e) }
                throw CryptoError.drain("extension \(value)")
            }
            out.append(ext)
        }
        return out
    }

    /// The evidence extension (not critical: TLS libraries refuse unknown critical extensions).
    static func evidenceExtension(_ e: CertificateEvidence) throws -> OpaquePointer {
        guard let obj = OBJ_txt2obj(CertificateEvidence.extensionOID, 1) else { throw CryptoError.drain("OID") }
        defer { ASN1_OBJECT_free(obj) }
        guard let value = ASN1_OCTET_STRING_new() else { throw CryptoError.drain("ASN1_OCTET_STRING_new") }
        defer { ASN1_OCTET_STRING_free(value) }
        let bytes = e.encoded
        guard ASN1_OCTET_STRING_set(value, bytes, Int32(bytes.count)) == 1,
            let ext = X509_EXTENSION_create_by_OBJ(nil, obj, 0, value)
        else { throw CryptoError.drain("the evidence extension") }
        return ext
    }
}
