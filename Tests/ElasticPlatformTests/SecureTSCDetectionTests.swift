import Foundation
import Testing

@testable import ElasticPlatform

/// Secure TSC detection from the signals a guest has (docs/platform.md §5.4), on fake trees.
@Suite struct SecureTSCDetectionTests {
    /// A fake root with an SNP guest's sysfs directory and the given files.
    func tree(_ files: [String: String]) throws -> String {
        let root = NSTemporaryDirectory() + "elastic-probe-" + UUID().uuidString
        try FileManager.default.createDirectory(
            atPath: root + "/sys/devices/system/cpu/sev", withIntermediateDirectories: true)
        try "0\n".write(toFile: root + "/sys/devices/system/cpu/sev/vmpl", atomically: true, encoding: .utf8)
        for (path, text) in files {
            try FileManager.default.createDirectory(
                atPath: (root + path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try text.write(toFile: root + path, atomically: true, encoding: .utf8)
        }
        return root
    }

    @Test func theBootLineIsReadWhenNothingElseSaysIt() throws {
        let on = try tree([
            "/dev/kmsg": """
            6,512,100,-;Memory Encryption Features active: AMD SEV SEV-ES SEV-SNP
            6,513,101,-;SEV: Status: SEV SEV-ES SEV-SNP DebugSwap SecureTSC 
            6,514,102,-;clocksource: Switched to clocksource tsc

            """
        ])
        defer { try? FileManager.default.removeItem(atPath: on) }
        let d = PlatformProbe(root: on).secureTSC
        #expect(d.enabled && d.evidence.hasPrefix("kernel log: SEV: Status:"), "\(d)")

        let off = try tree(["/dev/kmsg": "6,1,1,-;SEV: Status: SEV SEV-ES SEV-SNP DebugSwap\n"])
        defer { try? FileManager.default.removeItem(atPath: off) }
        #expect(!PlatformProbe(root: off).secureTSC.enabled)

        // Strings the host chooses (a DMI product name) or userspace writes (facility 1) do not
        // count, even when they contain the marker; the real line comes later and says "off".
        let forged = try tree([
            "/dev/kmsg": """
            6,10,5,-;DMI: Evil x SEV: Status: SEV-SNP SecureTSC y/1, BIOS 1.0
            14,11,6,-;SEV: Status: SEV SEV-ES SEV-SNP SecureTSC
            6,12,7,-;SEV: Status: SEV SEV-ES SEV-SNP

            """
        ])
        defer { try? FileManager.default.removeItem(atPath: forged) }
        let f = PlatformProbe(root: forged).secureTSC
        #expect(!f.enabled && f.evidence == "kernel log: SEV: Status: SEV SEV-ES SEV-SNP", "\(f)")
    }

    @Test func sysfsStatusWinsAndSilenceMeansOff() throws {
        let sysfs = try tree([
            "/sys/devices/system/cpu/sev/sev_status": "807\n",  // bits 0-2 and 11
            "/dev/kmsg": "6,1,1,-;SEV: Status: SEV SEV-ES SEV-SNP\n",
        ])
        defer { try? FileManager.default.removeItem(atPath: sysfs) }
        let d = PlatformProbe(root: sysfs).secureTSC
        #expect(d.enabled && d.evidence == "SEV_STATUS from sysfs")

        let silent = try tree([:])
        defer { try? FileManager.default.removeItem(atPath: silent) }
        let s = PlatformProbe(root: silent).secureTSC
        #expect(!s.enabled && s.evidence.hasPrefix("unknown"))
        #expect(
            PlatformProbe(root: "/nonexistent").secureTSC
                == SecureTSCDetection(enabled: false, evidence: "not an SEV-SNP guest"))
    }
}
