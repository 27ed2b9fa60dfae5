import ElasticCrypto

/// Version 1 symlink targets (read only by `elastic migrate`): sealed with AES-256-GCM under
/// the metadata key (associated data `KeyLabels.symlink`) and stored base64url-encoded as the
/// backing symlink's own target, or, when too long for one, sealed in `elastic.links/<id>` with
/// the backing symlink pointing there (`elastic.link:<id>`). Version 2 symlinks are files.
public enum SymlinkCodec {
    static let context = Array(KeyLabels.symlink.utf8)

    public static func open(_ sealed: [UInt8], with crypto: CryptoWorker) throws -> [UInt8] {
        try crypto.openMetadata(sealed, context: context)
    }

    /// What a backing symlink's target refers to: sealed bytes inline, or a long-link ID.
    public enum Reference: Equatable {
        case inline([UInt8])
        case long(id: String)
    }

    /// Parses a backing symlink's target (hostile input: a malformed one is corrupt metadata).
    public static func reference(backingTarget: String) throws -> Reference {
        if backingTarget.hasPrefix(BackingNames.longLinkPrefix) {
            let id = String(backingTarget.dropFirst(BackingNames.longLinkPrefix.count))
            guard id.utf8.count == 32, id.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) })
            else {
                throw FormatError.corruptMetadata("long link reference")
            }
            return .long(id: id)
        }
        guard let raw = Base64URL.decode(backingTarget) else {
            throw FormatError.corruptMetadata("symlink target encoding")
        }
        return .inline(raw)
    }
}

/// Extended attributes in BACKING: only the `user.` namespace is stored; the rest of the name is
/// encrypted like a file name (AES-SIV) under the fixed IV `KeyLabels.xattrName`, and the value
/// is sealed under the metadata key with the encrypted name as associated data (so a value
/// cannot be moved to another attribute).
public enum XattrCodec {
    public static let userPrefix = Array("user.".utf8)
    static let iv = Array(KeyLabels.xattrName.utf8)

    /// The backing name of a `user.*` attribute; nil for any other namespace.
    public static func backingName(_ name: [UInt8], with crypto: CryptoWorker) throws -> String? {
        guard name.starts(with: userPrefix), name.count > userPrefix.count else { return nil }
        return "user." + (try crypto.encryptName(Array(name.dropFirst(userPrefix.count)), dirIV: iv))
    }

    /// The plaintext name of a backing attribute, or nil when it is not one of ours.
    public static func name(backingName: ArraySlice<UInt8>, with crypto: CryptoWorker) -> [UInt8]? {
        guard backingName.starts(with: userPrefix) else { return nil }
        let encoded = String(decoding: backingName.dropFirst(userPrefix.count), as: UTF8.self)
        guard let plain = try? crypto.decryptName(encoded, dirIV: iv) else { return nil }
        return userPrefix + plain
    }

    public static func sealValue(_ value: [UInt8], backingName: String, with crypto: CryptoWorker) throws -> [UInt8] {
        try crypto.sealMetadata(value, context: Array(backingName.utf8))
    }

    public static func openValue(_ sealed: [UInt8], backingName: String, with crypto: CryptoWorker) throws -> [UInt8] {
        try crypto.openMetadata(sealed, context: Array(backingName.utf8))
    }
}
