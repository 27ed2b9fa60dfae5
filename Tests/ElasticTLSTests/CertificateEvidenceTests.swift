import Testing

@testable import ElasticTLS

/// The evidence extension: what it holds, what REPORT_DATA binds, and what a parser refuses.
@Suite struct CertificateEvidenceTests {
    func sample(nonce: [UInt8]? = [9, 9]) -> CertificateEvidence {
        CertificateEvidence(
            platform: "sev-snp", report: [UInt8](repeating: 1, count: 1184), certificates: [2, 2], nonce: nonce,
            notBefore: 1_800_000_000, notAfter: 1_800_086_400, publicKeyHash: [UInt8](repeating: 3, count: 64))
    }

    @Test func itRoundTripsWithItsTagAndClaims() throws {
        for e in [sample(), sample(nonce: nil)] {
            let bytes = e.encoded
            #expect(Array(bytes.prefix(5)) == [0xda, 0x45, 0x4c, 0x41, 0x53], "CBOR tag 0x454C4153")
            #expect(try CertificateEvidence(decoding: bytes) == e)
        }
    }

    @Test func reportDataBindsEveryClaim() throws {
        let e = sample()
        let base = try e.expectedReportData()
        #expect(base.count == 64)
        var other = e
        other.publicKeyHash[0] ^= 1
        #expect(try other.expectedReportData() != base, "another key")
        other = e
        other.notAfter += 1
        #expect(try other.expectedReportData() != base, "another validity")
        other = e
        other.nonce = [9]
        #expect(try other.expectedReportData() != base, "another nonce")
        other = e
        other.report[0] = 0
        other.certificates = []
        #expect(try other.expectedReportData() == base, "the report and certificates are not claims")
    }

    @Test func malformedEvidenceIsRefused() throws {
        let good = sample()
        let cases: [CBOR] = [
            .map([(.text("platform"), .text("sev-snp"))]),  // untagged
            .tagged(7, .map([])),  // another tag
            .tagged(CertificateEvidence.tag, .map([(.text("platform"), .text("x"))])),  // claims missing
            .tagged(
                CertificateEvidence.tag,
                .map([
                    (.text("platform"), .text("sev-snp")), (.text("report"), .bytes([])),
                    (.text("pubkey-hash"), .bytes(CBOR.array([.unsigned(1), .bytes([0])]).encoded)),
                    (.text("validity"), .array([.unsigned(1), .unsigned(2)])),
                ])),  // SHA-256 id with a 1-byte hash
            .tagged(CertificateEvidence.tag, .map([(.text("surprise"), .unsigned(1))])),
        ]
        for c in cases {
            #expect(throws: CertificateEvidence.FormatError.self) { try CertificateEvidence(decoding: c.encoded) }
        }
        var cut = good.encoded
        cut.removeLast()
        #expect(throws: CertificateEvidence.FormatError.self) { try CertificateEvidence(decoding: cut) }
    }
}
