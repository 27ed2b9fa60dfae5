import ElasticCrypto

/// The attestation evidence an attested certificate carries, in the TCG DICE
/// conceptual-message-wrapper extension (OID 2.23.133.5.4.9, not critical), as the
/// interoperable RA-TLS proposal lays it out: the extension's value is one tagged CBOR item.
/// Byte layout and rules in docs/tls.md.
///
/// The report's REPORT_DATA binds the certificate: it is SHA-512 of the CBOR claims map
/// `{"pubkey-hash": bstr(CBOR [8, SHA-512(SubjectPublicKeyInfo DER)]), "validity": [not-before,
/// not-after] (seconds since the epoch), ? "nonce": bstr}`, so the report names exactly one
/// key and one validity period, and a verifier recomputes the claims from the certificate itself.
public struct CertificateEvidence: Sendable, Equatable {
    /// `tcg-dice-conceptual-message-wrapper`.
    public static let extensionOID = "2.23.133.5.4.9"
    /// ELASTIC's CBOR tag for this evidence format (0x454C4153, "ELAS"; in the first-come
    /// first-served range, not registered with IANA).
    public static let tag: UInt64 = 0x454C_4153
    /// IANA named-information hash algorithm ID of SHA-512.
    public static let sha512ID: UInt64 = 8

    /// "sev-snp", or "sev-snp-simulator" for the firmware simulator's reports (never evidence
    /// of hardware: its root is trusted only when given explicitly).
    public var platform: String
    /// The 1184-byte ATTESTATION_REPORT.
    public var report: [UInt8]
    /// The host's certificate table (GUID table, as SNP_GET_EXT_REPORT returns it); empty: none.
    public var certificates: [UInt8]
    public var nonce: [UInt8]?
    /// The certificate's validity, seconds since the epoch.
    public var notBefore: UInt64
    public var notAfter: UInt64
    /// SHA-512 of the certificate's SubjectPublicKeyInfo (DER).
    public var publicKeyHash: [UInt8]

    public init(
        platform: String, report: [UInt8], certificates: [UInt8], nonce: [UInt8]?, notBefore: UInt64,
        notAfter: UInt64, publicKeyHash: [UInt8]
    ) {
        self.platform = platform
        self.report = report
        self.certificates = certificates
        self.nonce = nonce
        self.notBefore = notBefore
        self.notAfter = notAfter
        self.publicKeyHash = publicKeyHash
    }

    /// SHA-512 of `spki` (a SubjectPublicKeyInfo in DER).
    public static func hash(spki: [UInt8]) throws -> [UInt8] {
        let d = try Digest(.sha512)
        try spki.withUnsafeBytes { try d.update($0) }
        return try d.finish()
    }

    /// The claims the report binds.
    static func claims(publicKeyHash: [UInt8], notBefore: UInt64, notAfter: UInt64, nonce: [UInt8]?) -> CBOR {
        var pairs: [(CBOR, CBOR)] = [
            (.text("pubkey-hash"), .bytes(CBOR.array([.unsigned(sha512ID), .bytes(publicKeyHash)]).encoded)),
            (.text("validity"), .array([.unsigned(notBefore), .unsigned(notAfter)])),
        ]
        if let nonce { pairs.append((.text("nonce"), .bytes(nonce))) }
        return .map(pairs)
    }

    /// The REPORT_DATA a report for these claims must carry: SHA-512 of their CBOR encoding.
    public static func reportData(publicKeyHash: [UInt8], notBefore: UInt64, notAfter: UInt64, nonce: [UInt8]?)
        throws -> [UInt8]
    {
        let d = try Digest(.sha512)
        let claims = claims(publicKeyHash: publicKeyHash, notBefore: notBefore, notAfter: notAfter, nonce: nonce)
        try claims.encoded.withUnsafeBytes { try d.update($0) }
        return try d.finish()
    }

    /// The REPORT_DATA these claims give.
    public func expectedReportData() throws -> [UInt8] {
        try Self.reportData(publicKeyHash: publicKeyHash, notBefore: notBefore, notAfter: notAfter, nonce: nonce)
    }

    /// The extension's value: tag ‖ {"platform", "report", ? "certificates", "pubkey-hash", "validity", ? "nonce"}.
    public var encoded: [UInt8] {
        guard
            case .map(var pairs) = Self.claims(
                publicKeyHash: publicKeyHash, notBefore: notBefore, notAfter: notAfter, nonce: nonce)
        else { return [] }
        pairs += [(.text("platform"), .text(platform)), (.text("report"), .bytes(report))]
        if !certificates.isEmpty { pairs.append((.text("certificates"), .bytes(certificates))) }
        return CBOR.tagged(Self.tag, .map(pairs)).encoded
    }

    /// Why an extension value is not evidence in this format.
    public struct FormatError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Parses the extension's value.
    public init(decoding bytes: [UInt8]) throws {
        let value: CBOR
        do { value = try CBOR(decoding: bytes) } catch { throw FormatError(description: "not CBOR: \(error)") }
        guard case .tagged(let tag, let body) = value, tag == Self.tag, case .map(let pairs) = body else {
            throw FormatError(description: "not ELASTIC evidence (CBOR tag \(Self.tag) with a map)")
        }
        let known: Set<String> = ["platform", "report", "certificates", "pubkey-hash", "validity", "nonce"]
        for (k, _) in pairs {
            guard let name = k.textValue, known.contains(name) else {
                throw FormatError(description: "an unknown claim (\(k))")
            }
        }
        guard let platform = body["platform"]?.textValue, let report = body["report"]?.bytesValue,
            let hashEntry = body["pubkey-hash"]?.bytesValue,
            case .array(let validity)? = body["validity"], validity.count == 2,
            let notBefore = validity[0].unsignedValue, let notAfter = validity[1].unsignedValue
        else { throw FormatError(description: "a claim is missing or of the wrong type") }
        guard notBefore <= notAfter, notAfter <= UInt64(Int64.max) else {
            throw FormatError(description: "validity is not a period of seconds since the epoch")
        }
        guard case .array(let entry) = try CBOR(decoding: hashEntry), entry.count == 2,
            entry[0].unsignedValue == Self.sha512ID, let hash = entry[1].bytesValue, hash.count == 64
        else { throw FormatError(description: "pubkey-hash is not [8, SHA-512 digest]") }
        let certificates = body["certificates"].map { $0.bytesValue } ?? []
        guard let certificates else { throw FormatError(description: "certificates is not a byte string") }
        let nonce = body["nonce"].map { $0.bytesValue }
        if let nonce, nonce == nil { throw FormatError(description: "nonce is not a byte string") }
        self.init(
            platform: platform, report: report, certificates: certificates, nonce: nonce ?? nil,
            notBefore: notBefore, notAfter: notAfter, publicKeyHash: hash)
    }
}
