import ElasticSystem

/// Errors talking to the SEV-SNP guest device (real or simulated).
public enum SEVError: Error, CustomStringConvertible, Equatable {
    /// The device could not be opened.
    case unavailable(path: String, errno: Errno)
    /// The ioctl failed; `firmware`/`vmm` are the exitinfo2 halves when the kernel reported them.
    case ioctl(Errno, firmware: UInt32, vmm: UInt32)
    /// The request reached the firmware, which refused it (STATUS word of the response).
    case firmware(status: UInt32)
    /// The guest's VMPCK was wiped after a message-level error: nothing works until reboot.
    case disabled
    /// ENOTTY before any request succeeded: the VMPCK was disabled earlier, or this kernel's
    /// sev-guest ABI is not the one ELASTIC was built against.
    case refusedIoctl
    /// The firmware returned an all-zero key, which is never a real key.
    case zeroKey
    case invalidRequest(String)

    public var description: String {
        switch self {
        case .unavailable(let path, let e): return "cannot open \(path): \(e)"
        case .ioctl(let e, let fw, let vmm):
            var s = "SEV guest request failed: \(e)"
            if e == .ioError || fw != 0 || vmm != 0 {
                s += " (firmware error 0x\(String(fw, radix: 16)), vmm error \(vmm))"
            }
            if e == .ioError || e == .timedOut || e == .badMessage {
                s += "; the kernel has now disabled the guest request key (VMPCK) until reboot"
            }
            return s
        case .firmware(let status):
            return "the SEV-SNP firmware refused the request: \(SNPFirmwareStatus.describe(status))"
        case .disabled:
            return "the SEV guest device is disabled (VMPCK wiped after an earlier message error); reboot the VM"
        case .refusedIoctl:
            return
                "the SEV guest device refused the request (ENOTTY): either its VMPCK was disabled after an earlier message error (the kernel log then says \"Disabling VMPCK\"; only a reboot restores it), or this kernel's sev-guest interface differs from <linux/sev-guest.h> (some pre-upstream kernels)"
        case .zeroKey: return "the SEV-SNP firmware returned an all-zero key"
        case .invalidRequest(let s): return s
        }
    }
}
