/// Errors of the on-disk format layer. The FUSE layer maps them to errno in one place.
public enum FormatError: Error, Equatable, CustomStringConvertible {
    /// A content block failed authentication (tampered, moved or corrupted).
    case authenticationFailed(block: Int64)
    /// A file's blocks are not the ones its record's content digest names (a block put back
    /// to an older version, moved, zeroed, cut off or added).
    case contentMismatch
    /// A file header is malformed (wrong magic, version or length).
    case corruptHeader(String)
    /// The ciphertext length cannot come from any plaintext (e.g. truncated mid-block).
    case corruptLength(Int64)
    /// A backing name does not decode (not ours, or tampered).
    case invalidName(String)
    /// Metadata (symlink target, xattr value) failed authentication.
    case corruptMetadata(String)
    /// The store configuration is malformed or was edited.
    case corruptConfig(String)
    /// The configuration needs a newer ELASTIC.
    case unsupportedVersion(UInt16)
    /// The configuration uses a feature this ELASTIC does not know.
    case unknownFeatureFlags(UInt32)
    /// No key slot opened with the given key.
    case wrongKey(String)
    /// The key file could not be read or is malformed.
    case keySource(String)
    /// A file offset beyond what the format can address.
    case fileTooLarge
    /// A name longer than 255 bytes, or containing '/' or NUL.
    case nameTooLong
    case invalidArgument(String)
    /// A directory to remove holds entries.
    case directoryNotEmpty
    /// What BACKING holds is not the store's newest version, or does not belong together (a
    /// rolled-back, replaced or missing piece): refused, never served.
    case integrity(String)
    /// A store of an older format (the path, for the message): `elastic migrate` converts it.
    case needsMigration(String)

    public var description: String {
        switch self {
        case .authenticationFailed(let b): return "block \(b) failed authentication"
        case .contentMismatch:
            return "the file's blocks are not the ones its record names (a block put back, moved, zeroed, cut or added)"
        case .corruptHeader(let s): return "corrupt file header: \(s)"
        case .corruptLength(let n): return "ciphertext length \(n) is not a valid encrypted file length"
        case .invalidName(let s): return "invalid encrypted name: \(s)"
        case .corruptMetadata(let s): return "corrupt metadata: \(s)"
        case .corruptConfig(let s): return "corrupt or edited store configuration: \(s)"
        case .unsupportedVersion(let v): return "store format version \(v) is not supported by this ELASTIC"
        case .unknownFeatureFlags(let f):
            return "store uses unknown feature flags 0x\(String(f, radix: 16)); refusing to mount"
        case .wrongKey(let s), .keySource(let s): return s
        case .fileTooLarge: return "file offset beyond the format's limit"
        case .nameTooLong: return "name too long"
        case .invalidArgument(let s): return s
        case .directoryNotEmpty: return "directory not empty"
        case .integrity(let s): return "store integrity: \(s)"
        case .needsMigration(let backing):
            let b = backing.isEmpty ? "BACKING" : backing
            return
                "\(backing.isEmpty ? "the store" : backing) is a version 1 store, which this ELASTIC does not mount: "
                + "convert it with `elastic migrate \(b)` (offline and crash-safe; it keeps the key slots)"
        }
    }
}
