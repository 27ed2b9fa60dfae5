import ArgumentParser
import ElasticFormat
import ElasticSystem
import Glibc

/// `elastic`: create stores and manage their key slots.
@main
struct Elastic: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "elastic",
        abstract: "ELASTIC: encrypted storage for confidential VMs.",
        subcommands: [InitCommand.self, SlotCommand.self])
}

/// Prints `error: …` and exits with the documented code.
func failure(_ error: any Error) -> ExitCode {
    let code: ElasticExitCode
    switch error {
    case let e as CLIError: code = e.code
    case is Passphrase.Failure: code = .keySource
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

/// Where a secret comes from: a key file, a passphrase file, or the terminal.
struct SecretOptions: ParsableArguments {
    @Option(name: .customLong("keyfile"), help: "Key file (created with a fresh random key if missing, mode 0600).")
    var keyFile: String?

    @Option(name: .customLong("passphrase-file"), help: "Read the passphrase from the first line of this file.")
    var passphraseFile: String?

    @Option(name: .customLong("scrypt-logn"), help: "scrypt cost for a new passphrase slot: N = 2^logN (default 17).")
    var scryptLogN: UInt8 = KeySlot.defaultScrypt.logN

    /// The kind of a new slot and its secret; creates a missing key file.
    func newSlot() throws -> (KeySlot.Kind, [UInt8]) {
        if keyFile != nil && passphraseFile != nil { throw CLIError("give either --keyfile or --passphrase-file, not both") }
        if let keyFile {
            let key: [UInt8]
            if access(keyFile, F_OK) == 0 {
                key = try KeyFile.read(at: keyFile)
            } else {
                key = try KeyFile.create(at: keyFile)
                print("created key file \(keyFile) (mode 0600)")
            }
            printError("warning: a key-file slot is not hardware-sealed: anyone who can read \(keyFile) can open the store. Keep it off the host-visible disk, or add an SNP-sealed slot on an SEV-SNP guest.")
            return (.keyFile(salt: try randomSalt()), key)
        }
        guard (10...24).contains(scryptLogN) else { throw CLIError("--scrypt-logn must be between 10 and 24") }
        let pass = try passphraseFile.map { try Passphrase.fromFile($0) } ?? Passphrase.prompt("New passphrase: ", confirm: true)
        let d = KeySlot.defaultScrypt
        return (.passphrase(salt: try randomSalt(), logN: scryptLogN, r: d.r, p: d.p), pass)
    }

    func randomSalt() throws -> [UInt8] { try ElasticFormatRandom.salt() }
}

/// The secret that unlocks an existing store.
struct UnlockOptions: ParsableArguments {
    @Option(name: .customLong("unlock-keyfile"), help: "Open the store with this key file.")
    var keyFile: String?

    @Option(name: .customLong("unlock-passphrase-file"), help: "Open the store with the passphrase in this file.")
    var passphraseFile: String?

    func unlock(_ backing: String) throws -> UnlockedStore {
        if let keyFile { return try Store.unlock(backing: backing, secret: .keyFile(try KeyFile.read(at: keyFile))) }
        let pass = try passphraseFile.map { try Passphrase.fromFile($0) } ?? Passphrase.prompt("Passphrase for \(backing): ", confirm: false)
        return try Store.unlock(backing: backing, secret: .passphrase(pass))
    }
}
