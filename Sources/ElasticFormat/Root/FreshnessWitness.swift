import ElasticCrypto
import ElasticSystem
import Glibc

/// Storage outside BACKING that the host cannot roll back, holding one counter for a store:
/// the value its newest root expects. A root older than the witness is a rollback of the whole
/// store. Implementations: `FileWitness` (`file:PATH`) and the TPM's NV counter (`tpm:INDEX`).
public protocol FreshnessWitness: AnyObject, Sendable {
    /// How the user named it: "file:/var/lib/elastic/w" or "tpm:0x01500016".
    var spec: String { get }
    /// Brings a new witness into existence and returns its first value; refuses one that
    /// exists already (it may hold a newer value of this store).
    func create() throws -> UInt64
    /// The value it holds now; `.integrity` when it is missing or belongs to another store.
    func read() throws -> UInt64
    /// Moves it from `value - 1` to `value`.
    func advance(to value: UInt64) throws
}

/// Opens the witness named by a spec, for the store `storeID`.
public typealias WitnessOpener = @Sendable (_ spec: String, _ storeID: [UInt8]) throws -> any FreshnessWitness

/// `file:PATH`: a small file on storage the host cannot roll back (the VM's own disk, a
/// measured volume): "ELWT" ‖ store ID (16) ‖ be64 value. It holds nothing secret; what
/// protects it is where it lives, so a witness file (or its directory) that anyone but its
/// owner may write is refused. Rewritten atomically (temporary file, fsync, rename).
public final class FileWitness: FreshnessWitness, Sendable {
    static let magic = Array("ELWT".utf8)
    static let size = 4 + 16 + 8
    public let spec: String
    let path: String
    let storeID: [UInt8]

    public init(path: String, storeID: [UInt8]) throws {
        guard path.hasPrefix("/"), !path.hasSuffix("/") else {
            throw FormatError.invalidArgument("witness file:\(path): give an absolute path to a file")
        }
        self.path = path
        spec = "file:" + path
        self.storeID = storeID
    }

    private var parentAndName: (String, String) {
        let slash = path.lastIndex(of: "/")!
        let parent = String(path[..<slash])
        return (parent.isEmpty ? "/" : parent, String(path[path.index(after: slash)...]))
    }

    func encode(_ value: UInt64) throws -> [UInt8] {
        var w = ByteWriter()
        w.raw(Self.magic)
        w.raw(storeID)
        w.u64(value)
        return w.bytes
    }

    func write(_ value: UInt64) throws {
        let (parent, name) = parentAndName
        let dir = try Syscall.openDirectory(parent)
        try Self.checkOwnership(try Syscall.fstat(dir.fd), "the directory of witness \(spec)")
        try Syscall.writeFileAtomically(dir.fd, name, try encode(value), mode: 0o600)
    }

    /// Only the owner (this user or root) may change a witness or its directory.
    static func checkOwnership(_ st: stat, _ what: String) throws {
        let me = geteuid()
        guard st.st_uid == me || st.st_uid == 0 else {
            throw FormatError.integrity("\(what) belongs to uid \(st.st_uid): others could roll it back")
        }
        let sticky = st.st_mode & S_IFMT == S_IFDIR && st.st_mode & S_ISVTX != 0
        guard st.st_mode & 0o022 == 0 || sticky else {
            throw FormatError.integrity(
                "\(what) may be written by others (mode \(String(st.st_mode & 0o777, radix: 8)))")
        }
    }

    public func create() throws -> UInt64 {
        if access(path, F_OK) == 0 {
            throw FormatError.integrity(
                "witness \(spec) exists already but the store's root names no witness: the store may have been "
                    + "rolled back to before it was bound to this witness (or the file belongs to another store)")
        }
        try write(1)
        return 1
    }

    public func read() throws -> UInt64 {
        let bytes: [UInt8]
        do {
            let (parent, name) = parentAndName
            let dir = try Syscall.openDirectory(parent)
            let fd = try Syscall.openat(dir.fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
            defer { Syscall.close(fd) }
            try Self.checkOwnership(try Syscall.fstat(fd), "witness \(spec)")
            bytes = try Syscall.readFile(dir.fd, name, limit: 4096)
        } catch let e as FormatError {
            throw e
        } catch {
            throw FormatError.integrity("witness \(spec) cannot be read (\(error)); the store's root names it")
        }
        guard bytes.count == Self.size, Array(bytes[0..<4]) == Self.magic else {
            throw FormatError.integrity("witness \(spec) is not an ELASTIC witness file")
        }
        guard Array(bytes[4..<20]) == storeID else {
            throw FormatError.integrity("witness \(spec) belongs to another store")
        }
        return bytes[20..<28].reduce(0) { $0 << 8 | UInt64($1) }
    }

    public func advance(to value: UInt64) throws { try write(value) }
}
