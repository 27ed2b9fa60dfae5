import ElasticCrypto

/// The subkeys of a store, each derived from the master key with HKDF-SHA-256 and its own label
/// (`KeyLabels`). The master key itself is not kept.
public final class StoreKeys: Sendable {
    public let content: SecureBytes
    public let names: SecureBytes
    public let metadata: SecureBytes
    public let configMAC: SecureBytes
    /// Seals `elastic.keys`, the control file's key store.
    public let keyStore: SecureBytes
    /// Seals `elastic.root`.
    public let root: SecureBytes
    /// Keys the hashes of directory entries (`EntryDigest`).
    public let entries: SecureBytes
    /// Keys the terms of files' content digests (`BlockTags`).
    public let contentDigest: SecureBytes
    /// Keys the hashes of extended attributes (`XattrSet`).
    public let xattrs: SecureBytes

    public init(master: SecureBytes) throws {
        content = try Self.derive(master, KeyLabels.content, 32)
        names = try Self.derive(master, KeyLabels.names, 64)
        metadata = try Self.derive(master, KeyLabels.metadata, 32)
        configMAC = try Self.derive(master, KeyLabels.configMAC, 32)
        keyStore = try Self.derive(master, KeyLabels.keyStore, 32)
        root = try Self.derive(master, KeyLabels.root, 32)
        entries = try Self.derive(master, KeyLabels.entries, 32)
        contentDigest = try Self.derive(master, KeyLabels.contentDigest, 32)
        xattrs = try Self.derive(master, KeyLabels.xattrs, 32)
    }

    static func derive(_ master: SecureBytes, _ label: String, _ n: Int) throws -> SecureBytes {
        try KDF.hkdfSHA256(ikm: master, salt: [], info: Array(label.utf8), length: n)
    }
}
