import CElasticSEV
import ElasticCrypto
import ElasticSystem
import Glibc

/// MSG_KEY_REQ and MSG_REPORT_REQ over a transport, with every error channel checked: the
/// errno, the exitinfo2 halves, and the STATUS word inside the response (which can be non-zero
/// even when the ioctl returned 0). Message version is always 1: never probe others (a message
/// error wipes the guest's VMPCK until reboot).
public final class SNPGuest {
    let transport: any SEVGuestTransport

    public init(transport: any SEVGuestTransport) { self.transport = transport }

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
        return try withUnsafeBytes(of: &resp) { r -> SNPReport in
            let status = r.load(fromByteOffset: 0, as: UInt32.self).littleEndian
            guard status == 0 else { throw SEVError.firmware(status: status) }
            let size = Int(r.load(fromByteOffset: 4, as: UInt32.self).littleEndian)
            guard size == SNPReport.size else { throw SEVError.invalidRequest("unexpected report size \(size)") }
            return SNPReport(bytes: Array(r[0x20..<(0x20 + size)]))
        }
    }

    func send<Req, Resp>(_ cmd: UInt, _ req: inout Req, _ resp: inout Resp) throws {
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
            if e == .inappropriateIOCTLForDevice { throw SEVError.disabled }
            // Only EIO carries a trustworthy exitinfo2 (older kernels wrote garbage otherwise).
            let trust = e == .ioError
            throw SEVError.ioctl(
                e, firmware: trust ? UInt32(truncatingIfNeeded: io.exitinfo2) : 0,
                vmm: trust ? UInt32(truncatingIfNeeded: io.exitinfo2 >> 32) : 0)
        }
    }
}
