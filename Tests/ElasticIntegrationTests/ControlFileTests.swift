import ElasticPlatform
import Foundation
import Testing

/// The control file `/.elastic`: the CLI and a C client through the real mount.
@Suite(.enabled(if: Env.canMount, "needs root and /dev/fuse"))
struct ControlFileTests {
    @Test func clockRandomAndDeriveThroughTheCLI() throws {
        try MountedStore.with(options: ["allow_other"]) { s in
            let time = try run(Env.elastic, ["time", "--json"], cwd: s.mountpoint)
            expectOK(time, "elastic time")
            #expect(time.stdout.contains("\"source\":\"clock_gettime\"") && time.stdout.contains("\"trusted\":false"))
            let before = Int(Date().timeIntervalSince1970)
            let secs = try sh("'\(Env.elastic)' time --mount '\(s.mountpoint)' | awk '{print $2}' | cut -d. -f1").stdout
                .trimmingCharacters(in: .whitespacesAndNewlines)
            let after = Int(Date().timeIntervalSince1970)
            #expect((before - 1...after + 1).contains(Int(secs) ?? 0), "\(secs) not in \(before)...\(after)")
            for clock in ["monotonic", "boottime", "process", "thread"] {
                expectOK(try run(Env.elastic, ["time", "--clock", clock, "--mount", s.mountpoint]), "clock \(clock)")
            }
            try sh("head -c 1000000 /dev/urandom > '\(s.path("blob"))'")
            let ours = try run(Env.elastic, ["hash", s.path("blob"), "--mount", s.mountpoint]).stdout.split(
                separator: " "
            ).first
            let theirs = try sh("sha256sum '\(s.path("blob"))'").stdout.split(separator: " ").first
            #expect(ours != nil && ours == theirs)
            let sha512 = try run(
                Env.elastic, ["hash", "--algorithm", "sha512", s.path("blob"), "--mount", s.mountpoint]
            ).stdout.split(separator: " ").first
            #expect(sha512 == (try sh("sha512sum '\(s.path("blob"))'").stdout.split(separator: " ").first))
            let rnd = try run(Env.elastic, ["random", "32", "--hex", "--mount", s.mountpoint])
            #expect(rnd.stdout.trimmingCharacters(in: .whitespacesAndNewlines).count == 64)
            let k1 = try run(Env.elastic, ["key", "derive", "app/db", "--hex", "--mount", s.mountpoint]).stdout
            let k2 = try run(Env.elastic, ["key", "derive", "app/other", "--hex", "--mount", s.mountpoint]).stdout
            #expect(k1.count == 65 && k1 != k2)
            try s.remount(options: ["allow_other"])
            #expect(
                try run(Env.elastic, ["key", "derive", "app/db", "--hex", "--mount", s.mountpoint]).stdout == k1,
                "same key after a remount")
            // The control file is the mounting user's, mode 0600: another user is refused.
            try sh("chmod 755 '\(s.dir)'")
            let nobody = try run(
                "/usr/bin/setpriv",
                ["--reuid=65534", "--regid=65534", "--clear-groups", Env.elastic, "time", "--mount", s.mountpoint])
            #expect(nobody.status != 0 && nobody.stderr.contains("Permission denied"))
        }
    }

    /// Like gpg, the CLI does not write binary to a terminal: keys, random bytes, signatures
    /// and ciphertext need --hex, --out or a redirect.
    @Test func binaryOutputIsRefusedOnATerminal() throws {
        try MountedStore.with { s in
            func onTTY(_ args: [String]) throws -> (status: Int, tty: String, stderr: String) {
                let r = try run(
                    "/usr/bin/env",
                    ["python3", Env.scripts + "/on_tty.py", Env.elastic] + args + ["--mount", s.mountpoint])
                let lines = r.stdout.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false)
                return (Int(lines.first ?? "") ?? -1, lines.count > 1 ? String(lines[1]) : "", r.stderr)
            }
            expectOK(
                try run(Env.elastic, ["key", "create", "signer", "--type", "ed25519", "--mount", s.mountpoint]),
                "key create")
            try sh("echo hello > '\(s.dir)/msg'")
            for args in [
                ["random", "16"], ["key", "derive", "app/db"], ["sign", "--key", "signer", "--in", s.dir + "/msg"],
                ["encrypt", "--key", "signer", "--in", s.dir + "/msg"],
            ] {
                let r = try onTTY(args)
                #expect(
                    r.status == 1 && r.stderr.contains("refusing to write binary") && r.tty.isEmpty, "\(args): \(r)")
            }
            let hex = try onTTY(["random", "16", "--hex"])
            #expect(hex.status == 0 && hex.tty.trimmingCharacters(in: .whitespacesAndNewlines).count == 32, "\(hex)")
            let sig = try onTTY(["sign", "--key", "signer", "--in", s.dir + "/msg", "--hex"])
            #expect(
                sig.status == 0 && sig.tty.trimmingCharacters(in: .whitespacesAndNewlines).count == 128,
                "Ed25519 signature as hex: \(sig)")
            let out = try onTTY(["sign", "--key", "signer", "--in", s.dir + "/msg", "--out", s.dir + "/msg.sig"])
            #expect(out.status == 0 && out.tty.isEmpty)
            #expect(try sh("stat -c %s '\(s.dir)/msg.sig'").stdout.hasPrefix("64"))
        }
    }

    @Test func cExampleClientCompilesAgainstThePublicHeader() throws {
        try MountedStore.with { s in
            let exe = s.dir + "/elastic-clock"
            let cc = try run(
                "/usr/bin/cc",
                [
                    "-O2", "-Wall", "-Werror", "-I", Env.packageRoot + "/Sources/CElasticControlABI/include",
                    "-o", exe, Env.packageRoot + "/mount-helpers/examples/elastic-clock.c",
                ])
            expectOK(cc, "cc")
            let r = try run(exe, [s.mountpoint])
            expectOK(r, "elastic-clock")
            #expect(r.stdout.split(separator: "\n").count == 5)
            let bench = try run(exe, [s.mountpoint, "--bench", "200"])
            expectOK(bench, "elastic-clock --bench")
        }
    }

    @Test func cKeyStoreClientSignsEncryptsAndAgreesWithTheCLIAndOpenSSL() throws {
        try MountedStore.with { s in
            let exe = s.dir + "/elastic-keys"
            expectOK(
                try run(
                    "/usr/bin/cc",
                    [
                        "-O2", "-Wall", "-Werror", "-I", Env.packageRoot + "/Sources/CElasticControlABI/include",
                        "-o", exe, Env.packageRoot + "/mount-helpers/examples/elastic-keys.c",
                    ]), "cc")
            try sh("head -c 70000 /dev/urandom > '\(s.dir)/msg'")
            let r = try sh("'\(exe)' '\(s.mountpoint)' '\(s.dir)' < '\(s.dir)/msg'")
            expectOK(r, "elastic-keys")
            #expect(r.stdout.contains("key c-ed type=6 bits=256 owner=0\n") && r.stdout.contains("verify ok\n"))
            #expect(
                r.stdout.contains("tampered signature refused\n")
                    && r.stdout.contains("encrypt/decrypt ok (18 segments)\n"))
            expectOK(
                try run(
                    "/usr/bin/openssl",
                    [
                        "pkeyutl", "-verify", "-pubin", "-inkey", s.dir + "/c-ed.pub", "-rawin",
                        "-in", s.dir + "/msg", "-sigfile", s.dir + "/c-ed.sig",
                    ]), "openssl verifies the C client's signature")
            expectOK(
                try run(
                    Env.elastic,
                    [
                        "verify", "--key", "c-ed", "--signature", s.dir + "/c-ed.sig", "--in", s.dir + "/msg",
                        "--mount", s.mountpoint,
                    ]), "CLI verifies it")
            let cli = try sh(
                "head -c 4096 '\(s.dir)/msg' | '\(Env.elastic)' hmac --key c-mac --hex --mount '\(s.mountpoint)'"
            ).stdout
            #expect(r.stdout.contains("hmac of the first 4096 bytes:" + cli))
            #expect(
                r.stdout.contains("imported type=2 bits=160 exportable=1 export ok\n")
                    && r.stdout.contains("deleted: info ENOENT\n"))
            #expect(r.stdout.contains("stopwatch ok\n"))
            let derived = try run(Env.elastic, ["key", "derive", "app/db", "--hex", "--mount", s.mountpoint]).stdout
            #expect(r.stdout.contains("derived app/db:" + derived), "the C client and the CLI derive the same key")
            let sha = try sh("sha256sum '\(s.dir)/msg' | cut -d' ' -f1").stdout
            #expect(r.stdout.contains("sha256:" + sha))
            let attest =
                FileManager.default.fileExists(atPath: "/dev/sev-guest")
                || FileManager.default.fileExists(atPath: "/dev/tdx_guest")
            #expect(r.stdout.contains(attest ? "attest platform=" : "attest not available here\n"))
        }
    }

    @Test func randomIoctlsFromSeveralProcessesNeverStallTheFilesystem() throws {
        try MountedStore.with { s in
            let r = try run("/usr/bin/env", ["python3", Env.scripts + "/ioctl_hammer.py", s.mountpoint, "8"])
            expectOK(r, "ioctl_hammer.py")
            #expect(try sh("echo still > '\(s.path("after"))' && cat '\(s.path("after"))'").stdout == "still\n")
        }
    }

    @Test func attestationOnPlainLinuxAndOnTheSimulator() throws {
        try MountedStore.with { s in
            if !FileManager.default.fileExists(atPath: "/dev/sev-guest") {
                let none = try run(Env.elastic, ["attest", "--report-data", "ab", "--mount", s.mountpoint])
                #expect(none.status != 0 && none.stderr.contains("not available here"), "\(none.stderr)")
            }
            let state = s.dir + "/sim.json"
            expectOK(try run(Env.elastic, ["simulator", "init", "--state", state]), "simulator")
            try s.remount(options: ["platform=snp-simulator", "simulator_state=\(state)"])
            let out = s.dir + "/report.bin"
            let r = try run(
                Env.elastic, ["attest", "--report-data", "00112233", "--out", out, "--mount", s.mountpoint])
            expectOK(r, "attest")
            #expect(r.stderr.contains("SIMULATOR"))
            let report = SNPReport(bytes: [UInt8](try Data(contentsOf: URL(fileURLWithPath: out))))
            #expect(report.bytes.count == 1184)
            #expect(Array(report.reportData.prefix(4)) == [0x00, 0x11, 0x22, 0x33])
            let vcek = try SNPSimulator.load(state).state.vcek()
            #expect(vcek.verify(report.signedBytes, r: report.signature.r, s: report.signature.s))
        }
    }
}
