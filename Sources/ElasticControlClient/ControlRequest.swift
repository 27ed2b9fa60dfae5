import CElasticControlABI
import ElasticCrypto
import ElasticSystem
import Glibc

/// One request of the control ABI: a zeroed struct of `elastic_ioctl.h` on the heap, with
/// `version` set, wiped when released (requests may carry key material).
///
/// Fields are reached through the pointer, never by copying the struct: the byte arrays of the
/// ABI (up to 4 KiB) import into Swift as tuples of thousands of elements, and every copy of such
/// a value is expanded element by element, which is slow to compile and to run.
@dynamicMemberLookup
public final class ControlRequest<Layout> {
    public let pointer: UnsafeMutablePointer<Layout>

    public init() {
        pointer = .allocate(capacity: 1)
        memset(UnsafeMutableRawPointer(pointer), 0, MemoryLayout<Layout>.size)  // raw: the memory stays bound to Layout
        raw.storeBytes(of: ELASTIC_ABI_VERSION, as: UInt32.self)  // every struct starts with `version`
    }

    deinit {
        secureWipe(raw)
        pointer.deallocate()
    }

    /// The whole struct as bytes.
    public var raw: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: UnsafeMutableRawPointer(pointer), count: MemoryLayout<Layout>.size)
    }

    /// The bytes of one field (a C array such as `data` or `name`).
    public func bytes<Field>(_ field: WritableKeyPath<Layout, Field>) -> UnsafeMutableRawBufferPointer {
        guard let offset = MemoryLayout<Layout>.offset(of: field) else { preconditionFailure("not a stored field") }
        return UnsafeMutableRawBufferPointer(rebasing: raw[offset..<(offset + MemoryLayout<Field>.size)])
    }

    /// Runs `body` on the bytes of one field.
    public func withBytes<Field, Result>(
        _ field: WritableKeyPath<Layout, Field>,
        _ body: (UnsafeMutableRawBufferPointer) throws -> Result
    ) rethrows -> Result {
        try body(bytes(field))
    }

    /// The first `count` bytes of a C array field, clamped to its size.
    public func prefix<Field>(_ field: WritableKeyPath<Layout, Field>, _ count: Int) -> [UInt8] {
        let b = bytes(field)
        return Array(b.prefix(max(0, min(count, b.count))))
    }

    /// A NUL-terminated string field.
    public func string<Field>(_ field: WritableKeyPath<Layout, Field>) -> String {
        String(decoding: bytes(field).prefix { $0 != 0 }, as: UTF8.self)
    }

    /// Copies `value` into the start of a C array field; throws EINVAL when it does not fit.
    public func set<Field, Bytes: Collection<UInt8>>(_ field: WritableKeyPath<Layout, Field>, _ value: Bytes) throws {
        let b = bytes(field)
        guard value.count <= b.count else { throw Errno.invalidArgument }
        b.copyBytes(from: value)
    }

    /// Scalar fields (`r.length`, `r.handle`, ...).
    public subscript<Value>(dynamicMember field: WritableKeyPath<Layout, Value>) -> Value {
        get { pointer.pointee[keyPath: field] }
        set { pointer.pointee[keyPath: field] = newValue }
    }
}
