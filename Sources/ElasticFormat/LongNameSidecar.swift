import ElasticSystem

/// Encrypted names longer than a backing name may be (255 bytes) are stored as
/// `elastic.ln.<base64url(sha256(encoded))>` with the full encoded name in a sidecar file
/// `<that>.name` next to it (`BackingNames.backingName(forEncoded:)`). The sidecar is written
/// before the entry and removed after it; a sidecar whose hash does not name its entry is refused.
public enum LongNameSidecar {
    /// Writes the sidecar of a long backing name (nothing for a direct one).
    public static func write(_ dirfd: Int32, backingName: String, encoded: String, isLong: Bool) throws {
        guard isLong else { return }
        try Syscall.writeFileAtomically(dirfd, BackingNames.sidecar(of: backingName), Array(encoded.utf8), mode: 0o400)
    }

    /// Removes the sidecar of a long backing name (best effort; nothing for a direct one).
    public static func remove(_ dirfd: Int32, backingName: String, isLong: Bool) {
        guard isLong else { return }
        _ = try? Syscall.unlinkat(dirfd, BackingNames.sidecar(of: backingName), 0)
    }

    /// Why a listed long name has no usable encoded name.
    public enum Problem: Error, Equatable {
        case missing
        case mismatch
    }

    /// The encoded name behind the long backing name `backingName` in `dirfd`: read from its
    /// sidecar and checked to hash to `backingName` (so the host cannot swap sidecars).
    public static func encodedName(_ dirfd: Int32, backingName: String) -> Result<String, Problem> {
        guard let full = try? Syscall.readFile(dirfd, BackingNames.sidecar(of: backingName), limit: 1024) else {
            return .failure(.missing)
        }
        let encoded = String(decoding: full, as: UTF8.self)
        guard BackingNames.backingName(forEncoded: encoded).name == backingName else { return .failure(.mismatch) }
        return .success(encoded)
    }
}
