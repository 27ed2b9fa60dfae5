import CElasticLinux

import ElasticSystem
import Glibc
import Synchronization

/// Attestation for the control file on an Intel TDX guest: the TDREPORT from `/dev/tdx_guest`
/// (`TDX_CMD_GET_REPORT0`) with the caller's 64 bytes in REPORTDATA. A TDREPORT is MAC'ed for this
/// platform only; a remote verifier needs it turned into a Quote (configfs-tsm, platform-abi.md §6).
public final class TDXAttestationProvider: AttestationProvider, @unchecked Sendable {
    public static let devicePath = "/dev/tdx_guest"
    public static let reportSize = 1024
    let fd: Int32
    let lock = Mutex(())

    public init() throws {
        let fd = open(Self.devicePath, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw SEVError.unavailable(path: Self.devicePath, errno: Errno(rawValue: errno)) }
        self.fd = fd
    }

    deinit { close(fd) }

    public func report(reportData: [UInt8]) throws -> (platform: UInt32, report: [UInt8]) {
        guard reportData.count == 64 else { throw SEVError.invalidRequest("report data is 64 bytes") }
        var req = celastic_tdx_report_req()
        withUnsafeMutableBytes(of: &req.reportdata) { $0.copyBytes(from: reportData) }
        let rc = lock.withLock { _ in CElasticLinux_tdx_get_report0(fd, &req) }
        guard rc == 0 else { throw SEVError.ioctl(Errno(rawValue: errno), firmware: 0, vmm: 0) }
        let report = withUnsafeBytes(of: req.tdreport) { Array($0) }
        // TDREPORT offset 128 holds REPORTDATA: the device must have put ours there.
        guard Array(report[128..<192]) == reportData else { throw SEVError.invalidRequest("the TDREPORT does not carry the report data") }
        return (3, report)
    }
}
