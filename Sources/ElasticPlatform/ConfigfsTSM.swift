import ElasticCrypto
import ElasticSystem
import Glibc

/// The seam under configfs-tsm (docs/platform.md §4): the kernel's directory
/// `/sys/kernel/config/tsm/report`, or the simulator. Entries are directories whose attribute
/// files generate a report when `outblob` is read after `inblob` was written.
public protocol TSMReportTransport: AnyObject {
    func makeEntry(_ name: String) throws
    func removeEntry(_ name: String)
    func write(_ entry: String, _ attribute: String, _ value: [UInt8]) throws
    /// The attribute's bytes, or nil when the provider does not show it.
    func read(_ entry: String, _ attribute: String) throws -> [UInt8]?
}

/// One report from configfs-tsm.
public struct TSMReport: Sendable, Equatable {
    /// "sev_guest" or "tdx_guest".
    public let provider: String
    /// SEV: the bare 1184-byte report; TDX: a Quote.
    public let outblob: [UInt8]
    /// SEV: the host's certificate table (empty when the host gave none).
    public let auxblob: [UInt8]
}

/// Errors of configfs-tsm.
public enum TSMError: Error, Equatable, CustomStringConvertible {
    case unavailable(String)
    case refused(String, Errno)
    /// Another writer changed the entry between our write and our read.
    case raced

    public var description: String {
        switch self {
        case .unavailable(let why): return "configfs-tsm is not available: \(why)"
        case .refused(let what, let e): return "configfs-tsm refused \(what): \(e)"
        case .raced: return "configfs-tsm: the report entry was written by someone else while it was read"
        }
    }
}

public enum ConfigfsTSM {
    public static let path = "/sys/kernel/config/tsm/report"

    /// A report for `inblob` (64 bytes for SEV) at `privlevel` (the VMPL; nil: the provider's
    /// default). The entry is private to this call (a fresh name) and removed afterwards; its
    /// `generation` must count exactly this call's writes before and after `outblob` is read,
    /// so a report can never answer someone else's `inblob`.
    public static func report(_ t: any TSMReportTransport, inblob: [UInt8], privlevel: UInt32? = nil) throws
        -> TSMReport
    {
        // The pid names it for people; the random part keeps it unique across calls, PID
        // namespaces and a crashed run's leftovers.
        let name = "elastic-\(getpid())-" + Hex.encode(try Random.bytes(8))
        try t.makeEntry(name)
        defer { t.removeEntry(name) }
        var writes: UInt64 = 0
        if let privlevel {
            try t.write(name, "privlevel", Array("\(privlevel)\n".utf8))
            writes += 1
        }
        try t.write(name, "inblob", inblob)
        writes += 1
        func generation() throws -> UInt64? {
            try t.read(name, "generation").flatMap { UInt64(String(decoding: $0.filter { $0 > 0x20 }, as: UTF8.self)) }
        }
        switch try generation() {
        case writes?: break
        case let g? where g < writes: throw TSMError.refused("inblob (the provider did not take it)", .invalidArgument)
        default: throw TSMError.raced
        }
        let provider = String(decoding: (try t.read(name, "provider") ?? []).filter { $0 > 0x20 }, as: UTF8.self)
        guard let outblob = try t.read(name, "outblob") else { throw TSMError.unavailable("no outblob") }
        let auxblob = try t.read(name, "auxblob") ?? []
        guard try generation() == writes else { throw TSMError.raced }
        return TSMReport(provider: provider, outblob: outblob, auxblob: auxblob)
    }
}

/// The kernel's configfs-tsm directory.
public final class ConfigfsTSMDirectory: TSMReportTransport {
    let root: String

    public init(root: String = ConfigfsTSM.path) throws {
        var st = stat()
        guard stat(root, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else {
            throw TSMError.unavailable("no \(root) (Linux 6.7+, CONFIG_TSM_REPORTS, configfs mounted)")
        }
        self.root = root
    }

    public func makeEntry(_ name: String) throws {
        guard mkdir(root + "/" + name, 0o700) == 0 else {
            throw TSMError.refused("mkdir \(name)", Errno(rawValue: errno))
        }
    }

    public func removeEntry(_ name: String) { rmdir(root + "/" + name) }

    public func write(_ entry: String, _ attribute: String, _ value: [UInt8]) throws {
        let fd = open(root + "/" + entry + "/" + attribute, O_WRONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { throw TSMError.refused(attribute, Errno(rawValue: errno)) }
        defer { close(fd) }
        // configfs takes a binary attribute in one write.
        let n = value.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        guard n == value.count else { throw TSMError.refused(attribute, Errno(rawValue: n < 0 ? errno : EIO)) }
    }

    public func read(_ entry: String, _ attribute: String) throws -> [UInt8]? {
        let fd = open(root + "/" + entry + "/" + attribute, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        if fd < 0 && errno == ENOENT { return nil }
        guard fd >= 0 else { throw TSMError.refused(attribute, Errno(rawValue: errno)) }
        defer { close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while out.count < 1 << 20 {
            let n = Glibc.read(fd, &buf, buf.count)
            if n < 0 { throw TSMError.refused(attribute, Errno(rawValue: errno)) }
            if n == 0 { break }
            out += buf[0..<n]
        }
        return out
    }
}
