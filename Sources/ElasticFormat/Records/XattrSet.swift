import ElasticCrypto
import ElasticSystem

/// The `user.*` extended attributes of one object as its record vouches for them: each backing
/// attribute name with the tag of its sealed value, and the **attribute digest** the record
/// holds, the XOR of `HMAC-SHA-256(xattrs key, be16(len(name)) ‖ backing name ‖ value tag)`
/// truncated to 16 bytes over every attribute. So the host can add, remove, copy in (from
/// another object: the digest is in this object's sealed record) or put back an older value
/// of an attribute only to have the object's attributes refused.
public struct XattrSet: Sendable {
    /// Backing attribute name → the tag of its sealed value.
    public private(set) var tags: [String: BlockTag] = [:]
    public private(set) var digest: BlockTag = .zero

    public init() {}

    /// The tag of a sealed value (its last 16 bytes).
    public static func tag(ofSealed value: [UInt8]) -> BlockTag {
        precondition(value.count >= 16)
        return value.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: $0.count - 16, as: BlockTag.self) }
    }

    static func term(_ name: String, _ tag: BlockTag, _ crypto: CryptoWorker) throws -> BlockTag {
        var name = name
        var mac = (BlockTag.zero, BlockTag.zero)
        try withUnsafeMutableBytes(of: &mac) { out in
            try crypto.xattrMAC.mac(into: out.baseAddress!) { feed in
                withUnsafeBytes(of: UInt16(truncatingIfNeeded: name.utf8.count).bigEndian, feed)
                name.withUTF8 { feed(UnsafeRawBufferPointer($0)) }
                withUnsafeBytes(of: tag, feed)
            }
        }
        return mac.0
    }

    /// Sets attribute `name` to the sealed value `sealed`.
    public mutating func set(_ name: String, sealed: [UInt8], with crypto: CryptoWorker) throws {
        try remove(name, with: crypto)
        let tag = Self.tag(ofSealed: sealed)
        digest ^= try Self.term(name, tag, crypto)
        tags[name] = tag
    }

    public mutating func remove(_ name: String, with crypto: CryptoWorker) throws {
        guard let old = tags.removeValue(forKey: name) else { return }
        digest ^= try Self.term(name, old, crypto)
    }

    /// Whether the set is the one `record` names: its digest, or, while a change was under way
    /// (a crash cut it off), the digest the change was to give.
    public func isNamed(by record: ObjectRecord) -> Bool {
        digest == record.xattrs || (record.xattrsChanging && digest == record.xattrsPending)
    }

    /// The `user.*` attributes of the backing object at `path` (a `/proc/self/fd` path), as
    /// the host left them: check them with `isNamed(by:)` before trusting them.
    public static func read(path: String, with crypto: CryptoWorker) throws -> XattrSet {
        var set = XattrSet()
        for raw in try Syscall.listxattr(path).split(separator: 0) where raw.starts(with: XattrCodec.userPrefix) {
            let name = String(decoding: raw, as: UTF8.self)
            let sealed = try Syscall.getxattr(path, name)
            guard sealed.count >= 16 else { throw FormatError.corruptMetadata("extended attribute value length") }
            try set.set(name, sealed: sealed, with: crypto)
        }
        return set
    }
}
