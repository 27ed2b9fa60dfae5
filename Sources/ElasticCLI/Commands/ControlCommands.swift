import ArgumentParser
import ElasticControlClient
import ElasticCrypto
import ElasticPlatform
import ElasticSystem
import Foundation

/// Finds the mount: --mount, or the nearest ELASTIC mount above the current directory.
struct MountOption: ParsableArguments {
    @Option(
        name: .customLong("mount"), help: "The ELASTIC mount point (default: the one containing the current directory)."
    )
    var mount: String?

    func client() throws -> ControlClient {
        do { return try ControlClient(mountpoint: mount) } catch {
            throw CLIError(
                "no ELASTIC control file at \(mount ?? "any mount above the current directory"): \(error)", .usage)
        }
    }
}

/// `elastic time [--clock C] [--json]`
struct TimeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "time", abstract: "Read a clock through the mount (trusted with SEV-SNP Secure TSC).")
    @OptionGroup var mount: MountOption
    @Option(
        name: .customLong("clock"),
        help: "realtime, monotonic, boottime, monotonic-raw (the one Secure TSC makes trusted), process or thread.")
    var clock: String = "realtime"
    @Flag(name: .customLong("json")) var json = false

    func run() throws {
        do {
            guard let c = ControlClient.Clock.allCases.first(where: { $0.name == clock }) else {
                throw CLIError("unknown clock \(clock)")
            }
            let r = try mount.client().clock(c)
            let digits = String(r.nanoseconds)
            let ns = String(repeating: "0", count: max(0, 9 - digits.count)) + digits
            if json {
                let obj: [String: Any] = [
                    "clock": clock, "seconds": r.seconds, "nanoseconds": r.nanoseconds,
                    "resolution_ns": r.resolutionNanoseconds,
                    "trusted": r.trusted, "source": r.source, "utc_offset": r.utcOffset, "timezone": r.timezone,
                ]
                print(
                    String(
                        decoding: try JSONSerialization.data(
                            withJSONObject: obj, options: [.sortedKeys, .withoutEscapingSlashes]), as: UTF8.self))
            } else {
                print(
                    "\(clock) \(r.seconds).\(ns) resolution=\(r.resolutionNanoseconds)ns source=\(r.source) \(r.trusted ? "trusted" : "host-influenced") tz=\(r.timezone)\(r.utcOffset >= 0 ? "+" : "")\(r.utcOffset)s"
                )
            }
        } catch { throw controlFailure(error) }
    }
}

/// `elastic random N [--hex]`
struct RandomCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "random", abstract: "Random bytes from the daemon's CSPRNG (raw to stdout, or hex).")
    @OptionGroup var mount: MountOption
    @Argument var count: Int
    @Flag(name: .customLong("hex")) var hex = false
    @Flag(name: .customLong("json")) var json = false
    func run() throws {
        do {
            guard count > 0, count <= 1 << 20 else { throw CLIError("count must be 1..1048576") }
            let bytes = try mount.client().random(count)
            if json {
                print(try jsonLine(["random": Hex.encode(bytes)]))
            } else if hex {
                print(Hex.encode(bytes))
            } else {
                try refuseBinaryOnTerminal("random bytes")
                FileHandle.standardOutput.write(Data(bytes))
            }
        } catch { throw controlFailure(error) }
    }
}

/// `elastic key derive|create|import|list|info|public|export|delete`
struct KeyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "key", abstract: "Derived keys, and the named keys kept sealed in the store.",
        subcommands: [
            Derive.self, Create.self, Import.self, List.self, Info.self, Public.self, Export.self, Delete.self,
        ])

    struct Derive: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "A key bound to LABEL and your uid: the same across remounts and reboots.")
        @OptionGroup var mount: MountOption
        @Argument var label: String
        @Option(name: .customLong("length")) var length: Int = 32
        @Flag(name: .customLong("hex")) var hex = false
        @Flag(name: .customLong("json")) var json = false
        func run() throws {
            do {
                let key = try mount.client().derive(label: Array(label.utf8), length: length)
                if json {
                    print(try jsonLine(["label": label, "key": Hex.encode(key)]))
                } else if hex {
                    print(Hex.encode(key))
                } else {
                    try refuseBinaryOnTerminal("key")
                    FileHandle.standardOutput.write(Data(key))
                }
            } catch { throw controlFailure(error) }
        }
    }
}

/// `elastic hash [--algorithm sha256|sha384|sha512] [FILE]` (stdin without FILE), streamed.
struct HashCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hash", abstract: "SHA-2 of a file or stdin, computed by the daemon (streamed).")
    @OptionGroup var mount: MountOption
    @Option(name: .customLong("algorithm")) var algorithm: String = "sha256"
    @Argument var file: String?
    @Flag(name: .customLong("json")) var json = false
    func run() throws {
        do {
            guard let alg = ControlClient.HashAlgorithm(rawValue: algorithm) else {
                throw CLIError("unknown algorithm \(algorithm)")
            }
            let input =
                try file.map { path -> FileHandle in
                    guard let h = FileHandle(forReadingAtPath: path) else {
                        throw CLIError("cannot read \(path)", .usage)
                    }
                    return h
                } ?? FileHandle.standardInput
            let digest = try mount.client().hash(alg) { [UInt8](input.readData(ofLength: 1 << 16)) }
            print(
                json
                    ? try jsonLine(["algorithm": algorithm, "digest": Hex.encode(digest), "file": file ?? "-"])
                    : Hex.encode(digest) + "  " + (file ?? "-"))
        } catch { throw controlFailure(error) }
    }
}

/// `elastic attest [report] --report-data HEX [--out FILE]` and `elastic attest verify`.
struct AttestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "attest",
        abstract: "Attestation reports: get one (the default) or verify one.",
        subcommands: [AttestReport.self, AttestVerifyCommand.self], defaultSubcommand: AttestReport.self)
}

/// `elastic attest report --report-data HEX [--out FILE]`: a report carrying 64 bytes of your data.
struct AttestReport: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "An attestation report (SEV-SNP, or the TDX TDREPORT) with your 64 bytes of report data.")
    @OptionGroup var mount: MountOption
    @Option(name: .customLong("report-data"), help: "Up to 64 bytes as hex (zero-padded).") var reportData: String = ""
    @Option(name: .customLong("out"), help: "Write the binary report here (default: hex on stdout).") var out: String?
    @Option(
        name: .customLong("evidence"),
        help:
            "Write report.bin and the host's certificates (vcek.der, ask.der, ark.der, ...) into this directory, for `elastic attest verify --report DIR/report.bin --certs DIR`."
    )
    var evidence: String?
    @Flag(name: .customLong("json"), help: "Print {platform, report (hex)}.") var json = false
    func run() throws {
        do {
            guard reportData.count <= 128, var data = Hex.decode(reportData) else {
                throw CLIError("--report-data takes up to 128 hex digits")
            }
            data += [UInt8](repeating: 0, count: 64 - data.count)
            let client = try mount.client()
            if let evidence { return try writeEvidence(client, data, to: evidence) }
            let r: (platform: UInt32, report: [UInt8])
            do { r = try client.attest(reportData: data) } catch let e as Errno where e == .notSupported {
                throw CLIError(
                    "attestation is not available here: this is not an SEV-SNP guest (see elastic doctor)",
                    .notAvailable)
            }
            if r.platform == 2 { printError("WARNING: this report comes from the SEV-SNP SIMULATOR, not hardware") }
            if r.platform == 3 {
                printError(
                    "note: a TDX TDREPORT is MAC'ed for this machine only; a remote verifier needs it as a Quote (configfs-tsm)"
                )
            }
            if let out {
                guard FileManager.default.createFile(atPath: out, contents: Data(r.report)) else {
                    throw CLIError("cannot write \(out)")
                }
            } else if json {
                let names: [UInt32: String] = [1: "sev-snp", 2: "sev-snp-simulator", 3: "tdx"]
                print(try jsonLine(["platform": names[r.platform] ?? "\(r.platform)", "report": Hex.encode(r.report)]))
            } else {
                print(Hex.encode(r.report))
            }
        } catch { throw controlFailure(error) }
    }
}

extension AttestReport {
    /// The report and the host's certificate table, as files a verifier takes.
    func writeEvidence(_ client: ControlClient, _ data: [UInt8], to dir: String) throws {
        let e: (platform: UInt32, report: [UInt8], certificates: [UInt8])
        do { e = try client.evidence(reportData: data) } catch let err as Errno where err == .notSupported {
            throw CLIError(
                "attestation is not available here: this is not an SEV-SNP guest (see elastic doctor)", .notAvailable)
        }
        guard [1, 2, 4].contains(e.platform) else {
            throw CLIError(
                "this platform gives a TDREPORT only (no configfs-tsm Quote), which no remote verifier can check",
                .notAvailable)
        }
        if e.platform == 2 { printError("WARNING: this report comes from the SEV-SNP SIMULATOR, not hardware") }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        if e.platform == 4 {
            try write("quote.bin", e.report)
            printError("a TDX Quote (from configfs-tsm): verify it with Intel's DCAP quote verification")
            return
        }
        func write(_ name: String, _ bytes: [UInt8]) throws {
            let path = (dir as NSString).appendingPathComponent(name)
            guard FileManager.default.createFile(atPath: path, contents: Data(bytes)) else {
                throw CLIError("cannot write \(path)")
            }
            print(path)
        }
        try write("report.bin", e.report)
        let table = try SNPCertificateTable(parsing: e.certificates)
        for entry in table.entries { try write((entry.name ?? entry.guid) + ".der", entry.der) }
        if table.entries.isEmpty {
            printError("the host supplies no certificates: give the verifier the VCEK (from AMD's KDS) with --vcek")
        }
    }
}
