import ElasticCrypto
import ElasticFormat
import ElasticPlatform
import Foundation
import Testing

/// SEV-SNP sealed key slots through the real binaries, on the SNP simulator.
@Suite(.enabled(if: Env.canMount, "needs root and /dev/fuse"))
struct SealedStoreTests {
    func hex(_ b: [UInt8]) -> String { Hex.encode(b) }

    @Test func sealedStoreLifecycle() throws {
        let dir = try sh("mktemp -d /tmp/elastic-test.XXXXXX").stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let state = dir + "/sim.json", backing = dir + "/store", mnt = dir + "/mnt", recovery = dir + "/recovery.key"
        let platform = ["--platform", "snp-simulator", "--simulator-state", state]
        let mountOpts = "platform=snp-simulator,simulator_state=\(state)"
        var logs = ""
        defer {
            _ = try? run("/bin/fusermount3", ["-u", mnt])
            _ = try? run("/bin/rm", ["-rf", dir])
        }
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        func mount(_ opts: String) throws -> CommandResult {
            let r = try run(Env.mountElastic, [backing, mnt, "-o", opts])
            logs += r.stdout + r.stderr
            return r
        }
        func unmount() throws {
            expectOK(try run("/bin/fusermount3", ["-u", mnt]), "unmount")
            try waitForDaemonExit(backing: backing)
        }
        func elastic(_ args: [String]) throws -> CommandResult {
            let r = try run(Env.elastic, args)
            logs += r.stdout + r.stderr
            return r
        }

        expectOK(try elastic(["simulator", "init", "--state", state]), "simulator init")
        let initResult = try elastic(["init", "--seal", "snp"] + platform + [backing])
        expectOK(initResult, "init --seal snp")
        #expect(initResult.stderr.contains("SIMULATOR"))
        expectOK(
            try elastic(["slot", "add", backing, "--unlock-snp", "--keyfile", recovery] + platform), "recovery slot")

        // Sealed: no key option needed.
        let m = try mount(mountOpts)
        expectOK(m, "mount sealed")
        #expect(m.stderr.contains("SIMULATOR"))
        try sh("echo sealed data > '\(mnt)/f'")
        // The derived key appears nowhere: not in BACKING, the output, or the daemon's argv/environment.
        let sim = try SNPSimulator.load(state)
        let (config, _) = try Store.readConfig(backing: backing)
        guard case .sealed(_, _, let encoded)? = config.slots.first?.kind else {
            Issue.record("no SNP slot")
            return
        }
        let key = try SNPSealing.derive(guest: SNPGuest(transport: sim), try SNPSealParameters(encoded: encoded))
        // (Anchored: the shell running pgrep holds the pattern in its command line too.)
        let daemon = try sh("pgrep -f -- '^[^ ]*mount[.]elastic \(backing) \(mnt)' | head -1").stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(Int(daemon) != nil, "the daemon's process: \(daemon)")
        let search = """
            import glob, os, sys
            key = bytes.fromhex(sys.argv[1]); hexkey = sys.argv[1].encode()
            paths = [p for p in glob.glob(sys.argv[2] + '/**', recursive=True) if os.path.isfile(p)] + ['/proc/\(daemon)/cmdline', '/proc/\(daemon)/environ']
            hits = [p for p in paths if key in open(p, 'rb').read() or hexkey in open(p, 'rb').read()]
            print(' '.join(hits))
            """
        #expect(
            try run("/usr/bin/env", ["python3", "-c", search, hex(key), backing]).stdout.trimmingCharacters(
                in: .whitespacesAndNewlines
            ).isEmpty)
        try unmount()
        expectOK(try mount(mountOpts), "mount sealed again")
        #expect(try sh("cat '\(mnt)/f'").stdout == "sealed data\n")
        try unmount()

        // Another image: refused, naming the measurement; the recovery slot still opens the store.
        let measurement = hex(sim.state.measurement)
        expectOK(try elastic(["simulator", "set", "--state", state, "--measurement", "random"]), "new measurement")
        let refused = try mount(mountOpts)
        #expect(refused.status == 12 && refused.stderr.contains("launch measurement differs"), "\(refused.stderr)")
        expectOK(try mount("keyfile=\(recovery)"), "recovery slot")
        #expect(try sh("cat '\(mnt)/f'").stdout == "sealed data\n")
        try unmount()
        expectOK(
            try elastic(["simulator", "set", "--state", state, "--measurement", measurement]), "restore measurement")

        // Another policy: refused, naming it.
        expectOK(try elastic(["simulator", "set", "--state", state, "--policy", "0x70000"]), "new policy")
        #expect(try mount(mountOpts).stderr.contains("guest policy differs"))
        expectOK(
            try elastic(["simulator", "set", "--state", state, "--policy", String(sim.state.policy, radix: 16)]),
            "restore policy")

        // TCB rollback: refused. TCB upgrade: still opens; reseal moves the slot to the new TCB.
        let tcb = sim.state.committedTCB
        expectOK(
            try elastic(["simulator", "set", "--state", state, "--committed-tcb", String(tcb - (1 << 8), radix: 16)]),
            "rollback")
        let rollback = try mount(mountOpts)
        #expect(rollback.status != 0 && rollback.stderr.contains("TCB rollback"), "\(rollback.stderr)")
        let newer = String(tcb + (1 << 56), radix: 16)
        expectOK(
            try elastic(["simulator", "set", "--state", state, "--committed-tcb", newer, "--reported-tcb", newer]),
            "upgrade")
        expectOK(try mount(mountOpts), "mount after upgrade")
        try unmount()
        let reseal = try elastic(["slot", "reseal", backing] + platform)
        expectOK(reseal, "reseal")
        #expect(reseal.stdout.contains("resealed"))
        #expect(
            try elastic(["slot", "list", backing]).stdout.contains(
                "ucode=\(UInt8(truncatingIfNeeded: (tcb + (1 << 56)) >> 56))"))
        expectOK(try mount(mountOpts), "mount after reseal")
        #expect(try sh("cat '\(mnt)/f'").stdout == "sealed data\n")
        try unmount()
        #expect(try elastic(["slot", "list", backing]).stdout.contains("root=vcek"), "the VCEK is chosen explicitly")
        #expect(
            try elastic(["slot", "list", backing]).stdout.contains("chip=\(hex(Array(sim.state.chipID.prefix(8))))…"))

        // The host installs a VLEK: the explicitly VCEK-sealed slot is not affected.
        expectOK(try elastic(["simulator", "set", "--state", state, "--install-vlek"]), "VLEK")
        expectOK(try mount(mountOpts), "mount with a VLEK installed")
        try unmount()

        // The VM restarts on another host: refused, naming both chips; the recovery slot opens it,
        // and a slot sealed on the new chip takes over.
        expectOK(try elastic(["simulator", "set", "--state", state, "--move-to-another-chip"]), "move")
        let moved = try mount(mountOpts)
        #expect(
            moved.status == 12 && moved.stderr.contains("sealed on chip \(hex(Array(sim.state.chipID.prefix(8))))"),
            "\(moved.stderr)")
        let addHere = try elastic(["slot", "add", backing, "--unlock-keyfile", recovery, "--seal", "snp"] + platform)
        expectOK(addHere, "seal on the new chip")
        expectOK(try mount(mountOpts), "mount on the new chip")
        #expect(try sh("cat '\(mnt)/f'").stdout == "sealed data\n")
        try unmount()
        #expect(!logs.contains(hex(key)))
    }

    @Test func unsafeOrUnavailableSealingIsRefusedClearly() throws {
        let dir = try sh("mktemp -d /tmp/elastic-test.XXXXXX").stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        defer { _ = try? run("/bin/rm", ["-rf", dir]) }
        let here = try run(Env.elastic, ["init", "--seal", "snp", dir + "/a"])
        if !FileManager.default.fileExists(atPath: "/dev/sev-guest") {
            #expect(here.status == 13 && here.stderr.contains("keyfile, passphrase"), "\(here.stderr)")
            // Both executables give a sealing platform that cannot be opened the same exit code (13).
            expectOK(try run(Env.elastic, ["init", "--keyfile", dir + "/key", dir + "/c"]), "init")
            try sh("mkdir '\(dir)/mnt'")
            let mount = try run(Env.mountElastic, [dir + "/c", dir + "/mnt", "-o", "platform=snp"])
            #expect(mount.status == 13 && mount.stderr.contains("SEV-SNP guest"), "\(mount.status) \(mount.stderr)")
            let add = try run(Env.elastic, ["slot", "add", dir + "/c", "--unlock-snp", "--keyfile", dir + "/k2"])
            #expect(add.status == 13, "\(add.status) \(add.stderr)")
        }
        expectOK(try run(Env.elastic, ["simulator", "init", "--state", dir + "/sim.json"]), "simulator")
        let vmrk = try run(
            Env.elastic,
            [
                "init", "--seal", "snp", "--root-key", "vmrk", "--platform", "snp-simulator", "--simulator-state",
                dir + "/sim.json", dir + "/b",
            ])
        #expect(vmrk.status != 0 && vmrk.stderr.contains("restart"))
        #expect(!FileManager.default.fileExists(atPath: dir + "/b/elastic.conf"))
        let doctor = try run(Env.elastic, ["doctor", "--json"])
        expectOK(doctor, "doctor")
        #expect(doctor.stdout.contains("\"platform\""))
    }
}
