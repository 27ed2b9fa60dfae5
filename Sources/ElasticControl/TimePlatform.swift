import Glibc
import Synchronization

/// Whether the control file may call a reading trusted: on an SEV-SNP guest with Secure TSC,
/// and only while the kernel's clock source is the TSC (the host cannot change the TSC's rate
/// then; with kvm-clock or any other source it can). The clock source is read again when a
/// reading is more than `recheckInterval` after the last check, since the kernel (or root) can
/// switch it at any time and says so to no one but its log.
public final class TimePlatform: Sendable {
    /// Secure TSC was on when the mount started (it cannot change while the VM runs).
    public let secureTSC: Bool
    /// Why, for the log and `elastic doctor`.
    public let evidence: String
    let clockSource: @Sendable () -> String?
    let recheckInterval: Double
    private let cached = Mutex<(checkedAt: Double, isTSC: Bool)?>(nil)

    public init(
        secureTSC: Bool, evidence: String = "", recheckInterval: Double = 1.0,
        clockSource: @escaping @Sendable () -> String? = TimePlatform.kernelClockSource
    ) {
        self.secureTSC = secureTSC
        self.evidence = evidence
        self.recheckInterval = recheckInterval
        self.clockSource = clockSource
    }

    /// The kernel's current clock source, from sysfs.
    public static let kernelClockSource: @Sendable () -> String? = {
        let fd = open("/sys/devices/system/clocksource/clocksource0/current_clocksource", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 64)
        let n = read(fd, &buf, buf.count)
        guard n > 0 else { return nil }
        return String(decoding: buf[0..<n].filter { $0 > 0x20 }, as: UTF8.self)  // "tsc\n" -> "tsc"
    }

    /// Whether a reading taken now is trusted.
    public func trustedNow() -> Bool {
        guard secureTSC else { return false }
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC_RAW, &ts)
        let now = Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
        if let c = cached.withLock({ $0 }), now - c.checkedAt < recheckInterval { return c.isTSC }
        let isTSC = clockSource() == "tsc"
        cached.withLock { $0 = (now, isTSC) }
        return isTSC
    }
}
