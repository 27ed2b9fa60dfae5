import CElasticSEV
import ElasticCrypto
import ElasticSystem
import Glibc
import Synchronization

/// MSG_KEY_REQ and MSG_REPORT_REQ over a transport, with every error channel checked: the
/// errno, the exitinfo2 halves, and the STATUS word inside the response (which can be non-zero
/// even when the ioctl returned 0). Message version is always 1: never probe others (a message
/// error wipes the guest's VMPCK until reboot).
public final class SNPGuest {
    let transport: any SEVGuestTransport
    /// Requests are spaced at least this far apart, for every caller of this guest together:
    /// a host that throttles (BUSY) for more than a minute makes the kernel wipe the VMPCK, so
    /// ELASTIC never bursts. The device default is 0.1 s (10 requests a second at most).
    let minimumInterval: Double
    private let pacing = Mutex<(last: Double, succeeded: Bool)>((0, false))

    public init(transport: any SEVGuestTransport, minimumInterval: Double = 0) {
        self.transport = transport
        self.minimumInterval = minimumInterval
    }

    /// Waits until the next request may go out.
    private func pace() {
        guard minimumInterval > 0 else { return }
        let wait: Double = pacing.withLock { p in
            let now = Self.now()
            let next = max(now, p.last + minimumInterval)
            p.last = next
            return next - now
        }
        if wait > 0 { usleep(UInt32(wait * 1_000_000)) }
    }

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// A derived key, copied straight into zeroizing memory; the raw response is wiped.
    public func derivedKey(_ request: SNPDerivedKeyRequest) throws -> SecureBytes {
        var req = request.raw
        var resp = snp_derived_key_resp()
        defer { withUnsafeMutableBytes(of: &resp) { secureWipe($0) } }
        try send(SNPIoctl.getDerivedKey, &req, &resp)
        return try withUnsafeBytes(of: &resp) { r -> SecureBytes in
            let status = r.load(fromByteOffset: 0, as: UInt32.self).littleEndian
            guard status == 0 else { throw SEVError.firmware(status: status) }
            let key = UnsafeRawBufferPointer(rebasing: r[0x20..<0x40])
            guard key.contains(where: { $0 != 0 }) else { throw SEVError.zeroKey }
            return SecureBytes(copying: key)
        }
    }

    /// An attestation report with `reportData` (64 bytes) at `vmpl`.
    public func report(reportData: [UInt8], vmpl: UInt32) throws -> SNPReport {
        guard reportData.count == 64 else { throw SEVError.invalidRequest("report data must be 64 bytes") }
        var req = snp_report_req()
        withUnsafeMutableBytes(of: &req.user_data) { $0.copyBytes(from: reportData) }
        req.vmpl = vmpl
        var resp = snp_report_resp()
        try send(SNPIoctl.getReport, &req, &resp)
        return try withUnsafeBytes(of: &resp) { try Self.parseReport($0) }
    }

    /// The largest certificate buffer the kernel accepts (SEV_FW_BLOB_MAX_SIZE).
    public static let certificatesMax = 16384

    /// An attestation report with the host's certificate table (SNP_GET_EXT_REPORT). The buffer
    /// starts at one page; when the host needs more, the kernel answers EIO with hypervisor
    /// error 1 (INVALID_LEN) and writes the size it needs into the request (the device stays
    /// usable), and the request is sent once more with that size.
    public func extendedReport(reportData: [UInt8], vmpl: UInt32) throws -> (
        report: SNPReport, certificates: SNPCertificateTable
    ) {
        guard reportData.count == 64 else { throw SEVError.invalidRequest("report data must be 64 bytes") }
        var size = 4096
        for _ in 0..<2 {
            var certs = [UInt8](repeating: 0, count: size)
            var req = snp_ext_report_req()
            withUnsafeMutableBytes(of: &req.data.user_data) { $0.copyBytes(from: reportData) }
            req.data.vmpl = vmpl
            req.certs_len = UInt32(size)
            var resp = snp_report_resp()
            do {
                try certs.withUnsafeMutableBytes { c in
                    req.certs_address = UInt64(UInt(bitPattern: c.baseAddress))
                    try send(SNPIoctl.getExtReport, &req, &resp)
                }
            } catch SEVError.ioctl(.ioError, _, let vmm) where vmm == 1 {
                let needed = Int(req.certs_len)
                guard needed > size, needed <= Self.certificatesMax, needed % 4096 == 0 else {
                    throw SEVError.invalidRequest("the host asks for a certificate buffer of \(needed) bytes")
                }
                size = needed
                continue
            }
            let report = try withUnsafeBytes(of: &resp) { try Self.parseReport($0) }
            return (report, try SNPCertificateTable(parsing: certs))
        }
        throw SEVError.invalidRequest("the host kept asking for a larger certificate buffer")
    }

    static func parseReport(_ r: UnsafeRawBufferPointer) throws -> SNPReport {
        let status = r.load(fromByteOffset: 0, as: UInt32.self).littleEndian
        guard status == 0 else { throw SEVError.firmware(status: status) }
        let size = Int(r.load(fromByteOffset: 4, as: UInt32.self).littleEndian)
        guard size == SNPReport.size else { throw SEVError.invalidRequest("unexpected report size \(size)") }
        let report = SNPReport(bytes: Array(r[0x20..<(0x20 + size)]))
        try report.checkFormat()
        return report
    }

    func send<Req, Resp>(_ cmd: UInt, _ req: inout Req, _ resp: inout Resp) throws {
        pace()
        var io = snp_guest_request_ioctl()
        io.msg_version = 1
        io.exitinfo2 = 0
        let rc = withUnsafeMutablePointer(to: &req) { rq in
            withUnsafeMutablePointer(to: &resp) { rs in
                io.req_data = UInt64(UInt(bitPattern: rq))
                io.resp_data = UInt64(UInt(bitPattern: rs))
                return transport.request(cmd, &io)
            }
        }
        guard rc == 0 else {
            let e = Errno(rawValue: rc)
            // ENOTTY is both "VMPCK disabled" and "unknown ioctl": only after a request has
            // succeeded on this device is the first one certain.
            if e == .inappropriateIOCTLForDevice {
                throw pacing.withLock { $0.succeeded } ? SEVError.disabled : SEVError.refusedIoctl
            }
            // Only EIO carries a trustworthy exitinfo2 (older kernels wrote garbage otherwise).
            let trust = e == .ioError
            throw SEVError.ioctl(
                e, firmware: trust ? UInt32(truncatingIfNeeded: io.exitinfo2) : 0,
                vmm: trust ? UInt32(truncatingIfNeeded: io.exitinfo2 >> 32) : 0)
        }
        pacing.withLock { $0.succeeded = true }
    }
}
