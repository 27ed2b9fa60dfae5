import ElasticCrypto
import Foundation
import Testing

@testable import ElasticPlatform

/// Report verification against AMD's real certificate authorities and the simulator's chain.
@Suite struct EvidenceVerifierTests {
    /// AMD's chains as KDS serves them (copied from KDS into Fixtures: public data).
    func fixture(_ name: String) throws -> [X509Certificate] {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
        return try X509Certificate.pem(Array(try Data(contentsOf: dir.appendingPathComponent(name))))
    }

    @Test func amdsIntermediatesChainToTheirRootsWithPSS() throws {
        for product in ["milan", "genoa", "turin"] {
            for kind in ["vcek", "vlek"] {
                let chain = try fixture("\(product)-\(kind)-chain.pem")
                #expect(chain.count == 2)
                let (intermediate, root) = (chain[0], chain[1])
                #expect(root.isSigned(by: root) && intermediate.isSigned(by: root), "\(product) \(kind)")
                #expect(root.subjectCommonName == "ARK-\(product.capitalized)")
                #expect(intermediate.subjectCommonName == (kind == "vcek" ? "SEV-" : "SEV-VLEK-") + product.capitalized)
                #expect(!root.isSigned(by: intermediate))
                var flipped = intermediate.der
                flipped[flipped.count - 10] ^= 1  // inside the signature
                #expect(!(try X509Certificate(der: flipped)).isSigned(by: root), "a changed signature fails")
            }
        }
        // The embedded authorities are the same certificates.
        for p in AMDCertificateAuthorities.all {
            let embedded = try X509Certificate.pem(Array(p.arkPEM.utf8))[0]
            #expect(embedded.der == (try fixture("\(p.name.lowercased())-vcek-chain.pem"))[1].der)
        }
        #expect(throws: CryptoError.self) {
            try X509Certificate(der: (try fixture("milan-vcek-chain.pem"))[0].der + [0])
        }
    }

    @Test func hardwareIDsAreReadInBothEncodings() {
        let id = [UInt8](repeating: 0x04, count: 64)  // raw, and starting like an OCTET STRING tag
        #expect(SNPEvidenceVerifier.derOctets(id) == id)
        #expect(SNPEvidenceVerifier.derOctets([0x04, 64] + id) == id)
        #expect(SNPEvidenceVerifier.derOctets([0x04, 8] + id.prefix(8)) == Array(id.prefix(8)))
        #expect(SNPEvidenceVerifier.derOctets([0x04, 63] + id.prefix(63)) == nil)
    }

    @Test func aSimulatedReportVerifiesThroughItsChainAndOnlyThere() throws {
        var s = try SNPSimulator.State.fresh()
        let arkDER = try s.installCertificateChain()
        let sim = SNPSimulator(state: s)
        let g = SNPGuest(transport: sim)
        let data = [UInt8](repeating: 0x5A, count: 64)
        let e = try g.extendedReport(reportData: data, vmpl: 0)
        let vcek = try X509Certificate(der: try #require(e.certificates.certificate("vcek")))
        let ask = try X509Certificate(der: try #require(e.certificates.certificate("ask")))
        let verifier = SNPEvidenceVerifier(roots: [try X509Certificate(der: arkDER)])
        let v = try verifier.verify(report: e.report, endorsement: vcek, intermediate: ask)
        #expect(
            v.endorsement == "VCEK" && v.root == "ARK-Genoa ELASTIC SIMULATOR (not AMD)" && v.report.reportData == data)
        // AMD's roots do not vouch for the simulator.
        #expect(throws: SNPEvidenceVerifier.Failure.self) {
            try SNPEvidenceVerifier.amd().verify(report: e.report, endorsement: vcek, intermediate: ask)
        }
        // A changed report byte breaks the signature.
        var bytes = e.report.bytes
        bytes[0x50] ^= 1
        #expect(throws: SNPEvidenceVerifier.Failure.badSignature) {
            try verifier.verify(report: SNPReport(bytes: bytes), endorsement: vcek, intermediate: ask)
        }
        // The host's TCB moves on but the certificate is the old one: refused, naming the SPL.
        var later = sim.state
        later.reportedTCB += 1 << 56
        let newer = try SNPGuest(transport: SNPSimulator(state: later)).report(reportData: data, vmpl: 0)
        #expect {
            try verifier.verify(report: newer, endorsement: vcek, intermediate: ask)
        } throws: { "\($0)".contains("microcode SPL") }
        // The VM on another chip with this chip's certificate: the signature already fails.
        var moved = sim.state
        try moved.moveToAnotherChip()
        let elsewhere = try SNPGuest(transport: SNPSimulator(state: moved)).report(reportData: data, vmpl: 0)
        #expect(throws: SNPEvidenceVerifier.Failure.self) {
            try verifier.verify(report: elsewhere, endorsement: vcek, intermediate: ask)
        }
        // An intermediate that the root did not sign.
        #expect(throws: SNPEvidenceVerifier.Failure.self) {
            try verifier.verify(report: e.report, endorsement: vcek, intermediate: vcek)
        }
    }
}
