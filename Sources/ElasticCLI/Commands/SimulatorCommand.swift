import ArgumentParser
import ElasticCrypto
import ElasticPlatform
import Foundation

/// `elastic simulator init|set|relaunch --state F`: drive the SEV-SNP simulator (tests, demos).
struct SimulatorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "simulator",
        abstract: "Create and change the state of the SEV-SNP simulator (tests and demos only).",
        subcommands: [Create.self, Set.self, Relaunch.self])

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "init", abstract: "A new simulated platform and VM launch.")
        @Option(name: .customLong("state")) var state: String
        func run() throws {
            let sim = SNPSimulator(state: try SNPSimulator.State.fresh(), stateFile: state)
            try sim.save()
            print("created SNP simulator state \(state)")
        }
    }

    struct Set: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set", abstract: "Change launch or platform fields.")
        @Option(name: .customLong("state")) var state: String
        @Option(name: .customLong("measurement"), help: "New launch measurement (96 hex digits), or 'random'.")
        var measurement: String?
        @Option(name: .customLong("policy"), help: "New guest policy (hex).") var policy: String?
        @Option(name: .customLong("committed-tcb"), help: "Committed TCB (hex u64).") var committed: String?
        @Option(name: .customLong("reported-tcb"), help: "Reported TCB (hex u64).") var reported: String?
        @Option(name: .customLong("current-tcb"), help: "TCB of the running firmware (hex u64).") var current: String?
        @Flag(name: .customLong("install-vlek"), help: "The host installs a VLEK (the firmware default then uses it).")
        var installVLEK = false
        @Flag(name: .customLong("move-to-another-chip"), help: "The VM restarts on another host: a new chip and VCEK.")
        var moveChip = false
        @Option(name: .customLong("mask-chip-id"), help: "true or false: the host masks CHIP_ID in reports.")
        var maskChipID: Bool?
        @Option(name: .customLong("mask-chip-key"), help: "true or false: the host masks the chip key (no VCEK).")
        var maskChipKey: Bool?
        @Option(name: .customLong("report-version"), help: "Report VERSION to emit: 2, 3, 4 or 5.") var reportVersion:
            UInt32?
        @Option(name: .customLong("cpu-family"), help: "CPUID family in reports (hex; 1a = Turin).") var cpuFamily:
            String?
        @Option(name: .customLong("host-busy"), help: "true or false: the host answers BUSY to every request.")
        var hostBusy: Bool?
        @Option(
            name: .customLong("install-certificates"),
            help:
                "The host serves a simulated ARK -> ASK -> VCEK chain in its certificate table; the simulated root (DER, never AMD's) is written to this file, for `attest verify --root`."
        )
        var arkOut: String?
        func run() throws {
            let sim = try SNPSimulator.load(state)
            let m: [UInt8]? = try measurement.map { $0 == "random" ? try Random.bytes(48) : try Self.hex($0, 48) }
            let p = try policy.map { try Self.u64($0) }
            let c = try committed.map { try Self.u64($0) }
            let r = try reported.map { try Self.u64($0) }
            let cur = try current.map { try Self.u64($0) }
            let family = try cpuFamily.map { try Self.u64($0) }
            if let family, family > 0xFF { throw CLIError("--cpu-family is one byte") }
            var next = sim.state
            if let m { next.measurement = m }
            if let p { next.policy = p }
            if let c { next.committedTCB = c }
            if let r { next.reportedTCB = r }
            if let cur { next.currentTCB = cur }
            if installVLEK { try next.installVLEK() }
            if moveChip { try next.moveToAnotherChip() }
            if let maskChipID { next.maskChipID = maskChipID }
            if let maskChipKey { next.maskChipKey = maskChipKey }
            if let reportVersion { next.reportVersion = reportVersion }
            if let family { next.cpuFamily = UInt8(family) }
            if let hostBusy { next.hostBusy = hostBusy }
            if let arkOut {
                let ark = try next.installCertificateChain()
                guard FileManager.default.createFile(atPath: arkOut, contents: Data(ark)) else {
                    throw CLIError("cannot write \(arkOut)")
                }
                printError("the simulated root is in \(arkOut): it is the SIMULATOR's, not AMD's")
            }
            try sim.update { $0 = next }
        }
        static func u64(_ s: String) throws -> UInt64 {
            guard let v = UInt64(s.hasPrefix("0x") ? String(s.dropFirst(2)) : s, radix: 16) else {
                throw CLIError("not a hex number: \(s)")
            }
            return v
        }
        static func hex(_ s: String, _ n: Int) throws -> [UInt8] {
            guard let b = Hex.decode(s), b.count == n else { throw CLIError("need \(2 * n) hex digits") }
            return b
        }
    }

    struct Relaunch: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Simulate a VM restart: a new VMRK, the guest device usable again.")
        @Option(name: .customLong("state")) var state: String
        func run() throws { try SNPSimulator.load(state).relaunch() }
    }
}
