/// The CBOR (RFC 8949) this module needs for attestation evidence: unsigned integers, byte and
/// text strings, arrays, maps and tags, encoded deterministically (§4.2.1: shortest lengths,
/// definite lengths, map keys sorted by their encoding) and decoded strictly (the same rules,
/// bounded depth, no trailing bytes), so one value has one encoding and hashes of it agree.
public indirect enum CBOR: Equatable, Sendable {
    case unsigned(UInt64)
    case bytes([UInt8])
    case text(String)
    case array([CBOR])
    /// Keys are unique; `encoded` sorts them.
    case map([(CBOR, CBOR)])
    case tagged(UInt64, CBOR)

    public static func == (a: CBOR, b: CBOR) -> Bool { a.encoded == b.encoded }

    /// The deterministic encoding.
    public var encoded: [UInt8] {
        var out: [UInt8] = []
        encode(into: &out)
        return out
    }

    static func head(_ major: UInt8, _ value: UInt64, into out: inout [UInt8]) {
        let m = major << 5
        switch value {
        case 0..<24: out.append(m | UInt8(value))
        case 24...0xFF: out += [m | 24, UInt8(value)]
        case 0x100...0xFFFF: out += [m | 25] + (0..<2).reversed().map { UInt8(truncatingIfNeeded: value >> (8 * $0)) }
        case 0x1_0000...0xFFFF_FFFF:
            out += [m | 26] + (0..<4).reversed().map { UInt8(truncatingIfNeeded: value >> (8 * $0)) }
        default: out += [m | 27] + (0..<8).reversed().map { UInt8(truncatingIfNeeded: value >> (8 * $0)) }
        }
    }

    func encode(into out: inout [UInt8]) {
        switch self {
        case .unsigned(let v): Self.head(0, v, into: &out)
        case .bytes(let b):
            Self.head(2, UInt64(b.count), into: &out)
            out += b
        case .text(let s):
            let u = Array(s.utf8)
            Self.head(3, UInt64(u.count), into: &out)
            out += u
        case .array(let items):
            Self.head(4, UInt64(items.count), into: &out)
            for i in items { i.encode(into: &out) }
        case .map(let pairs):
            Self.head(5, UInt64(pairs.count), into: &out)
            for (k, v) in pairs.map({ ($0.0.encoded, $0.1) }).sorted(by: { $0.0.lexicographicallyPrecedes($1.0) }) {
                out += k
                v.encode(into: &out)
            }
        case .tagged(let tag, let value):
            Self.head(6, tag, into: &out)
            value.encode(into: &out)
        }
    }

    /// Why bytes are not a CBOR value this module accepts.
    public struct DecodingError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Decodes exactly one value from `bytes` (deterministic encoding only).
    public init(decoding bytes: [UInt8]) throws {
        var at = 0
        self = try Self.decode(bytes, &at, depth: 0)
        guard at == bytes.count else { throw DecodingError(description: "bytes after the CBOR value") }
    }

    static func decode(_ b: [UInt8], _ at: inout Int, depth: Int) throws -> CBOR {
        guard depth < 16 else { throw DecodingError(description: "nested too deeply") }
        guard at < b.count else { throw DecodingError(description: "cut short") }
        let major = b[at] >> 5, info = b[at] & 31
        at += 1
        let value: UInt64
        switch info {
        case 0..<24: value = UInt64(info)
        case 24...27:
            let n = 1 << Int(info - 24)
            guard at + n <= b.count else { throw DecodingError(description: "cut short") }
            value = b[at..<(at + n)].reduce(0) { $0 << 8 | UInt64($1) }
            at += n
            // Shortest form only (deterministic encoding).
            let minimum: UInt64 = info == 24 ? 24 : info == 25 ? 0x100 : info == 26 ? 0x1_0000 : 0x1_0000_0000
            guard value >= minimum else { throw DecodingError(description: "not the shortest encoding") }
        default: throw DecodingError(description: "indefinite length or reserved encoding")
        }
        func take(_ n: UInt64) throws -> [UInt8] {
            guard n <= UInt64(b.count - at) else { throw DecodingError(description: "cut short") }
            defer { at += Int(n) }
            return Array(b[at..<(at + Int(n))])
        }
        switch major {
        case 0: return .unsigned(value)
        case 2: return .bytes(try take(value))
        case 3:
            let raw = try take(value)
            guard let s = String(validating: raw, as: UTF8.self) else { throw DecodingError(description: "bad UTF-8") }
            return .text(s)
        case 4:
            guard value <= UInt64(b.count - at) else { throw DecodingError(description: "cut short") }
            return .array(try (0..<value).map { _ in try decode(b, &at, depth: depth + 1) })
        case 5:
            guard value <= UInt64(b.count - at) else { throw DecodingError(description: "cut short") }
            var pairs: [(CBOR, CBOR)] = []
            var last: [UInt8]? = nil
            for _ in 0..<value {
                let start = at
                let k = try decode(b, &at, depth: depth + 1)
                let key = Array(b[start..<at])
                guard last.map({ $0.lexicographicallyPrecedes(key) }) ?? true else {
                    throw DecodingError(description: "map keys out of order or repeated")
                }
                last = key
                pairs.append((k, try decode(b, &at, depth: depth + 1)))
            }
            return .map(pairs)
        case 6: return .tagged(value, try decode(b, &at, depth: depth + 1))
        default: throw DecodingError(description: "a CBOR type this format does not use (major type \(major))")
        }
    }

    /// The value of text key `key` in a map.
    public subscript(key: String) -> CBOR? {
        guard case .map(let pairs) = self else { return nil }
        return pairs.first { $0.0 == .text(key) }?.1
    }

    public var bytesValue: [UInt8]? {
        if case .bytes(let b) = self { return b }
        return nil
    }
    public var textValue: String? {
        if case .text(let s) = self { return s }
        return nil
    }
    public var unsignedValue: UInt64? {
        if case .unsigned(let v) = self { return v }
        return nil
    }
}
