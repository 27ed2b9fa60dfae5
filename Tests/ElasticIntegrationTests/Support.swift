import ElasticFormat
import Foundation
import Testing

/// Result of running a command.
struct CommandResult {
    let status: Int32
    let stdout: String
    let stderr: String
    var ok: Bool { status == 0 }
}

enum Env {
    /// Package root, from this file's path (Tests/ElasticIntegrationTests/Support.swift).
    static let packageRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// Where the built binaries are: $ELASTIC_BIN_DIR, or .build/debug of the package.
    static let binDir: String = ProcessInfo.processInfo.environment["ELASTIC_BIN_DIR"] ?? packageRoot + "/.build/debug"
    static var elastic: String { binDir + "/elastic" }
    static var mountElastic: String { binDir + "/mount.elastic" }
    static var scripts: String { packageRoot + "/Tests/ElasticIntegrationTests/Scripts" }

    static let canMount = FileManager.default.fileExists(atPath: "/dev/fuse") && geteuid() == 0
}

/// Runs `exe` with `args` and waits for it to exit. Output goes to temporary files, not pipes:
/// a daemon the command leaves running must not keep the caller waiting for EOF.
@discardableResult
func run(_ exe: String, _ args: [String], stdin: String? = nil, cwd: String? = nil, env: [String: String] = [:]) throws
    -> CommandResult
{
    let tmp = NSTemporaryDirectory() + "elastic-run-\(UUID().uuidString)"
    let outPath = tmp + ".out", errPath = tmp + ".err", inPath = tmp + ".in"
    guard FileManager.default.createFile(atPath: outPath, contents: nil),
        FileManager.default.createFile(atPath: errPath, contents: nil),
        FileManager.default.createFile(atPath: inPath, contents: Data((stdin ?? "").utf8))
    else {
        throw TestFailure("cannot create the temporary files of \(exe)")
    }
    defer { for p in [outPath, errPath, inPath] { try? FileManager.default.removeItem(atPath: p) } }
    let out = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
    let err = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
    let input = try FileHandle(forReadingFrom: URL(fileURLWithPath: inPath))
    defer {
        try? out.close()
        try? err.close()
        try? input.close()
    }
    let p = Process()
    p.executableURL = URL(fileURLWithPath: exe)
    p.arguments = args
    if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
    if !env.isEmpty { p.environment = ProcessInfo.processInfo.environment.merging(env) { $1 } }
    p.standardOutput = out
    p.standardError = err
    p.standardInput = input
    try p.run()
    p.waitUntilExit()
    let o = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
    let e = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
    return CommandResult(status: p.terminationStatus, stdout: o, stderr: e)
}

/// Runs a bash script (with `set -euo pipefail`).
@discardableResult
func sh(_ script: String, cwd: String? = nil, env: [String: String] = [:]) throws -> CommandResult {
    try run("/bin/bash", ["-c", "set -euo pipefail\n" + script], cwd: cwd, env: env)
}

/// A fresh store in a temporary directory, mounted through the real `mount.elastic` (in the
/// background, as a user would). Always unmounted and deleted by `close()`.
final class MountedStore {
    let dir: String
    let backing: String
    let mountpoint: String
    let keyFile: String
    /// Command words put before `mount.elastic` (`prlimit --nofile=...`, say).
    let launcher: [String]
    /// With a log: the daemon runs in the foreground (`-f`) with its log in this file.
    let daemonLog: String?
    private(set) var mounted = false

    /// `base`: where the store and mount point go (/dev/shm keeps metadata-heavy tests off the
    /// shared disk, whose ext4 slows down under heavy create/delete churn).
    init(options: [String] = [], launcher: [String] = [], foregroundLog: Bool = false, base: String = "/tmp") throws {
        self.launcher = launcher
        dir = try sh("mktemp -d '\(base)/elastic-test.XXXXXX'").stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        backing = dir + "/store"
        mountpoint = dir + "/mnt"
        keyFile = dir + "/store.key"
        daemonLog = foregroundLog ? dir + "/daemon.log" : nil
        try FileManager.default.createDirectory(atPath: mountpoint, withIntermediateDirectories: true)
        let r = try run(Env.elastic, ["init", "--keyfile", keyFile, backing])
        guard r.ok else {
            close()
            throw TestFailure("elastic init failed: \(r.stderr)")
        }
        do { try mount(options: options) } catch {
            close()  // nothing of a store that never mounted is left behind
            throw error
        }
    }

    func mount(options: [String] = []) throws {
        let args = [backing, mountpoint, "-o", (["keyfile=" + keyFile] + options).joined(separator: ",")]
        if let daemonLog {
            // Started through Python so it inherits no descriptor but stdio (Foundation's
            // Process would otherwise wait for the daemon to close one of its sockets).
            let argv = (launcher + [Env.mountElastic] + args + ["-f"]).map { "'\($0)'" }.joined(separator: ", ")
            try sh(
                """
                python3 -c "import subprocess; subprocess.Popen([\(argv)], stdin=subprocess.DEVNULL, stdout=open('\(daemonLog)', 'ab'), stderr=subprocess.STDOUT, close_fds=True, start_new_session=True)"
                """)
            for _ in 0..<200 {
                if try sh("grep -q ' \(mountpoint) ' /proc/mounts && echo yes || true").stdout.contains("yes") {
                    mounted = true
                    return
                }
                usleep(50_000)
            }
            throw TestFailure(
                "mount.elastic -f did not mount: \((try? String(contentsOfFile: daemonLog, encoding: .utf8)) ?? "")")
        }
        let r =
            launcher.isEmpty
            ? try run(Env.mountElastic, args) : try run("/usr/bin/env", launcher + [Env.mountElastic] + args)
        guard r.ok else { throw TestFailure("mount.elastic failed (\(r.status)): \(r.stderr)") }
        mounted = true
    }

    /// The daemon's process id (while mounted).
    func daemonPID() throws -> Int32? {
        // Anchored, so the shell running pgrep (whose command line holds the pattern) never matches.
        Int32(
            try sh("pgrep -f -- '^[^ ]*mount[.]elastic \(backing) ' | head -1 || true").stdout.trimmingCharacters(
                in: .whitespacesAndNewlines))
    }

    /// What every thread of the daemon is doing (kernel stacks, and user stacks if gdb is
    /// installed): for the message of a test that found the daemon stuck.
    func daemonStacks() -> String {
        guard let pid = try? daemonPID() else { return "no daemon process" }
        let r = try? sh(
            """
            for t in /proc/\(pid)/task/*; do echo "== $t $(cat $t/comm) $(cat $t/wchan)"; cat $t/stack 2>/dev/null | head -6; done
            command -v gdb >/dev/null && timeout 60 gdb -p \(pid) -batch -ex 'thread apply all bt 14' 2>/dev/null | grep -E '^Thread|^#' | head -300 || true
            """)
        return r?.stdout ?? "cannot read the daemon's stacks"
    }

    /// Descriptors the daemon has open now.
    func daemonDescriptors() throws -> Int {
        guard let pid = try daemonPID() else { throw TestFailure("no daemon for \(backing)") }
        return try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count
    }

    /// For tests that end the daemon themselves (a SIGKILL): the mount is gone already.
    func markUnmounted() { mounted = false }
    /// For tests that mounted the store themselves (to see mount.elastic's own output).
    func markMounted() { mounted = true }

    func unmount() throws {
        guard mounted else { return }
        for attempt in 0..<50 {
            let r = try run("/bin/fusermount3", ["-u", mountpoint])
            if r.ok { break }
            if attempt == 49 { throw TestFailure("cannot unmount \(mountpoint): \(r.stderr)") }
            usleep(100_000)
        }
        mounted = false
        try waitForDaemonExit(backing: backing)
    }

    func remount(options: [String] = []) throws {
        try unmount()
        try mount(options: options)
    }

    func path(_ p: String) -> String { mountpoint + "/" + p }

    func close() {
        if mounted {
            try? unmount()
            if mounted { _ = try? run("/bin/fusermount3", ["-uz", mountpoint]) }
        }
        _ = try? run("/bin/rm", ["-rf", dir])
    }

    /// The backing path of the one file (not ELASTIC's own) whose plaintext is `plainSize`
    /// bytes: its backing length is what the block layout gives.
    func backingFile(plainSize: Int) throws -> String {
        let size = BlockLayout.ciphertextSize(plain: Int64(plainSize))
        let found = try sh("find '\(backing)' -type f ! -name 'elastic.*' -size \(size)c").stdout.split(separator: "\n")
        guard found.count == 1 else {
            throw TestFailure("expected one backing file of \(plainSize) plaintext bytes, found \(found)")
        }
        return String(found[0])
    }

    /// Runs `body` on a fresh mounted store and always cleans up.
    static func with<T>(
        options: [String] = [], launcher: [String] = [], foregroundLog: Bool = false, base: String = "/tmp",
        _ body: (MountedStore) throws -> T
    ) throws -> T {
        let s = try MountedStore(options: options, launcher: launcher, foregroundLog: foregroundLog, base: base)
        defer { s.close() }
        return try body(s)
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// Fails the current test with the output of a failed command.
func expectOK(_ r: CommandResult, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(
        r.ok, "\(what) failed with \(r.status)\nstdout:\n\(r.stdout)\nstderr:\n\(r.stderr)",
        sourceLocation: sourceLocation)
}

/// Waits until no daemon serves `backing` any more (after an unmount, the auto_unmount watcher
/// and the daemon both go; the daemon writes its versions map first: up to half a minute on a
/// loaded machine).
func waitForDaemonExit(backing: String) throws {
    for _ in 0..<600 {
        // Anchored, so the shell running pgrep (whose command line holds the pattern) never matches.
        let r = try sh("pgrep -f -- '^[^ ]*mount[.]elastic \(backing) ' >/dev/null || echo gone")
        if r.stdout.contains("gone") { return }
        usleep(50_000)
    }
}

/// Expects `output` to be a refusal (EIO) that shows nothing of `hidden`. The store's
/// temporary path is taken out first: error messages name it, and a random name can hold a
/// short value such as "v1" by chance.
func expectRefused(
    _ output: String, hiding hidden: String, in s: MountedStore, sourceLocation: SourceLocation = #_sourceLocation
) {
    let shown = output.replacingOccurrences(of: s.dir, with: "<store>")
    #expect(
        shown.contains("Input/output error") && !shown.contains(hidden), "\(output)", sourceLocation: sourceLocation)
}

/// Changes the byte at `offset` of `path` (XOR 0xFF: always a change, unlike writing a fixed
/// byte, which random data already holds once in 256 times).
func flipByte(_ path: String, at offset: Int) throws {
    try expectOK(
        sh(
            "python3 -c 'import sys; f = open(sys.argv[1], \"r+b\"); f.seek(int(sys.argv[2])); b = f.read(1); f.seek(int(sys.argv[2])); f.write(bytes([b[0] ^ 0xFF]))' '\(path)' \(offset)"
        ), "flip byte \(offset) of \(path)")
}
