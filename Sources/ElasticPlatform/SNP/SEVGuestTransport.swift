import CElasticSEV
import ElasticSystem
import Glibc

/// The ioctl seam: `/dev/sev-guest` on a real SNP guest, or the simulator. `request` gets the
/// ioctl number and the 32-byte `snp_guest_request_ioctl` whose pointers address the caller's
/// request and response buffers; it returns 0 or an errno, exactly as ioctl(2) would.
public protocol SEVGuestTransport: AnyObject {
    func request(_ cmd: UInt, _ ioctl: inout snp_guest_request_ioctl) -> Int32
}

/// The kernel's SEV guest driver.
public final class LinuxSEVGuestDevice: SEVGuestTransport {
    public static let path = "/dev/sev-guest"
    let fd: Int32

    public init(path: String = LinuxSEVGuestDevice.path) throws {
        let fd = Glibc.open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw SEVError.unavailable(path: path, errno: Errno(rawValue: errno)) }
        self.fd = fd
    }

    deinit { Glibc.close(fd) }

    public func request(_ cmd: UInt, _ ioctl: inout snp_guest_request_ioctl) -> Int32 {
        CElasticSEV_snp_ioctl(fd, cmd, &ioctl) == 0 ? 0 : errno
    }
}

/// The ioctl numbers, from the kernel header.
public enum SNPIoctl {
    public static let getReport = UInt(CElasticSEV_SNP_GET_REPORT)
    public static let getDerivedKey = UInt(CElasticSEV_SNP_GET_DERIVED_KEY)
    public static let getExtReport = UInt(CElasticSEV_SNP_GET_EXT_REPORT)
}
