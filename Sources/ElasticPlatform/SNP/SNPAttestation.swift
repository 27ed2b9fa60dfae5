import Synchronization

/// Attestation for the control file from the SEV-SNP guest device (or the simulator).
/// Requests are serialized: the guest device (and the simulator) handle one message at a time.
// `guest` is used only under `lock`
public final class SNPAttestationProvider: AttestationProvider, @unchecked Sendable {
    let guest: SNPGuest
    let vmpl: UInt32
    let platform: UInt32
    let lock = Mutex(())

    public init(guest: SNPGuest, vmpl: UInt32, simulated: Bool) {
        self.guest = guest
        self.vmpl = vmpl
        platform = simulated ? 2 : 1
    }

    public func report(reportData: [UInt8]) throws -> (platform: UInt32, report: [UInt8]) {
        try lock.withLock { _ in (platform, try guest.report(reportData: reportData, vmpl: vmpl).bytes) }
    }

    public func evidence(reportData: [UInt8]) throws -> (platform: UInt32, report: [UInt8], certificates: [UInt8]) {
        try lock.withLock { _ in
            let r = try guest.extendedReport(reportData: reportData, vmpl: vmpl)
            return (platform, r.report.bytes, r.certificates.encoded)
        }
    }
}
