import ElasticCrypto

/// Symlink targets in BACKING: sealed with AES-256-GCM under the metadata key (associated data
/// `KeyLabels.symlink`) and stored base64url-encoded as the backing symlink's own target; a
/// target whose encoding is too long for a symlink (4095 bytes) is stored sealed in
/// `elastic.links/<id>` and the backing symlink points there (`elastic.link:<id>`).
public enum SymlinkCodec {
    /// Longest plaintext target (PATH_MAX - 1).
    public static let maxTarget = 4095
    /// Longest backing symlink target ELASTIC writes.
    public static let maxBackingTarget = 4095
    static let context = Array(KeyLabels.symlink.utf8)

    /// Where a sealed target lives.
    public enum Stored: Equatable {
        /// In the backing symlink itself: its target string.
        case inline(String)
        /// In `elastic.links/<id>`, holding `sealed`; the backing symlink's target is `reference`.
        case long(id: String, sealed: [UInt8])

        public var backingTarget: String {
            switch self {
            case .inline(let s): return s
            case .long(let id, _): return BackingNames.longLinkPrefix + id
            }
        }
    }

    /// Seals `target` and chooses where it is stored.
    public static func seal(_ target: [UInt8], with crypto: CryptoWorker) throws -> Stored {
        let sealed = try crypto.sealMetadata(target, context: context)
        let encoded = Base64URL.encode(sealed)
        if encoded.utf8.count <= maxBackingTarget { return .inline(encoded) }
        return .long(id: Hex.encode(try Random.bytes(16)), sealed: sealed)
    }

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

    /// The plaintext length of a target, without decrypting it: from the length of the backing
    /// symlink's target, or of the long-link file.
    public static func plaintextLength(inlineTargetLength n: Int) -> Int { max(0, n * 6 / 8 - overhead) }
    public static func plaintextLength(longFileSize n: Int) -> Int { max(0, n - overhead) }
    static let overhead = AESGCM.nonceSize + AESGCM.tagSize
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
