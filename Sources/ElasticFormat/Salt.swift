import ElasticCrypto

/// Random values for new slots.
public enum ElasticFormatRandom {
    /// A 32-byte random salt.
    public static func salt() throws -> [UInt8] { try Random.bytes(32) }
}
