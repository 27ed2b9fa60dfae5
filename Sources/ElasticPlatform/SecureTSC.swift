import ElasticSystem
import Foundation
import Glibc

/// Whether this SEV-SNP guest runs with Secure TSC (SEV_STATUS bit 11), and from which signal.
/// Mainline Linux has no file that states it, so ELASTIC reads, in order: a `sev_status` file in
/// the guest's sysfs directory (some kernels carry one), the SEV_STATUS MSR through the `msr`
/// driver (root), and the kernel's boot line `SEV: Status: … SecureTSC …` (docs/platform.md
/// §5.4). When none of them answers, Secure TSC counts as off.
public struct SecureTSCDetection: Sendable, Equatable {
    public let enabled: Bool
    /// What the answer rests on, for `elastic doctor` and the daemon's log.
    public let evidence: String
}

extension PlatformProbe {
    /// The MSR number of SEV_STATUS and its Secure TSC bit.
    static let sevStatusMSR: Int64 = 0xC001_0131
    static let secureTSCBit: UInt64 = 1 << 11

    public var secureTSC: SecureTSCDetection {
        guard kind == .snpGuest else { return SecureTSCDetection(enabled: false, evidence: "not an SEV-SNP guest") }
        if let status = sevStatus {
            return SecureTSCDetection(enabled: status & Self.secureTSCBit != 0, evidence: "SEV_STATUS from sysfs")
        }
        if let status = sevStatusFromMSR() {
            return SecureTSCDetection(
                enabled: status & Self.secureTSCBit != 0, evidence: "SEV_STATUS MSR (/dev/cpu/0/msr)")
        }
        if let line = kernelLogLine(startingWith: "SEV: Status:") {
            // The line sev_show_status() prints: one token per SEV_STATUS bit, SEV-SNP among them.
            let tokens = line.split(separator: " ")
            let valid = tokens.contains("SEV-SNP")
            return SecureTSCDetection(
                enabled: valid && tokens.contains("SecureTSC"),
                evidence: "kernel log: \(line)" + (valid ? "" : " (not the SEV status line)"))
        }
        return SecureTSCDetection(
            enabled: false,
            evidence:
                "unknown (no SEV_STATUS in sysfs, no readable MSR device, no 'SEV: Status:' line in the kernel log)")
    }

    /// SEV_STATUS read from the `msr` driver's device (root, module loaded), or nil.
    func sevStatusFromMSR() -> UInt64? {
        let fd = open(path("/dev/cpu/0/msr"), O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var value: UInt64 = 0
        guard pread(fd, &value, 8, off_t(Self.sevStatusMSR)) == 8 else { return nil }
        return UInt64(littleEndian: value)
    }

    /// The first kernel-log message that starts with `marker` and comes from the kernel itself
    /// (facility 0 in the record's "pri,seq,time,flags;" prefix: userspace cannot write those,
    /// and a message that merely contains the marker, such as a DMI string the host chose, does
    /// not count). From `/dev/kmsg` (one record per read; root) or, in a test tree, a file of
    /// records. Reads at most 4 MiB.
    func kernelLogLine(startingWith marker: String) -> String? {
        let fd = open(path("/dev/kmsg"), O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 8192)
        var pending: [UInt8] = []
        var total = 0
        func match(_ record: ArraySlice<UInt8>) -> String? {
            let text = String(decoding: record, as: UTF8.self)
            guard let semicolon = text.firstIndex(of: ";"),
                let pri = text[..<semicolon].split(separator: ",").first.flatMap({ Int($0) }), pri >> 3 == 0
            else { return nil }
            let message = text[text.index(after: semicolon)...]
            guard message.hasPrefix(marker) else { return nil }
            return String(message).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        while total < 4 << 20 {
            let n = Glibc.read(fd, &buffer, buffer.count)
            if n < 0 && errno == EPIPE { continue }  // records overwritten while reading: go on
            if n <= 0 { break }
            total += n
            pending += buffer[0..<n]
            while let nl = pending.firstIndex(of: 0x0A) {
                if let m = match(pending[..<nl]) { return m }
                pending.removeSubrange(...nl)
            }
        }
        return pending.isEmpty ? nil : match(pending[...])
    }
}
