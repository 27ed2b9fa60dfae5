import ElasticCrypto

/// Checks an SEV-SNP attestation report the way a remote verifier does (docs/platform.md §3.4):
/// the endorsement key's certificate (VCEK, or VLEK) chains through AMD's intermediate (ASK, or
/// ASVK) to a trusted root (ARK); the report's signature verifies with that key; and the
/// certificate's TCB and chip-ID extensions match the report. Everything it is given is hostile.
public struct SNPEvidenceVerifier: Sendable {
    /// Trusted roots: AMD's ARKs by default.
    public let roots: [X509Certificate]

    /// KDS extension OIDs of V[CL]EK certificates (AMD 57230): SPLs and the chip ID.
    static let blSPL = "1.3.6.1.4.1.3704.1.3.1", teeSPL = "1.3.6.1.4.1.3704.1.3.2"
    static let snpSPL = "1.3.6.1.4.1.3704.1.3.3", ucodeSPL = "1.3.6.1.4.1.3704.1.3.8"
    static let hwID = "1.3.6.1.4.1.3704.1.4"

    public init(roots: [X509Certificate]) { self.roots = roots }

    /// AMD's roots for Milan, Genoa and Turin.
    public static func amd() throws -> SNPEvidenceVerifier {
        SNPEvidenceVerifier(
            roots: try AMDCertificateAuthorities.all.flatMap { try X509Certificate.pem(Array($0.arkPEM.utf8)) })
    }

    /// What a verified report says, besides its fields.
    public struct Verified: Sendable {
        public let report: SNPReport
        /// "VCEK" or "VLEK".
        public let endorsement: String
        /// The root's common name (e.g. "ARK-Genoa").
        public let root: String
    }

    public enum Failure: Error, Equatable, CustomStringConvertible {
        case unsigned
        case untrustedChain(String)
        case badSignature
        case mismatch(String)

        public var description: String {
            switch self {
            case .unsigned: return "the report is not signed (the host masked the chip key and installed no VLEK)"
            case .untrustedChain(let why): return "the certificate chain is not trusted: \(why)"
            case .badSignature: return "the report's signature does not verify with the endorsement key"
            case .mismatch(let why): return "the endorsement certificate does not match the report: \(why)"
            }
        }
    }

    /// One check of the evidence and its verdict (what `elastic attest verify` prints).
    public struct Check: Sendable {
        public let name: String
        public let passed: Bool
        public let detail: String
        /// Why it failed, as `verify` throws it.
        public let failure: Failure?

        public init(name: String, passed: Bool, detail: String, failure: Failure? = nil) {
            self.name = name
            self.passed = passed
            self.detail = detail
            self.failure = failure
        }

        static func pass(_ name: String, _ detail: String) -> Check {
            Check(name: name, passed: true, detail: detail, failure: nil)
        }
        static func fail(_ name: String, _ failure: Failure) -> Check {
            Check(name: name, passed: false, detail: failure.description, failure: failure)
        }
    }

    /// Verifies `report` against its endorsement certificate and the intermediate that issued it
    /// (both from the host's certificate table, or from AMD's KDS); throws the first failure.
    public func verify(report: SNPReport, endorsement: X509Certificate, intermediate: X509Certificate) throws
        -> Verified
    {
        try report.checkFormat()
        let result = checks(report: report, endorsement: endorsement, intermediate: intermediate)
        if let failed = result.checks.first(where: { !$0.passed }) { throw failed.failure ?? .unsigned }
        return Verified(report: report, endorsement: result.endorsement ?? "", root: result.root ?? "")
    }

    /// Every check of the evidence, each with its verdict: signing key, chain, signature, the
    /// certificate's TCB and (VCEK) chip ID against the report. A check whose premise failed
    /// (no trusted chain: the key cannot be trusted) still runs and reports on its own terms.
    public func checks(report: SNPReport, endorsement: X509Certificate, intermediate: X509Certificate) -> (
        checks: [Check], endorsement: String?, root: String?
    ) {
        var out: [Check] = []
        let kind: String?
        switch report.signingKey {
        case 0: kind = "VCEK"
        case 1: kind = "VLEK"
        default: kind = nil
        }
        if let kind {
            out.append(.pass("signing key", "the report is signed by the chip's \(kind)"))
        } else {
            out.append(.fail("signing key", .unsigned))
        }
        // The chain: intermediate ← trusted root, endorsement ← intermediate.
        let root = roots.first(where: { intermediate.isSigned(by: $0) && $0.isSigned(by: $0) })
        let expectedIntermediate = kind == "VLEK" ? "SEV-VLEK-" : "SEV-"
        let cn = intermediate.subjectCommonName ?? ""
        if root == nil {
            out.append(
                .fail(
                    "certificate chain",
                    .untrustedChain("\(cn.isEmpty ? "the intermediate" : cn) is not signed by a trusted root")))
        } else if !cn.hasPrefix(expectedIntermediate) || (kind != "VLEK" && cn.hasPrefix("SEV-VLEK-")) {
            out.append(
                .fail(
                    "certificate chain",
                    .untrustedChain(
                        "a \(kind ?? "VCEK")-signed report needs a \(expectedIntermediate)<product> intermediate")))
        } else if !endorsement.isSigned(by: intermediate) {
            out.append(
                .fail(
                    "certificate chain",
                    .untrustedChain("the \(kind ?? "endorsement") certificate is not signed by \(cn)")))
        } else {
            out.append(
                .pass(
                    "certificate chain",
                    "\(kind ?? "endorsement") ← \(cn) ← \(root?.subjectCommonName ?? "root")"))
        }
        // The signature, with the endorsement key. R and S are 72-byte little-endian fields of
        // which a P-384 scalar takes the low 48 bytes: the rest must be zero (one report, one
        // encoding).
        let padding = report.bytes[(0x2A0 + 48)..<(0x2A0 + 72)] + report.bytes[(0x2A0 + 72 + 48)..<(0x2A0 + 144)]
        if padding.allSatisfy({ $0 == 0 }), let key = try? ECDSAP384(publicKey: try endorsement.publicKey()),
            key.verify(report.signedBytes, r: report.signature.r, s: report.signature.s)
        {
            out.append(.pass("signature", "ECDSA P-384 over the report verifies with the \(kind ?? "endorsement") key"))
        } else {
            out.append(.fail("signature", .badSignature))
        }
        // The certificate is for the TCB the report was signed at, and (VCEK) for this chip.
        let tcb = report.reportedTCB
        let expected: [(String, String, UInt8)] = [
            ("boot loader", Self.blSPL, tcb.bootloader), ("TEE", Self.teeSPL, tcb.tee), ("SNP", Self.snpSPL, tcb.snp),
            ("microcode", Self.ucodeSPL, tcb.microcode),
        ]
        var tcbFailure: Failure?
        for (name, oid, value) in expected where tcbFailure == nil {
            guard let ext = endorsement.extensionValue(oid: oid), let spl = Self.derInteger(ext) else {
                tcbFailure = .mismatch("no \(name) SPL extension")
                continue
            }
            if spl != Int(value) {
                tcbFailure = .mismatch("\(name) SPL \(spl), the report's reported TCB has \(value)")
            }
        }
        if let tcbFailure {
            out.append(.fail("certificate TCB", tcbFailure))
        } else {
            out.append(.pass("certificate TCB", "the certificate is for the reported TCB (\(tcb))"))
        }
        if kind == "VCEK" {
            let chip = report.tcbLayout == .turin ? Array(report.chipID.prefix(8)) : report.chipID
            if let ext = endorsement.extensionValue(oid: Self.hwID), let id = Self.derOctets(ext) {
                if report.chipID.allSatisfy({ $0 == 0 }) {
                    out.append(.pass("chip ID", "masked in the report (MASK_CHIP_ID): the VCEK still names one chip"))
                } else if id == chip {
                    out.append(.pass("chip ID", "the VCEK is this chip's"))
                } else {
                    out.append(.fail("chip ID", .mismatch("the certificate is for another chip")))
                }
            } else {
                out.append(.fail("chip ID", .mismatch("no hardware ID extension")))
            }
        }
        return (out, kind, root?.subjectCommonName)
    }

    /// A small DER INTEGER (the SPL extensions).
    static func derInteger(_ b: [UInt8]) -> Int? {
        guard b.count >= 3, b[0] == 0x02, Int(b[1]) == b.count - 2, b.count <= 6 else { return nil }
        return b[2...].reduce(0) { $0 << 8 | Int($1) }
    }

    /// The hardware ID of a VCEK certificate: a DER OCTET STRING of 64 (Turin: 8) bytes, or
    /// those bytes raw (older certificates); nil for anything else.
    static func derOctets(_ b: [UInt8]) -> [UInt8]? {
        if b.count == 64 || b.count == 8 { return b }
        if b.count == 2 + 8, b[0] == 0x04, b[1] == 8 { return Array(b[2...]) }
        if b.count == 2 + 64, b[0] == 0x04, b[1] == 64 { return Array(b[2...]) }
        return nil
    }

    /// The DER extension values a V[CL]EK certificate carries for `tcb` and `chipID` (the
    /// simulator issues them).
    public static func endorsementExtensions(tcb: TCBVersion, chipID: [UInt8]?) -> [(
        oid: String, der: [UInt8], critical: Bool
    )] {
        func integer(_ v: UInt8) -> [UInt8] { v < 0x80 ? [0x02, 0x01, v] : [0x02, 0x02, 0x00, v] }
        var out: [(oid: String, der: [UInt8], critical: Bool)] = [
            (blSPL, integer(tcb.bootloader), false), (teeSPL, integer(tcb.tee), false),
            (snpSPL, integer(tcb.snp), false),
            (ucodeSPL, integer(tcb.microcode), false),
        ]
        if let chipID { out.append((hwID, [0x04, UInt8(chipID.count)] + chipID, false)) }
        return out
    }
}
