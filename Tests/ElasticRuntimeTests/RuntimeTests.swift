import ElasticFormat
import ElasticPlatform
import ElasticRuntime
import ElasticSystem
import Testing

@Suite struct RuntimeTests {
    @Test func everySealingPlatformHasTheSlotNameTheFormatDerivesItsLabelFrom() {
        for p in PlatformRegistry.sealing {
            #expect(KeySlot.sealedPlatformNames[p.slotCode] == p.name, "slot code \(p.slotCode)")
            #expect(p.slotCode >= 3, "codes 1 and 2 are key files and passphrases")
        }
        #expect(Set(PlatformRegistry.sealing.map(\.slotCode)).count == PlatformRegistry.sealing.count)
        #expect(KeyLabels.sealedSlot(platform: "snp") == "elastic/v1/slot/snp", "existing SNP slots keep their label")
    }

    @Test func bothExecutablesMapStoreErrorsToTheSameExitCodes() {
        #expect(ElasticExitCode.forStoreError(SEVError.invalidRequest("no /dev/sev-guest")) == .keySource)
        #expect(
            ElasticExitCode.forStoreError(SEVError.unavailable(path: "/dev/sev-guest", errno: .noSuchFileOrDirectory))
                == .keySource)
        #expect(ElasticExitCode.forStoreError(Passphrase.Failure.empty) == .keySource)
        #expect(ElasticExitCode.forStoreError(FormatError.wrongKey("x")) == .wrongKey)
        #expect(ElasticExitCode.forStoreError(FormatError.corruptConfig("x")) == .badStore)
        #expect(ElasticExitCode.forStoreError(FormatError.unsupportedVersion(9)) == .unsupportedStore)
    }

    @Test func snpSlotParametersRoundTripAndRefuseHostileBytes() throws {
        let p = SNPSealParameters(
            rootKey: .firmwareDefault, fields: GuestFieldSelect([.measurement, .tcbVersion]).rawValue, vmpl: 1,
            guestSVN: 2,
            tcbVersion: 0x1500_0000_0000_0304, policy: 0x30000, measurement: Array(repeating: 7, count: 48))
        #expect(p.encoded.count == SNPSealParameters.encodedSize)
        #expect(try SNPSealParameters(encoded: p.encoded) == p)
        // Byte layout of existing stores: VMPL and guest SVN big-endian, the firmware's fields little-endian.
        #expect(Array(p.encoded[9..<17]) == [0, 0, 0, 1, 0, 0, 0, 2])
        #expect(Array(p.encoded[17..<25]) == [4, 3, 0, 0, 0, 0, 0, 0x15])
        var bad = p.encoded
        for selector: UInt8 in [3, 5, 6, 8] {  // KEY_SEL 3 is reserved; nothing above bit 2 exists
            bad[0] = selector
            #expect(throws: SEVError.self) { try SNPSealParameters(encoded: bad) }
        }
        // Old slots (81 bytes, no chip) and new ones (145) both decode.
        var withChip = p
        withChip.rootKey = .vcek
        withChip.chipID = Array(repeating: 9, count: 64)
        #expect(withChip.encoded.count == SNPSealParameters.encodedSizeWithChip)
        #expect(try SNPSealParameters(encoded: withChip.encoded) == withChip)
        #expect(try SNPSealParameters(encoded: p.encoded).chipID == nil)
        #expect(throws: SEVError.self) { try SNPSealParameters(encoded: Array(p.encoded.dropLast())) }
        bad = p.encoded
        bad[8] = 0x80  // an undefined guest field
        #expect(throws: SEVError.self) { try SNPSealParameters(encoded: bad) }
    }
}
