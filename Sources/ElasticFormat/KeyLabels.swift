/// Every HKDF label (and fixed context string) ELASTIC derives keys or IVs with, in one place.
/// Changing one changes the format: docs/file-format.md lists them.
public enum KeyLabels {
    /// Store subkeys, from the master key (`StoreKeys`).
    public static let content = "elastic/v1/content/aes-256-gcm"
    public static let names = "elastic/v1/names/aes-256-siv"
    public static let metadata = "elastic/v1/metadata/aes-256-gcm"
    public static let configMAC = "elastic/v1/config/hmac-sha-256"
    public static let keyStore = "elastic/v1/keystore/aes-256-gcm"
    /// Keys the hashes of directory entries (`EntryDigest`).
    public static let entries = "elastic/v2/entries/hmac-sha-256"
    /// Keys the pseudorandom function of files' content digests (`BlockTags`).
    public static let contentDigest = "elastic/v2/content-digest/aes-256"
    /// Keys the hash of each extended attribute in an object's attribute digest (`XattrSet`).
    public static let xattrs = "elastic/v2/xattrs/hmac-sha-256"
    /// Associated data of a directory's sealed entry-set state, before the directory's IV.
    public static let entrySet = "elastic/v2/entries"
    /// Seals `elastic.root` (`StoreRoot`).
    public static let root = "elastic/v2/root/aes-256-gcm"
    /// The control file's derive root, from the master key; DERIVE requests expand it with
    /// `controlDerive` ‖ 0x00 ‖ be32(uid) ‖ label.
    public static let controlDeriveRoot = "elastic/v1/control/derive-root"
    public static let controlDerive = "elastic/v1/control/derive"
    /// Key-encryption keys of key slots, from the slot's secret and salt.
    public static let keyFileSlot = "elastic/v1/slot/keyfile"
    /// A platform-sealed slot: "elastic/v1/slot/" + the platform's name (SNP: "elastic/v1/slot/snp").
    public static func sealedSlot(platform: String) -> String { "elastic/v1/slot/" + platform }
    /// The fixed "directory IV" under which xattr names are encrypted (AES-SIV).
    public static let xattrName = "elastic/v1/xattr-name"
    /// Associated data of object records (`ObjectRecord`), before the object's ID.
    public static let objectRecord = "elastic/v2/record"
    /// Associated data of sealed symlink targets.
    public static let symlink = "elastic/v1/symlink"
    /// Per-stream keys of `elastic encrypt` (the key store's AEAD stream).
    public static let aeadStream = "elastic/v1/aead-stream"
}
