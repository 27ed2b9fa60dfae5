import ArgumentParser
import ElasticControlClient
import ElasticCrypto
import ElasticFormat
import ElasticRuntime
import Foundation

/// `elastic encrypt --key NAME [--aad TEXT] [--in F] [--out F]`
struct EncryptCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "encrypt", abstract: "Encrypt with a stored AES-256 key (AES-256-GCM, streamed in 4 KiB segments)."
    )
    @OptionGroup var mount: MountOption
    @Option(name: .customLong("key")) var key: String
    @Option(name: .customLong("aad"), help: "Associated data: authenticated, not stored; decrypt needs the same.")
    var aad: String = ""
    @OptionGroup var io: IOOptions
    func run() throws {
        do {
            let client = try mount.client()
            let read = try io.reader()
            try io.withWriter(binary: "ciphertext") { write in
                try client.encrypt(key: try checkedKeyName(key), aad: Array(aad.utf8), read: read, write: write)
            }
        } catch { throw controlFailure(error) }
    }
}

/// `elastic decrypt [--key NAME] [--aad TEXT] [--in F] [--out F]`
struct DecryptCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "decrypt",
        abstract:
            "Decrypt `elastic encrypt` output; every segment is checked before it is written, and --out is only created if all of it verifies."
    )
    @OptionGroup var mount: MountOption
    @Option(name: .customLong("key"), help: "Default: your key of the name the input gives (never another user's).")
    var key: String?
    @Option(name: .customLong("aad")) var aad: String = ""
    @OptionGroup var io: IOOptions
    func run() throws {
        do {
            let client = try mount.client()
            let read = try io.reader()
            var used = ""
            try io.withWriter(mode: 0o600) { write in
                used = try client.decrypt(key: key.map(checkedKeyName), aad: Array(aad.utf8), read: read, write: write)
            }
            let info = try? client.keyInfo(used)
            printError("decrypted with key \(used)" + (info.map { " (owner uid \($0.owner))" } ?? ""))
        } catch let e as ControlClient.KeyChoiceError {
            throw failure(e)
        } catch { throw controlFailure(error) }
    }
}

/// Signature scheme and hash options of sign and verify.
struct SignatureOptions: ParsableArguments {
    @Option(name: .customLong("scheme"), help: "pss (RSA default), pkcs1, ecdsa or ed25519.") var scheme: String =
        "default"
    @Option(name: .customLong("hash"), help: "sha256 (default; sha384 for P-384), sha384 or sha512. Not for Ed25519.")
    var hash: String?

    func parsed() throws -> (ControlClient.SignatureScheme, ControlClient.HashAlgorithm?) {
        guard let s = ControlClient.SignatureScheme(rawValue: scheme) else {
            throw CLIError("unknown scheme \(scheme)")
        }
        guard let hash else { return (s, nil) }
        guard let h = ControlClient.HashAlgorithm(rawValue: hash) else { throw CLIError("unknown hash \(hash)") }
        return (s, h)
    }
}

/// `elastic sign --key NAME [--scheme S] [--hash H] [--in F] [--out F]`
struct SignCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sign", abstract: "Sign with a stored RSA, EC or Ed25519 key; the signature verifies with openssl."
    )
    @OptionGroup var mount: MountOption
    @Option(name: .customLong("key")) var key: String
    @OptionGroup var signature: SignatureOptions
    @Flag(name: .customLong("hex"), help: "Print the signature as hex.") var hex = false
    @OptionGroup var io: IOOptions
    func run() throws {
        do {
            let (scheme, hash) = try signature.parsed()
            let sig = try mount.client().sign(
                key: try checkedKeyName(key), scheme: scheme, hash: hash, read: try io.reader())
            try io.withWriter(binary: hex ? nil : "signature") {
                try $0(hex ? Array((Hex.encode(sig) + "\n").utf8) : sig)
            }
        } catch { throw controlFailure(error) }
    }
}

/// `elastic verify --key NAME --signature F [--scheme S] [--hash H] [--in F]`: exit 0 if valid, 22 if not.
struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify", abstract: "Verify a signature with a stored key: exit 0 if valid, 22 if not.")
    @OptionGroup var mount: MountOption
    @Option(name: .customLong("key")) var key: String
    @Option(name: .customLong("signature"), help: "The signature file.") var signatureFile: String
    @OptionGroup var signature: SignatureOptions
    @Option(name: .customLong("in"), help: "The signed data (default: stdin).") var input: String?
    @Flag(name: .customLong("json"), help: "Print {valid: true|false} (the exit code still says which).") var json =
        false
    func run() throws {
        do {
            let (scheme, hash) = try signature.parsed()
            guard let sig = FileManager.default.contents(atPath: signatureFile) else {
                throw CLIError("cannot read \(signatureFile)")
            }
            let valid = try mount.client().verify(
                key: try checkedKeyName(key), signature: [UInt8](sig), scheme: scheme, hash: hash,
                read: try IOOptions(input: input).reader())
            if json { print(try jsonLine(["valid": valid])) }
            guard valid else {
                printError("error: the signature does not verify")
                throw ExitCode(ElasticExitCode.verificationFailed.rawValue)
            }
            if !json { print("signature ok") }
        } catch let e as ExitCode { throw e } catch { throw controlFailure(error) }
    }
}

/// `elastic hmac --key NAME [--in F] [--out F | --hex]`
struct HMACCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hmac", abstract: "HMAC-SHA-256 with a stored HMAC key.")
    @OptionGroup var mount: MountOption
    @Option(name: .customLong("key")) var key: String
    @Flag(name: .customLong("hex"), help: "Print the MAC as hex.") var hex = false
    @Flag(name: .customLong("json"), help: "Print {mac (hex)}.") var json = false
    @OptionGroup var io: IOOptions
    func run() throws {
        do {
            let mac = try mount.client().sign(key: try checkedKeyName(key), hmac: true, read: try io.reader())
            let text = json ? try jsonLine(["mac": Hex.encode(mac)]) + "\n" : Hex.encode(mac) + "\n"
            try io.withWriter(binary: hex || json ? nil : "MAC") { try $0(hex || json ? Array(text.utf8) : mac) }
        } catch { throw controlFailure(error) }
    }
}
