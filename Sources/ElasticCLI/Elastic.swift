import ArgumentParser
import ElasticFormat
import ElasticPlatform
import ElasticRuntime
import ElasticSystem
import Glibc

/// `elastic`: create stores and manage their key slots.
@main
struct Elastic: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "elastic",
        abstract: "ELASTIC: encrypted storage for confidential VMs.",
        subcommands: [
            InitCommand.self, SlotCommand.self, TimeCommand.self, RandomCommand.self, HashCommand.self, KeyCommand.self,
            EncryptCommand.self, DecryptCommand.self, SignCommand.self, VerifyCommand.self, HMACCommand.self,
            AttestCommand.self, DoctorCommand.self, FsckCommand.self, RekeyCommand.self, MigrateCommand.self,
            SimulatorCommand.self, TLSCommand.self,
        ])

    /// Master keys, passphrases and exported keys pass through this process: no core dump, no
    /// ptrace by other users.
    static func main() {
        _ = ProcessHardening.setNonDumpable()
        StoreRootKeeper.defaultOpener.withLock { $0 = Witnesses.opener() }
        main(nil)
    }
}

/// Prints `error: …` and exits with the documented code.
func failure(_ error: any Error) -> ExitCode {
    let code: ElasticExitCode
    switch error {
    case let e as CLIError: code = e.code
    default: code = ElasticExitCode.forStoreError(error)
    }
    printError("error: \(error)")
    return ExitCode(code.rawValue)
}

func printError(_ s: String) {
    let line = s + "\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
}

struct CLIError: Error, CustomStringConvertible {
    let description: String
    let code: ElasticExitCode
    init(_ d: String, _ c: ElasticExitCode = .usage) {
        description = d
        code = c
    }
}

/// Which SEV-SNP guest to use: the real device, or the simulator for tests and demos.
struct PlatformOptions: ParsableArguments {
    @Option(name: .customLong("platform"), help: "snp (default on an SEV-SNP guest) or snp-simulator.")
    var platform: String?

    @Option(
        name: .customLong("simulator-state"), help: "State file of the SNP simulator (with --platform snp-simulator).")
    var simulatorState: String?

    var choice: PlatformChoice { PlatformChoice(name: platform, simulatorState: simulatorState) }

    func open() throws -> any SealingPlatform { try choice.openSealing { printError($0) } }
}

/// Where a secret comes from: a key file, a passphrase file, the terminal, or SEV-SNP sealing.
struct SecretOptions: ParsableArguments {
    @Option(name: .customLong("seal"), help: "Seal the slot with the platform: snp.")
    var seal: String?

    @Option(
        name: .customLong("root-key"),
        help:
            "SNP root key: vcek (default: this chip), vlek (the cloud provider's fleet key) or vmrk (new at every VM restart)."
    )
    var rootKey: String = "vcek"

    @Flag(
        name: .customLong("force-vmrk"),
        help: "Allow a VMRK-rooted slot on a persistent store (it stops working after a restart).")
    var forceVMRK = false

    @OptionGroup var platformOptions: PlatformOptions

    @Option(name: .customLong("keyfile"), help: "Key file (created with a fresh random key if missing, mode 0600).")
    var keyFile: String?

    @Option(name: .customLong("passphrase-file"), help: "Read the passphrase from the first line of this file.")
    var passphraseFile: String?

    @Option(
        name: .customLong("scrypt-logn"),
        help: "scrypt cost for a new passphrase slot: N = 2^logN, 10 to 20 (default 17).")
    var scryptLogN: UInt8 = KeySlot.defaultScrypt.logN

    /// The kind of a new slot and its secret; creates a missing key file.
    func newSlot() throws -> (KeySlot.Kind, [UInt8]) {
        if [keyFile != nil, passphraseFile != nil, seal != nil].filter({ $0 }).count > 1 {
            throw CLIError("give one of --keyfile, --passphrase-file or --seal")
        }
        if let seal {
            guard PlatformRegistry.descriptor(named: seal) != nil else {
                let names = PlatformRegistry.sealing.map(\.name).joined(separator: ", ")
                throw CLIError(
                    "--seal takes \(names) (TDX has no sealing key in mainline Linux; use keyfile or passphrase there)")
            }
            if rootKey == "vmrk" && !forceVMRK {
                throw CLIError(
                    "refusing a VMRK-rooted slot: the VMRK is new at every VM launch, so the store would be lost at the next restart (--force-vmrk to insist)"
                )
            }
            let platform = try platformOptions.open()
            let (parameters, secret) = try platform.seal(SealChoice(rootKey: rootKey))
            return (
                .sealed(platform: platform.descriptor.slotCode, salt: try randomSalt(), parameters: parameters), secret
            )
        }
        if let keyFile {
            let key: [UInt8]
            if access(keyFile, F_OK) == 0 {
                key = try KeyFile.read(at: keyFile)
            } else {
                key = try KeyFile.create(at: keyFile)
                print("created key file \(keyFile) (mode 0600)")
            }
            printError(
                "warning: a key-file slot is not hardware-sealed: anyone who can read \(keyFile) can open the store. Keep it off the host-visible disk, or add an SNP-sealed slot on an SEV-SNP guest."
            )
            return (.keyFile(salt: try randomSalt()), key)
        }
        guard KeySlot.scryptAllowed(logN: scryptLogN, r: KeySlot.defaultScrypt.r, p: KeySlot.defaultScrypt.p) else {
            throw CLIError("--scrypt-logn must be between 10 and 20 (1 GiB of memory at most)")
        }
        let pass =
            try passphraseFile.map { try Passphrase.fromFile($0) }
            ?? Passphrase.prompt("New passphrase: ", confirm: true)
        let d = KeySlot.defaultScrypt
        return (.passphrase(salt: try randomSalt(), logN: scryptLogN, r: d.r, p: d.p), pass)
    }

    func randomSalt() throws -> [UInt8] { try ElasticFormatRandom.salt() }
}

/// The secret that unlocks an existing store.
struct UnlockOptions: ParsableArguments {
    @Flag(name: .customLong("unlock-snp"), help: "Open the store with its SEV-SNP sealed slot.")
    var snp = false

    @Option(name: .customLong("unlock-keyfile"), help: "Open the store with this key file.")
    var keyFile: String?

    @Option(name: .customLong("unlock-passphrase-file"), help: "Open the store with the passphrase in this file.")
    var passphraseFile: String?

    func unlock(_ backing: String, platform: PlatformOptions, migrating: Bool = false) throws -> UnlockedStore {
        let source: KeySource
        if snp {
            source = .platform(platform.choice)
        } else if let keyFile {
            source = .keyFile(keyFile)
        } else if let passphraseFile {
            source = .passphraseFile(passphraseFile)
        } else {
            source = .passphrasePrompt
        }
        return try StoreOpener.unlock(backing: backing, source: source, migrating: migrating) { printError($0) }
    }
}
