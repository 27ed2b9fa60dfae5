import CElasticControlABI
import ElasticSystem
import Glibc

/// A client of a mounted store's control file: finds the mount, sends the ioctls of
/// elastic_ioctl.h and decodes the answers. Threads may share one: each call has its own
/// request buffer, and the daemon serializes the steps of each handle.
public final class ControlClient: @unchecked Sendable {  // `fd` and `mountpoint` never change
    public let mountpoint: String
    let fd: Int32

    /// Opens `<mountpoint>/.elastic`; with no mount point, the nearest ELASTIC mount above the
    /// current directory.
    public init(mountpoint: String?) throws {
        let mnt = try mountpoint ?? Self.findMount()
        try Self.checkMount(mnt)
        let fd = open(mnt + "/" + ELASTIC_CONTROL_NAME, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { throw Errno(rawValue: errno) }
        self.mountpoint = mnt
        self.fd = fd
    }

    deinit { close(fd) }

    /// Why a directory is not a mount the CLI will talk to.
    public enum MountError: Error, CustomStringConvertible {
        case notElastic(String)
        case foreignOwner(String, uid: UInt32)
        public var description: String {
            switch self {
            case .notElastic(let d): return "\(d) is not the root of an ELASTIC mount (no fuse.elastic mount there)"
            case .foreignOwner(let d, let uid):
                return "\(d) is an ELASTIC mount made by uid \(uid), neither root nor you: refusing to send it requests"
            }
        }
    }

    /// Checks that `dir` is the root of a `fuse.elastic` mount made by root or by the caller
    /// (the kernel records who mounted a FUSE filesystem as `user_id`), so requests that carry
    /// secrets never go to a filesystem another user mounted to look like ELASTIC.
    public static func checkMount(_ dir: String) throws {
        guard let real = realpath(dir, nil) else { throw Errno(rawValue: errno) }
        let path = String(cString: real)
        free(real)
        let info = (try? Self.readAll("/proc/self/mountinfo")) ?? ""
        // The last entry for a mount point is the one on top.
        var found: (fstype: String, options: String)? = nil
        for line in info.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count >= 5, let dash = fields[5...].firstIndex(of: "-"), fields.count >= dash + 4,
                Self.unescape(String(fields[4])) == path
            else { continue }
            found = (String(fields[dash + 1]), String(fields[dash + 3]))
        }
        guard let found, found.fstype == "fuse.elastic" else { throw MountError.notElastic(dir) }
        let owner = found.options.split(separator: ",").first { $0.hasPrefix("user_id=") }.flatMap {
            UInt32($0.dropFirst(8))
        }
        guard let owner else { throw MountError.notElastic(dir) }
        guard owner == 0 || owner == getuid() else { throw MountError.foreignOwner(dir, uid: owner) }
    }

    /// mountinfo escapes space, tab, newline and backslash as \ooo.
    static func unescape(_ s: String) -> String {
        var out: [UInt8] = []
        let b = Array(s.utf8)
        var i = 0
        while i < b.count {
            if b[i] == UInt8(ascii: "\\"), i + 3 < b.count,
                let v = UInt8(String(decoding: b[(i + 1)...(i + 3)], as: UTF8.self), radix: 8)
            {
                out.append(v)
                i += 4
            } else {
                out.append(b[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func readAll(_ path: String) throws -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Errno(rawValue: errno) }
        defer { close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &buf, buf.count)
            if n <= 0 { break }
            out += buf[0..<n]
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func findMount() throws -> String {
        var buf = [CChar](repeating: 0, count: 4096)
        guard getcwd(&buf, buf.count) != nil else { throw Errno(rawValue: errno) }
        var dir = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        while true {
            var st = stat()
            if lstat(dir + "/" + ELASTIC_CONTROL_NAME, &st) == 0 && st.st_ino == 2, (try? checkMount(dir)) != nil {
                return dir
            }
            if dir == "/" || dir.isEmpty { throw Errno.noSuchFileOrDirectory }
            dir = String(dir[..<(dir.lastIndex(of: "/") ?? dir.startIndex)])
            if dir.isEmpty { dir = "/" }
        }
    }

    /// Sends one request. EAGAIN (this uid has as many slow requests in flight as it may) is
    /// retried with a growing pause, for up to a minute. A refused ioctl copies nothing back
    /// (the kernel writes the buffer only on success), so the request is sent again as it was.
    func call<Layout>(_ cmd: UInt32, _ request: ControlRequest<Layout>) throws {
        var pause: UInt32 = 1_000
        var waited: UInt32 = 0
        while true {
            if CElasticControlABI_ioctl(fd, cmd, request.pointer) == 0 { return }
            let e = Errno(rawValue: errno)
            guard e == .resourceTemporarilyUnavailable, waited < 60_000_000 else { throw e }
            usleep(pause)
            waited += pause
            pause = min(pause * 2, 200_000)
        }
    }

    /// One clock reading.
    public struct Reading: Sendable {
        public let seconds: Int64
        public let nanoseconds: UInt32
        public let resolutionNanoseconds: UInt32
        public let trusted: Bool
        public let source: String
        public let utcOffset: Int32
        public let timezone: String
    }

    public enum Clock: UInt32, CaseIterable, Sendable {
        case realtime = 0
        case monotonic = 1
        case boottime = 2
        case process = 3
        case thread = 4
        case monotonicRaw = 5

        /// The name the CLI takes (`--clock monotonic-raw`).
        public var name: String { self == .monotonicRaw ? "monotonic-raw" : "\(self)" }
    }

    public func clock(_ c: Clock) throws -> Reading {
        let r = ControlRequest<elastic_clock>()
        r.clock = c.rawValue
        try call(CElasticControlABI_IOC_CLOCK, r)
        return Reading(
            seconds: r.seconds, nanoseconds: r.nanoseconds, resolutionNanoseconds: r.resolution_ns,
            trusted: r.flags & ELASTIC_TIME_TRUSTED != 0,
            source: r.source == UInt32(ELASTIC_SOURCE_SECURE_TSC.rawValue) ? "secure-tsc" : "clock_gettime",
            utcOffset: r.utc_offset, timezone: r.string(\.timezone))
    }

    public func random(_ count: Int) throws -> [UInt8] {
        var out: [UInt8] = []
        while out.count < count {
            let r = ControlRequest<elastic_random>()
            r.length = UInt32(min(count - out.count, Int(ELASTIC_RANDOM_MAX)))
            try call(CElasticControlABI_IOC_RANDOM, r)
            out += r.prefix(\.data, Int(r.length))
        }
        return out
    }

    /// A key derived for `label` and the calling user.
    public func derive(label: [UInt8], length: Int) throws -> [UInt8] {
        let r = ControlRequest<elastic_derive>()
        r.key_length = UInt32(length)
        r.label_length = UInt32(label.count)
        try r.set(\.label, label)
        try call(CElasticControlABI_IOC_DERIVE, r)
        return r.prefix(\.key, length)
    }

    /// A stopwatch: START returns the handle; READ and STOP return elapsed nanoseconds.
    public func stopwatch(_ op: UInt32, handle: UInt64 = 0) throws -> (handle: UInt64, elapsed: Int64) {
        let r = ControlRequest<elastic_stopwatch>()
        r.op = op
        r.handle = handle
        try call(CElasticControlABI_IOC_STOPWATCH, r)
        return (r.handle, r.elapsed_ns)
    }

    public enum HashAlgorithm: String, CaseIterable, Sendable {
        case sha256, sha384, sha512
        var code: UInt32 {
            switch self {
            case .sha256: return UInt32(ELASTIC_HASH_SHA256.rawValue)
            case .sha384: return UInt32(ELASTIC_HASH_SHA384.rawValue)
            case .sha512: return UInt32(ELASTIC_HASH_SHA512.rawValue)
            }
        }
    }

    /// Hashes everything `next` returns (until it returns an empty chunk), streamed through a handle.
    public func hash(_ algorithm: HashAlgorithm, _ next: () throws -> [UInt8]) throws -> [UInt8] {
        let r = ControlRequest<elastic_hash>()
        r.op = UInt32(ELASTIC_HASH_INIT.rawValue)
        r.algorithm = algorithm.code
        try call(CElasticControlABI_IOC_HASH, r)
        let handle = r.handle
        while true {
            let chunk = try next()
            if chunk.isEmpty { break }
            var at = 0
            while at < chunk.count {
                let n = min(chunk.count - at, Int(ELASTIC_HASH_CHUNK))
                let u = ControlRequest<elastic_hash>()
                u.op = UInt32(ELASTIC_HASH_UPDATE.rawValue)
                u.handle = handle
                u.length = UInt32(n)
                try u.set(\.data, chunk[at..<(at + n)])
                try call(CElasticControlABI_IOC_HASH, u)
                at += n
            }
        }
        let f = ControlRequest<elastic_hash>()
        f.op = UInt32(ELASTIC_HASH_FINAL.rawValue)
        f.handle = handle
        try call(CElasticControlABI_IOC_HASH, f)
        return f.prefix(\.data, Int(f.length))
    }

    /// The report for `reportData` (64 bytes) with the host's certificate table (SEV-SNP;
    /// empty when the host supplies none).
    public func evidence(reportData: [UInt8]) throws -> (platform: UInt32, report: [UInt8], certificates: [UInt8]) {
        guard reportData.count == 64 else { throw Errno.invalidArgument }
        let r = ControlRequest<elastic_evidence>()
        try r.set(\.report_data, reportData)
        try call(CElasticControlABI_IOC_EVIDENCE, r)
        let max = Int(ELASTIC_EVIDENCE_MAX)
        let reportLength = min(Int(r.report_length), max)
        let certsLength = min(Int(r.certs_length), max - reportLength)
        let data = UnsafeRawBufferPointer(
            start: r.raw.baseAddress! + Int(CElasticControlABI_EVIDENCE_DATA_OFFSET), count: max)
        return (
            r.platform, Array(data[0..<reportLength]), Array(data[reportLength..<(reportLength + certsLength)])
        )
    }

    /// An attestation report with `reportData` (64 bytes): the platform code and the report.
    public func attest(reportData: [UInt8]) throws -> (platform: UInt32, report: [UInt8]) {
        guard reportData.count == 64 else { throw Errno.invalidArgument }
        let r = ControlRequest<elastic_attest>()
        try r.set(\.report_data, reportData)
        try call(CElasticControlABI_IOC_ATTEST, r)
        return (r.platform, r.prefix(\.report, Int(r.report_length)))
    }
}
