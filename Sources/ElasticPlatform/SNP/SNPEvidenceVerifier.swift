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

    /// Verifies `report` against its endorsement certificate and the intermediate that issued it
    /// (both from the host's certificate table, or from AMD's KDS).
    public func verify(report: SNPReport, endorsement: X509Certificate, intermediate: X509Certificate) throws
        -> Verified
    {
        try report.checkFormat()
        let kind: String
        switch report.signingKey {
        case 0: kind = "VCEK"
        case 1: kind = "VLEK"
        default: throw Failure.unsigned
        }
        guard let root = roots.first(where: { intermediate.isSigned(by: $0) && $0.isSigned(by: $0) }) else {
            throw Failure.untrustedChain(
                "\(intermediate.subjectCommonName ?? "the intermediate") is not signed by a trusted root")
        }
        let expectedIntermediate = kind == "VCEK" ? "SEV-" : "SEV-VLEK-"
        guard let cn = intermediate.subjectCommonName, cn.hasPrefix(expectedIntermediate),
            kind == "VLEK" || !cn.hasPrefix("SEV-VLEK-")
        else {
            throw Failure.untrustedChain(
                "a \(kind)-signed report needs a \(expectedIntermediate)<product> intermediate")
        }
        guard endorsement.isSigned(by: intermediate) else {
            throw Failure.untrustedChain("the \(kind) certificate is not signed by \(cn)")
        }
        let key = try ECDSAP384(publicKey: try endorsement.publicKey())
        let sig = report.signature
        guard key.verify(report.signedBytes, r: sig.r, s: sig.s) else { throw Failure.badSignature }
        // The certificate is for the TCB the report was signed at, and (VCEK) for this chip.
        let tcb = report.reportedTCB
        let expected: [(String, String, UInt8)] = [
            ("boot loader", Self.blSPL, tcb.bootloader), ("TEE", Self.teeSPL, tcb.tee), ("SNP", Self.snpSPL, tcb.snp),
            ("microcode", Self.ucodeSPL, tcb.microcode),
        ]
        for (name, oid, value) in expected {
            guard let ext = endorsement.extensionValue(oid: oid), let spl = Self.derInteger(ext) else {
                throw Failure.mismatch("no \(name) SPL extension")
            }
            guard spl == Int(value) else {
                throw Failure.mismatch("\(name) SPL \(spl), the report's reported TCB has \(value)")
            }
        }
        if kind == "VCEK" {
            guard let ext = endorsement.extensionValue(oid: Self.hwID), let id = Self.derOctets(ext) else {
                throw Failure.mismatch("no hardware ID extension")
            }
            let chip = report.tcbLayout == .turin ? Array(report.chipID.prefix(8)) : report.chipID
            if !report.chipID.allSatisfy({ $0 == 0 }) && id != chip {
                throw Failure.mismatch("the certificate is for another chip")
            }
        }
        return Verified(report: report, endorsement: kind, root: root.subjectCommonName ?? "")
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
