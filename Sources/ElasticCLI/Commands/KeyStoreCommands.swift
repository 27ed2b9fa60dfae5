import ArgumentParser
import ElasticControlClient
import ElasticCrypto
import Foundation

extension KeyCommand {
    /// `elastic key create NAME --type T [--bits N] [--exportable]`
    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a named key inside the store (it never leaves the daemon unless --exportable).")
        @OptionGroup var mount: MountOption
        @Argument var name: String
        @Option(name: .customLong("type"), help: "aes256, hmac-sha256, rsa, ec-p256, ec-p384 or ed25519.") var type:
            String
        @Option(name: .customLong("bits"), help: "RSA key size: 2048 (default) to 4096.") var bits: UInt32?
        @Flag(name: .customLong("exportable"), help: "Allow `elastic key export` to return the private key.")
        var exportable = false
        func run() throws {
            do {
                let t = try keyType(type)
                guard bits == nil || t == .rsa else { throw CLIError("--bits is for RSA keys") }
                try mount.client().createKey(
                    try checkedKeyName(name), type: t, bits: t == .rsa ? (bits ?? 2048) : 0, exportable: exportable)
            } catch { throw controlFailure(error) }
        }
    }

    /// `elastic key import NAME --type T [--in FILE] [--exportable]`
    struct Import: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Import a raw AES (32 bytes) or HMAC (16-64 bytes) secret, or a private key in PEM or DER.")
        @OptionGroup var mount: MountOption
        @Argument var name: String
        @Option(name: .customLong("type")) var type: String
        @Option(name: .customLong("in"), help: "The key file (default: stdin).") var input: String?
        @Flag(name: .customLong("exportable")) var exportable = false
        func run() throws {
            do {
                let t = try keyType(type)
                var material = try IOOptions(input: input).readAll(limit: 4096)
                defer { secureWipe(&material) }
                try mount.client().importKey(
                    try checkedKeyName(name), type: t, material: material, exportable: exportable)
            } catch { throw controlFailure(error) }
        }
    }

    /// `elastic key list [--json]`
    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Your named keys (root with --all: every user's, as UID:NAME).")
        @OptionGroup var mount: MountOption
        @Flag(name: .customLong("all"), help: "Every user's keys (root only).") var all = false
        @Flag(name: .customLong("json")) var json = false
        func run() throws {
            do {
                let keys = try mount.client().listKeys(everyone: all)
                if json {
                    print(try jsonLine(keys.map(describe)))
                } else {
                    for k in keys { print(line(k)) }
                }
            } catch { throw controlFailure(error) }
        }
    }

    /// `elastic key info NAME [--json]`
    struct Info: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Type, size, owner and creation time of a named key.")
        @OptionGroup var mount: MountOption
        @Argument var name: String
        @Flag(name: .customLong("json")) var json = false
        func run() throws {
            do {
                let k = try mount.client().keyInfo(try checkedKeyName(name))
                print(json ? try jsonLine(describe(k)) : line(k))
            } catch { throw controlFailure(error) }
        }
    }

    /// `elastic key public NAME [--out FILE]`
    struct Public: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The public key (PEM) of an RSA, EC or Ed25519 key.")
        @OptionGroup var mount: MountOption
        @Argument var name: String
        @Option(name: .customLong("out")) var output: String?
        func run() throws {
            do {
                let pem = try mount.client().publicKey(try checkedKeyName(name))
                try IOOptions(output: output).withWriter { try $0(pem) }
            } catch { throw controlFailure(error) }
        }
    }

    /// `elastic key export NAME [--out FILE]`
    struct Export: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The private key (PKCS#8 PEM) or raw secret of a key created --exportable.")
        @OptionGroup var mount: MountOption
        @Argument var name: String
        @Option(name: .customLong("out"), help: "Written with mode 0600 (default: stdout).") var output: String?
        func run() throws {
            do {
                var secret = try mount.client().exportKey(try checkedKeyName(name))
                defer { secureWipe(&secret) }
                // PEM is text; a raw AES or HMAC secret is not shown on a terminal.
                let pem = secret.starts(with: Array("-----BEGIN".utf8))
                try IOOptions(output: output).withWriter(mode: 0o600, binary: pem ? nil : "secret key") {
                    try $0(secret)
                }
            } catch { throw controlFailure(error) }
        }
    }

    /// `elastic key delete NAME`
    struct Delete: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete a named key (for good: data encrypted under it cannot be decrypted).")
        @OptionGroup var mount: MountOption
        @Argument var name: String
        func run() throws {
            do { try mount.client().deleteKey(try checkedKeyName(name)) } catch { throw controlFailure(error) }
        }
    }
}

func keyType(_ s: String) throws -> ControlClient.KeyType {
    guard let t = ControlClient.KeyType(rawValue: s) else {
        throw CLIError(
            "unknown key type \(s) (one of: \(ControlClient.KeyType.allCases.map(\.rawValue).joined(separator: ", ")))")
    }
    return t
}

func describe(_ k: ControlClient.KeyInfo) -> [String: Any] {
    [
        "name": k.name, "type": k.type?.rawValue ?? "unknown", "bits": k.bits, "exportable": k.exportable,
        "owner": k.owner, "created": k.created,
    ]
}

func line(_ k: ControlClient.KeyInfo) -> String {
    let created = ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: TimeInterval(k.created)))
    return
        "\(k.owner == getuid() ? k.name : "\(k.owner):\(k.name)")\t\(k.type?.rawValue ?? "unknown")\t\(k.bits)\tuid=\(k.owner)\t\(created)\(k.exportable ? "\texportable" : "")"
}

func jsonLine(_ obj: Any) throws -> String {
    String(
        decoding: try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys, .withoutEscapingSlashes]),
        as: UTF8.self)
}

/// Checks a key name before it goes to the daemon, for a clear message instead of EINVAL.
func checkedKeyName(_ name: String) throws -> String {
    var bare = Substring(name)
    if let colon = name.firstIndex(of: ":") {
        let owner = name[..<colon]
        guard !owner.isEmpty, owner.count <= 10, owner.allSatisfy({ $0.isASCII && $0.isNumber }) else {
            throw CLIError("invalid key name \"\(name)\": NAME, or UID:NAME for another user's key (root)")
        }
        bare = name[name.index(after: colon)...]
    }
    let ok =
        name.utf8.count <= 63 && (1...63).contains(bare.utf8.count)
        && bare.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c == 0x2e || c == 0x5f
                || c == 0x2d
        }
    guard ok else {
        throw CLIError("invalid key name \"\(name)\": 1 to 63 of A-Z a-z 0-9 . _ - (UID:NAME at most 63 in all)")
    }
    return name
}
