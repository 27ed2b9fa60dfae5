import ElasticCrypto

/// The subkeys of a store, each derived from the master key with HKDF-SHA-256 and its own label
/// (docs/file-format.md lists them). The master key itself is not kept.
public final class StoreKeys: Sendable {
    public static let contentLabel = "elastic/v1/content/aes-256-gcm"
    public static let nameLabel = "elastic/v1/names/aes-256-siv"
    public static let metadataLabel = "elastic/v1/metadata/aes-256-gcm"
    public static let configLabel = "elastic/v1/config/hmac-sha-256"
    public static let keyStoreLabel = "elastic/v1/keystore/aes-256-gcm"

    public let content: SecureBytes
    public let names: SecureBytes
    public let metadata: SecureBytes
    public let configMAC: SecureBytes
    /// Seals `elastic.keys`, the control file's key store.
    public let keyStore: SecureBytes

    public init(master: SecureBytes) throws {
        content = try Self.derive(master, Self.contentLabel, 32)
        names = try Self.derive(master, Self.nameLabel, 64)
        metadata = try Self.derive(master, Self.metadataLabel, 32)
        configMAC = try Self.derive(master, Self.configLabel, 32)
        keyStore = try Self.derive(master, Self.keyStoreLabel, 32)
    }

    static func derive(_ master: SecureBytes, _ label: String, _ n: Int) throws -> SecureBytes {
        try KDF.hkdfSHA256(ikm: master, salt: [], info: Array(label.utf8), length: n)
    }
}
