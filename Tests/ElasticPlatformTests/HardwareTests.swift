import ElasticCrypto
import ElasticPlatform
import Foundation
import Testing

/// On a real SEV-SNP guest only: skipped unless /dev/sev-guest exists and ELASTIC_HW_TESTS=1.
@Suite(
    .enabled(
        if: FileManager.default.fileExists(atPath: "/dev/sev-guest")
            && ProcessInfo.processInfo.environment["ELASTIC_HW_TESTS"] == "1",
        "needs an SEV-SNP guest and ELASTIC_HW_TESTS=1"))
struct HardwareTests {
    func guest() throws -> (SNPGuest, UInt32) {
        (SNPGuest(transport: try LinuxSEVGuestDevice()), PlatformProbe().vmpl)
    }

    @Test func derivedKeysAreStableAndFieldDependent() throws {
        let (g, vmpl) = try guest()
        let p = try SNPSealing.parameters(guest: g, vmpl: vmpl)
        let a = try SNPSealing.derive(guest: g, p)
        let b = try SNPSealing.derive(guest: g, p)
        #expect(a == b && a.count == 32 && a.contains { $0 != 0 })
        var q = p
        q.fields = GuestFieldSelect.measurement.rawValue
        #expect(try SNPSealing.derive(guest: g, q) != a)
    }

    @Test func firmwareParameterErrorsArriveAsStatus() throws {
        let (g, vmpl) = try guest()
        // A TCB above the committed TCB is a STATUS error (0x16), not a message error: the device stays usable.
        let report = try g.report(reportData: Array(repeating: 0, count: 64), vmpl: vmpl)
        let tooNew = report.committedTCB.raw &+ (1 << 56)
        #expect(throws: SEVError.firmware(status: 0x16)) {
            try g.derivedKey(SNPDerivedKeyRequest(fields: [.tcbVersion], vmpl: vmpl, tcbVersion: tooNew))
        }
        _ = try g.derivedKey(SNPDerivedKeyRequest(fields: [], vmpl: vmpl))
    }
}
