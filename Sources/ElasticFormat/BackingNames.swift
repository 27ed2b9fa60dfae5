import ElasticCrypto

/// Names of ELASTIC's own files in the backing directory, and the long-name scheme.
///
/// Encrypted names use only base64url characters, which never include '.', so every name here
/// (all of which contain '.') is distinguishable from a user's file.
public enum BackingNames {
    /// Store configuration, at the root of BACKING.
    public static let config = "elastic.conf"
    /// The control file's key store, sealed (KeyStoreFile).
    public static let keyStore = "elastic.keys"
    /// The store's root of freshness (`StoreRoot`), at the root of BACKING.
    public static let root = "elastic.root"
    /// Held (flock) by the one daemon that has the store mounted (`StoreLock`).
    public static let lock = "elastic.lock"
    /// The versions map (`SortedVersions`), named by the root.
    public static let versions = "elastic.versions"
    /// Old cipher bytes kept before each overwrite (`UndoJournal`), at the root of BACKING.
    public static let undo = "elastic.undo"
    /// Where `elastic fsck --repair` puts entries whose names cannot be read (never shown).
    public static let quarantine = "elastic.quarantine"
    /// 16 random bytes in every backing directory: the associated data of its names' encryption.
    public static let dirIV = "elastic.diriv"
    public static let dirIVSize = 16
    /// Directory at the root of BACKING holding symlink targets too long for a backing symlink.
    public static let longLinks = "elastic.links"
    public static let longNamePrefix = "elastic.ln."
    public static let longNameSuffix = ".name"
    /// Backing symlink targets that point into `longLinks`.
    public static let longLinkPrefix = "elastic.link:"
    /// Longest backing name we create directly; longer encrypted names use the long-name form.
    public static let maxDirectName = 255

    /// The backing name for an encoded (encrypted) name: itself if it fits, else
    /// `elastic.ln.<base64url(sha256(encoded))>` with the full name in a `.name` sidecar.
    public static func backingName(forEncoded encoded: String) -> (name: String, isLong: Bool) {
        if encoded.utf8.count <= maxDirectName { return (encoded, false) }
        return (longNamePrefix + Base64URL.encode(KDF.sha256(Array(encoded.utf8))), true)
    }

    /// A long-name entry: the prefix and the hash, nothing after (its `.name` sidecar, and the
    /// sidecar's temporary `.name.tmp`, are not entries).
    public static func isLongName(_ name: String) -> Bool {
        name.hasPrefix(longNamePrefix) && !name.utf8.dropFirst(longNamePrefix.utf8.count).contains(UInt8(ascii: "."))
    }

    /// ELASTIC's own files a crash can leave in a directory that mean nothing once it is gone:
    /// sidecars' temporary files (`elastic.ln.*.tmp`) and the IV file's (`elastic.diriv.tmp`).
    public static func isCrashLeftover(_ name: String) -> Bool {
        (name.hasPrefix(longNamePrefix) || name.hasPrefix(dirIV)) && name.hasSuffix(".tmp")
    }

    public static func sidecar(of longName: String) -> String { longName + longNameSuffix }

    /// True for names ELASTIC keeps for itself (never shown in a listing).
    public static func isInternal(_ name: String) -> Bool { name.utf8.contains(UInt8(ascii: ".")) }
}
