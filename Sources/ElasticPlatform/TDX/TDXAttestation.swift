import CElasticTDX
import ElasticSystem
import Glibc
import Synchronization

/// Attestation on an Intel TDX guest. `report` is the TDREPORT from `/dev/tdx_guest`
/// (`TDX_CMD_GET_REPORT0`) with the caller's 64 bytes in REPORTDATA: MAC'ed for this platform
/// only, and small enough for the control file's ATTEST. `evidence` is what a remote verifier
/// needs: a Quote from configfs-tsm (docs/platform.md §4) when the kernel offers it with the
/// `tdx_guest` provider, the TDREPORT otherwise.
// `fd` and `tsm` are immutable; requests run under `lock`
public final class TDXAttestationProvider: AttestationProvider, @unchecked Sendable {
    public static let devicePath = "/dev/tdx_guest"
    /// `ELASTIC_PLATFORM_TDX` (a TDREPORT) and the value the evidence path uses for a Quote.
    public static let platformReport: UInt32 = 3
    public static let platformQuote: UInt32 = 4
    let fd: Int32
    let tsm: (any TSMReportTransport)?
    let lock = Mutex(())

    public init(tsm: (any TSMReportTransport)? = try? ConfigfsTSMDirectory()) throws {
        let fd = open(Self.devicePath, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw TDXError.unavailable(path: Self.devicePath, errno: Errno(rawValue: errno)) }
        self.fd = fd
        self.tsm = tsm
    }

    /// Over an open device (or -1) and a configfs-tsm transport (tests).
    init(fd: Int32, tsm: (any TSMReportTransport)?) {
        self.fd = fd
        self.tsm = tsm
    }

    /// A Quote through configfs-tsm when its provider is TDX's, else the TDREPORT.
    public func evidence(reportData: [UInt8]) throws -> (platform: UInt32, report: [UInt8], certificates: [UInt8]) {
        guard reportData.count == 64 else { throw TDXError.badReportData }
        if let tsm {
            let r = try lock.withLock { _ in try ConfigfsTSM.report(tsm, inblob: reportData) }
            if r.provider == "tdx_guest" { return (Self.platformQuote, r.outblob, r.auxblob) }
        }
        let r = try report(reportData: reportData)
        return (r.platform, r.report, [])
    }

    deinit { if fd >= 0 { close(fd) } }

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
        return (Self.platformReport, report)
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
