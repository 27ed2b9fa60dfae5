import Synchronization

/// Attestation for the control file from the SEV-SNP guest device (or the simulator).
/// Requests are serialized: the guest device (and the simulator) handle one message at a time.
/// Evidence (the report with the host's certificate table) comes from `SNP_GET_EXT_REPORT`;
/// where the kernel refuses it, from configfs-tsm (`outblob` and `auxblob`, provider `sev_guest`).
// `guest` and `tsm` are used only under `lock`
public final class SNPAttestationProvider: AttestationProvider, @unchecked Sendable {
    let guest: SNPGuest
    let vmpl: UInt32
    let platform: UInt32
    let tsm: (any TSMReportTransport)?
    let lock = Mutex(())

    public init(guest: SNPGuest, vmpl: UInt32, simulated: Bool, tsm: (any TSMReportTransport)? = nil) {
        self.guest = guest
        self.vmpl = vmpl
        self.tsm = tsm
        platform = simulated ? 2 : 1
    }

    public func report(reportData: [UInt8]) throws -> (platform: UInt32, report: [UInt8]) {
        try lock.withLock { _ in (platform, try guest.report(reportData: reportData, vmpl: vmpl).bytes) }
    }

    public func evidence(reportData: [UInt8]) throws -> (platform: UInt32, report: [UInt8], certificates: [UInt8]) {
        try lock.withLock { _ in
            do {
                let r = try guest.extendedReport(reportData: reportData, vmpl: vmpl)
                return (platform, r.report.bytes, r.certificates.encoded)
            } catch let refused as SEVError {
                // A kernel without (or refusing) the extended report: configfs-tsm's SEV provider.
                guard let tsm, refused == .refusedIoctl || refused == .disabled else { throw refused }
                let r = try ConfigfsTSM.report(tsm, inblob: reportData, privlevel: vmpl)
                guard r.provider == "sev_guest" else { throw refused }
                let report = SNPReport(bytes: r.outblob)
                try report.checkFormat()
                guard report.reportData == reportData else {
                    throw SEVError.invalidRequest("configfs-tsm answered another request")
                }
                return (platform, r.outblob, try SNPCertificateTable(parsing: r.auxblob).encoded)
            }
        }
    }
}
