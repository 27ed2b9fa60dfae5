import COpenSSL

/// Errors from the crypto layer.
public enum CryptoError: Error, Equatable, CustomStringConvertible {
    /// An AEAD tag did not verify: the data or its context was altered.
    case authenticationFailure
    /// OpenSSL reported a failure; the string is its drained error queue.
    case openSSL(String)
    /// A key or input of the wrong length.
    case invalidLength(expected: Int, got: Int)
    /// A key of an algorithm, size or encoding ELASTIC does not take.
    case unsupportedKey(String)
    /// More input than an operation buffers (Ed25519 signs its whole message at once).
    case inputTooLarge(limit: Int)

    public var description: String {
        switch self {
        case .authenticationFailure: return "authentication failed"
        case .openSSL(let s): return "OpenSSL: \(s)"
        case .invalidLength(let e, let g): return "invalid length: expected \(e), got \(g)"
        case .unsupportedKey(let why): return "unsupported key: \(why)"
        case .inputTooLarge(let limit): return "input larger than \(limit) bytes"
        }
    }

    /// Drains OpenSSL's thread-local error queue into an `.openSSL` error.
    public static func drain(_ what: String) -> CryptoError {
        var parts: [String] = []
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            var buf = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buf, buf.count)
            parts.append(String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return .openSSL(parts.isEmpty ? what : "\(what): \(parts.joined(separator: "; "))")
    }
}
