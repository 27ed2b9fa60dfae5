import Foundation
import Testing

/// The host puts back older copies of the store-wide files (`elastic.keys`, `elastic.conf`,
/// `elastic.root`) or of the whole store: refused at mount with exit code 14 and a message
/// that says what failed, or, while mounted, refused when the daemon next touches them.
@Suite(.enabled(if: Env.canMount, "needs root and /dev/fuse"))
struct FreshnessTests {
    func key(_ s: MountedStore, _ args: [String]) throws -> CommandResult {
        try run(Env.elastic, ["key"] + args + ["--mount", s.mountpoint])
    }

    func save(_ s: MountedStore, _ name: String) throws -> Data {
        try Data(contentsOf: URL(fileURLWithPath: s.backing + "/" + name))
    }

    func putBack(_ s: MountedStore, _ name: String, _ data: Data) throws {
        let path = s.backing + "/" + name
        try? FileManager.default.removeItem(atPath: path)
        try data.write(to: URL(fileURLWithPath: path))
    }

    /// `witness=file:...` in a directory only root may write (standing in for the VM's own disk).
    func fileWitnessOption(_ s: MountedStore) throws -> String {
        let dir = s.dir + "/vm-disk"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false)
        chmod(dir, 0o700)
        return "witness=file:" + dir + "/store.witness"
    }

    /// Mounts in the background as an operator would; returns (exit status, stderr).
    func mountCommand(_ s: MountedStore, _ options: [String] = []) throws -> CommandResult {
        let r = try run(
            Env.mountElastic,
            [s.backing, s.mountpoint, "-o", (["keyfile=" + s.keyFile] + options).joined(separator: ",")])
        if r.ok { s.markMounted() }
        return r
    }

    @Test func mountWithoutWitnessSaysOnceThatWholeStoreRollbackIsNotDetected() throws {
        try MountedStore.with { s in
            try s.unmount()
            let r = try mountCommand(s)
            expectOK(r, "mount")
            #expect(r.stderr.components(separatedBy: "no freshness witness").count == 2, "\(r.stderr)")
        }
    }

    @Test func deletedKeyPutBackBetweenMountsIsRefused() throws {
        try MountedStore.with { s in
            expectOK(try key(s, ["create", "k1", "--type", "aes256"]), "create")
            let withKey = try save(s, "elastic.keys")
            expectOK(try key(s, ["delete", "k1"]), "delete")
            try s.unmount()
            try putBack(s, "elastic.keys", withKey)
            let r = try mountCommand(s)
            #expect(r.status == 14, "\(r.stderr)")
            #expect(r.stderr.contains("elastic.keys is not the version elastic.root names"), "\(r.stderr)")
        }
    }

    @Test func removedSlotPutBackIsRefused() throws {
        try MountedStore.with { s in
            try s.unmount()
            let second = s.dir + "/second.key"
            expectOK(
                try run(Env.elastic, ["slot", "add", s.backing, "--unlock-keyfile", s.keyFile, "--keyfile", second]),
                "slot add")
            let withSlot = try save(s, "elastic.conf")
            let id = try run(Env.elastic, ["slot", "list", s.backing]).stdout.split(separator: "\n").last!
                .split(separator: " ").first { $0.count >= 8 }!
            expectOK(
                try run(Env.elastic, ["slot", "remove", s.backing, String(id), "--unlock-keyfile", s.keyFile]),
                "slot remove")
            try putBack(s, "elastic.conf", withSlot)
            let r = try run(Env.mountElastic, [s.backing, s.mountpoint, "-o", "keyfile=" + second])
            #expect(r.status == 14, "\(r.stderr)")
            #expect(r.stderr.contains("elastic.conf is not the version elastic.root names"), "\(r.stderr)")
        }
    }

    /// While mounted, the host puts back the root and key store of an earlier moment (a
    /// consistent pair): the daemon, which saw a newer root, refuses the next key-store change
    /// and keeps serving files.
    @Test func rootAndKeyStorePutBackWhileMountedAreRefused() throws {
        try MountedStore.with(foregroundLog: true) { s in
            expectOK(try key(s, ["create", "k1", "--type", "aes256"]), "create")
            let (oldRoot, oldKeys) = (try save(s, "elastic.root"), try save(s, "elastic.keys"))
            expectOK(try key(s, ["delete", "k1"]), "delete")
            try putBack(s, "elastic.root", oldRoot)
            try putBack(s, "elastic.keys", oldKeys)
            let r = try key(s, ["create", "k2", "--type", "aes256"])
            #expect(r.status == 20 && r.stderr.contains("Input/output error"), "\(r.status) \(r.stderr)")
            let log = try String(contentsOfFile: try #require(s.daemonLog), encoding: .utf8)
            #expect(log.contains("elastic.root was rolled back while the store was open"), "\(log)")
            #expect(try !key(s, ["list"]).stdout.contains("k2"))
            expectOK(try sh("echo still > '\(s.path("f"))' && cat '\(s.path("f"))'"), "files still served")
            try s.unmount()
            // Between mounts the pair is consistent: only a witness tells it is old (next test).
        }
    }

    @Test func wholeStoreRollbackIsRefusedWithAFileWitness() throws {
        try MountedStore.with { s in
            try s.unmount()
            let witness = try fileWitnessOption(s)
            let first = try mountCommand(s, [witness])
            expectOK(first, "mount with a new witness")
            #expect(!first.stderr.contains("no freshness witness"), "\(first.stderr)")
            expectOK(try sh("echo v1 > '\(s.path("doc"))'"), "write")
            try s.unmount()
            let snapshot = s.dir + "/snapshot"
            expectOK(try sh("cp -a '\(s.backing)' '\(snapshot)'"), "snapshot")
            try s.mount(options: [witness])
            expectOK(try key(s, ["create", "k1", "--type", "aes256"]), "create")
            try s.unmount()
            // The host puts the whole store back as it was.
            expectOK(try sh("rm -rf '\(s.backing)' && cp -a '\(snapshot)' '\(s.backing)'"), "roll back")
            for options in [[witness], []] {  // the root names its witness: it is used without the option too
                let r = try mountCommand(s, options)
                #expect(r.status == 14, "\(r.stderr)")
                #expect(r.stderr.contains("the store was rolled back"), "\(r.stderr)")
            }
            let fsck = try run(Env.elastic, ["fsck", s.backing, "--unlock-keyfile", s.keyFile])
            #expect(fsck.status == 40 && fsck.stdout.contains("rolled back"), "\(fsck.stdout)")
        }
    }

    @Test func rekeyedStoreMakesTheOldCopyStale() throws {
        try MountedStore.with { s in
            try s.unmount()
            let witness = try fileWitnessOption(s)
            expectOK(try mountCommand(s, [witness]), "mount")
            expectOK(try sh("echo secret > '\(s.path("doc"))'"), "write")
            try s.unmount()
            let before = s.dir + "/before-rekey"
            expectOK(try sh("cp -a '\(s.backing)' '\(before)'"), "copy")
            expectOK(try run(Env.elastic, ["rekey", s.backing, "--unlock-keyfile", s.keyFile]), "rekey")
            try s.mount()
            #expect(try sh("cat '\(s.path("doc"))'").stdout == "secret\n")
            try s.unmount()
            // The host puts the pre-rekey store back (the old master key, every old slot): stale.
            expectOK(try sh("rm -rf '\(s.backing)' && mv '\(before)' '\(s.backing)'"), "put back")
            let r = try mountCommand(s)
            #expect(r.status == 14, "\(r.stderr)")
        }
    }
}

/// The same with a TPM 2.0 NV counter as the witness: a real TPM stack (tpm2-tss) against
/// swtpm, started here.
@Suite(
    .enabled(if: Env.canMount, "needs root and /dev/fuse"),
    .enabled(if: FileManager.default.fileExists(atPath: "/usr/bin/swtpm"), "needs swtpm"))
struct TPMWitnessTests {
    @Test func wholeStoreRollbackIsRefusedWithATPMCounter() throws {
        try SoftwareTPM.with { tpm in
            try MountedStore.with { s in
                try s.unmount()
                let options = ["witness=tpm:0x01500016", "tpm_tcti=" + tpm.tcti]
                try s.mount(options: options)
                expectOK(try sh("echo v1 > '\(s.path("doc"))'"), "write")
                try s.unmount()
                expectOK(try sh("cp -a '\(s.backing)' '\(s.dir)/snapshot'"), "snapshot")
                try s.mount(options: options)
                expectOK(try sh("echo v2 > '\(s.path("doc"))'"), "write")
                expectOK(
                    try run(Env.elastic, ["key", "create", "k", "--type", "aes256", "--mount", s.mountpoint]), "key")
                try s.unmount()
                expectOK(try sh("rm -rf '\(s.backing)' && cp -a '\(s.dir)/snapshot' '\(s.backing)'"), "roll back")
                let r = try run(
                    Env.mountElastic,
                    [s.backing, s.mountpoint, "-o", "keyfile=\(s.keyFile),tpm_tcti=\(tpm.tcti)"])
                #expect(r.status == 14, "\(r.stderr)")
                #expect(
                    r.stderr.contains("the store was rolled back") && r.stderr.contains("tpm:0x1500016"), "\(r.stderr)")
                if r.ok { s.markMounted() }
                // An index the store is not bound to, already in use: refused when binding.
                let other = try MountedStore(options: [])
                defer { other.close() }
                try other.unmount()
                let r2 = try run(
                    Env.mountElastic,
                    [
                        other.backing, other.mountpoint, "-o",
                        "keyfile=\(other.keyFile),witness=tpm:0x01500016,tpm_tcti=\(tpm.tcti)",
                    ])
                #expect(r2.status == 14 && r2.stderr.contains("defined already"), "\(r2.stderr)")
                if r2.ok { other.markMounted() }
            }
        }
    }
}

/// An swtpm (TPM 2.0 simulator) on a free local port, for one test; stopped afterwards.
final class SoftwareTPM {
    let dir: String
    let port: Int
    /// (No comma: it goes inside a mount's -o list.)
    var tcti: String { "swtpm:port=\(port)" }

    init() throws {
        dir = try sh("mktemp -d /tmp/elastic-swtpm.XXXXXX").stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        port = Int(
            try sh(
                "python3 -c 'import socket; s=socket.socket(); s.bind((\"127.0.0.1\",0)); print(s.getsockname()[1])'"
            )
            .stdout.trimmingCharacters(in: .whitespacesAndNewlines))!
        try expectStarted(
            sh(
                """
                python3 -c "import subprocess; subprocess.Popen(['swtpm', 'socket', '--tpm2', '--tpmstate', 'dir=\(dir)', '--server', 'type=tcp,port=\(port),bindaddr=127.0.0.1', '--ctrl', 'type=tcp,port=\(port + 1),bindaddr=127.0.0.1', '--flags', 'not-need-init,startup-clear', '--pid', 'file=\(dir)/pid'], stdin=subprocess.DEVNULL, stdout=open('\(dir)/log', 'ab'), stderr=subprocess.STDOUT, close_fds=True, start_new_session=True)"
                for i in $(seq 100); do [ -s '\(dir)/pid' ] && python3 -c 'import socket; socket.create_connection(("127.0.0.1", \(port)))' 2>/dev/null && exit 0; sleep 0.05; done; exit 1
                """))
    }

    private func expectStarted(_ r: CommandResult) throws {
        guard r.ok else {
            stop()
            throw TestFailure("swtpm did not start: \(r.stderr)")
        }
    }

    func stop() {
        // SIGKILL: swtpm inherits the test runner's blocked signals, so SIGTERM would not end it.
        _ = try? sh("[ -s '\(dir)/pid' ] && kill -9 $(cat '\(dir)/pid'); sleep 0.1; rm -rf '\(dir)'")
    }

    static func with<T>(_ body: (SoftwareTPM) throws -> T) throws -> T {
        let t = try SoftwareTPM()
        defer { t.stop() }
        return try body(t)
    }
}
