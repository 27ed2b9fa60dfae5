import ArgumentParser
import ElasticCrypto
import ElasticPlatform

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
        func run() throws {
            let sim = try SNPSimulator.load(state)
            let m: [UInt8]? = try measurement.map { $0 == "random" ? try Random.bytes(48) : try Self.hex($0, 48) }
            let p = try policy.map { try Self.u64($0) }
            let c = try committed.map { try Self.u64($0) }
            let r = try reported.map { try Self.u64($0) }
            try sim.update { s in
                if let m { s.measurement = m }
                if let p { s.policy = p }
                if let c { s.committedTCB = c }
                if let r { s.reportedTCB = r }
            }
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
