import CElasticTDX
import ElasticSystem
import Glibc
import Synchronization

/// Attestation for the control file on an Intel TDX guest: the TDREPORT from `/dev/tdx_guest`
/// (`TDX_CMD_GET_REPORT0`) with the caller's 64 bytes in REPORTDATA. A TDREPORT is MAC'ed for this
/// platform only; a remote verifier needs it turned into a Quote (configfs-tsm, docs/platform.md §4).
// `fd` is immutable; ioctls run under `lock`
public final class TDXAttestationProvider: AttestationProvider, @unchecked Sendable {
    public static let devicePath = "/dev/tdx_guest"
    let fd: Int32
    let lock = Mutex(())

    public init() throws {
        let fd = open(Self.devicePath, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw TDXError.unavailable(path: Self.devicePath, errno: Errno(rawValue: errno)) }
        self.fd = fd
    }

    deinit { close(fd) }

    public func report(reportData: [UInt8]) throws -> (platform: UInt32, report: [UInt8]) {
        guard reportData.count == 64 else { throw TDXError.badReportData }
        var req = celastic_tdx_report_req()
        withUnsafeMutableBytes(of: &req.reportdata) { $0.copyBytes(from: reportData) }
        // errno is read under the lock, before another thread's request can change it.
        let failure: Errno? = lock.withLock { _ in
            CElasticTDX_tdx_get_report0(fd, &req) == 0 ? nil : Errno(rawValue: errno)
        }
        if let failure { throw TDXError.ioctl(failure) }
        let report = withUnsafeBytes(of: &req.tdreport) { Array($0) }
        // TDREPORT offset 128 holds REPORTDATA: the device must have put ours there.
        guard Array(report[128..<192]) == reportData else { throw TDXError.reportDataMismatch }
        return (3, report)
    }
}

/// Errors of the TDX guest device.
public enum TDXError: Error, CustomStringConvertible, Equatable {
    case unavailable(path: String, errno: Errno)
    case ioctl(Errno)
    case badReportData
    case reportDataMismatch

    public var description: String {
        switch self {
        case .unavailable(let path, let e): return "cannot open \(path): \(e)"
        case .ioctl(let e): return "TDX_CMD_GET_REPORT0 failed: \(e)"
        case .badReportData: return "report data is 64 bytes"
        case .reportDataMismatch: return "the TDREPORT does not carry the report data"
        }
    }
}
