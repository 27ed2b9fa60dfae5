import ElasticCrypto
import ElasticSystem
import Glibc

/// Storage outside BACKING that the host cannot roll back, holding one counter for a store:
/// the value its newest root expects. A root older than the witness is a rollback of the whole
/// store. Implementations: `FileWitness` (`file:PATH`) and the TPM's NV counter (`tpm:INDEX`).
public protocol FreshnessWitness: AnyObject, Sendable {
    /// How the user named it: "file:/var/lib/elastic/w" or "tpm:0x1500016" (one spelling).
    var spec: String { get }
    /// Brings a new witness into existence and returns its first value; refuses one that
    /// exists already (it may hold a newer value of this store), except one a crash left at
    /// its first value while being bound.
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
/// protects it is where it lives, so a witness file, or its directory, that is not owned by
/// this user or root, or that others may write, is refused. Rewritten atomically (temporary
/// file, fsync, rename, fsync of the directory).
public final class FileWitness: FreshnessWitness, Sendable {
    static let magic = Array("ELWT".utf8)
    static let size = 4 + 16 + 8
    public let spec: String
    let path: String
    let storeID: [UInt8]

    public init(path given: String, storeID: [UInt8]) throws {
        guard given.hasPrefix("/"), !given.hasSuffix("/") else {
            throw FormatError.invalidArgument("witness file:\(given): give an absolute path to a file")
        }
        // One spelling per file: no empty, "." or ".." components.
        let parts = given.split(separator: "/", omittingEmptySubsequences: true)
        guard !parts.contains(where: { $0 == "." || $0 == ".." }) else {
            throw FormatError.invalidArgument("witness file:\(given): give the path without . or .. components")
        }
        path = "/" + parts.joined(separator: "/")
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

    /// Only the owner (this user or root) may change a witness or its directory.
    static func checkOwnership(_ st: stat, _ what: String) throws {
        guard st.st_uid == geteuid() || st.st_uid == 0 else {
            throw FormatError.integrity("\(what) belongs to uid \(st.st_uid): others could roll it back")
        }
        guard st.st_mode & 0o022 == 0 else {
            throw FormatError.integrity(
                "\(what) may be written by others (mode \(String(st.st_mode & 0o777, radix: 8)))")
        }
    }

    /// The witness's directory, checked.
    func directory() throws -> OpenDirectory {
        let dir = try Syscall.openDirectory(parentAndName.0)
        try Self.checkOwnership(try Syscall.fstat(dir.fd), "the directory of witness \(spec)")
        return dir
    }

    func write(_ value: UInt64) throws {
        let dir = try directory()
        try withExtendedLifetime(dir) {
            try Syscall.writeFileAtomically(dir.fd, parentAndName.1, try encode(value), mode: 0o600)
        }
    }

    public func create() throws -> UInt64 {
        guard access(path, F_OK) == 0 else {
            try write(1)
            return 1
        }
        // This store's witness at its first value: a binding a crash interrupted before the
        // root named it (once named, the root expects 2 or more). Taken over.
        if (try? read()) == 1 { return 1 }
        throw FormatError.integrity(
            "witness \(spec) exists already but the store's root names no witness: the store may have been "
                + "rolled back to before it was bound to this witness (or the file belongs to another store)")
    }

    public func read() throws -> UInt64 {
        var bytes = [UInt8](repeating: 0, count: Self.size + 1)
        do {
            let dir = try directory()
            let fd = try withExtendedLifetime(dir) {
                try Syscall.openat(dir.fd, parentAndName.1, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
            }
            defer { Syscall.close(fd) }
            let st = try Syscall.fstat(fd)
            guard st.st_mode & S_IFMT == S_IFREG else { throw FormatError.integrity("witness \(spec) is not a file") }
            try Self.checkOwnership(st, "witness \(spec)")
            let n = try bytes.withUnsafeMutableBytes { try Syscall.pread(fd, $0.baseAddress!, $0.count, 0) }
            bytes.removeLast(bytes.count - n)
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
