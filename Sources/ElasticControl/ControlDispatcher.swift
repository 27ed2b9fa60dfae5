import CElasticControlABI
import ElasticCrypto
import ElasticFormat
import ElasticSystem
import Glibc
import Synchronization

@_exported import protocol ElasticPlatform.AttestationProvider

/// Errors of the control protocol; the FUSE layer maps them to errno.
public enum ControlError: Error, Equatable {
    /// Not an ELASTIC command (ENOTTY).
    case unknownCommand
    /// Wrong size, version, field value or reserved bits set (EINVAL).
    case invalid(String)
    /// A closed, unknown or foreign handle (EBADF).
    case badHandle
    /// The caller holds too many handles (EMFILE).
    case tooManyHandles
    /// This platform has no attestation (EOPNOTSUPP).
    case notAvailable
    /// The platform's attestation failed (EIO); the daemon logs why.
    case platformFailure(String)
    /// The answer does not fit the request's buffer (E2BIG: the host's certificate table).
    case tooLarge
    /// No key of that name (ENOENT).
    case notFound
    /// The key name is taken (EEXIST).
    case exists
    /// Another uid's key (EACCES).
    case accessDenied
    /// The key was not made exportable (EPERM).
    case notExportable
    /// The mount is read-only (EROFS).
    case readOnly
    /// The key store is full (ENOSPC).
    case full
    /// The caller's uid is over its quota of keys, handles or buffered bytes (EDQUOT).
    case quotaExceeded
    /// The caller's uid has as many slow requests queued as it may (EAGAIN); try again later.
    case busy
    /// A signature or an encrypted segment did not verify (EBADMSG).
    case verificationFailed
    /// The key store could not be read or written (EIO); the daemon logs why.
    case storageFailure(String)
    /// The random source, a digest or a key derivation failed inside the daemon (EIO); the
    /// daemon logs why. Never the caller's fault, so never EINVAL.
    case cryptoFailure(String)
}

/// Who sent a control request (from the FUSE request context).
public struct ControlCaller: Sendable {
    public let uid: UInt32
    public let gid: UInt32
    /// The calling thread's id (FUSE passes the kernel task id).
    public let pid: Int32
    public init(uid: UInt32, gid: UInt32, pid: Int32) {
        self.uid = uid
        self.gid = gid
        self.pid = pid
    }
}

/// Serves the control-file ioctls (include/elastic/elastic_ioctl.h). Every input is checked
/// before use: exact sizes, the version, field ranges, zero reserved fields. Thread-safe.
public final class ControlDispatcher: Sendable {
    let handles: HandleTable
    /// Thread id → process id of recent callers (see `owner`).
    let threadGroups = Mutex<[Int32: Int32]>([:])
    let attestation: (any AttestationProvider)?

    /// HKDF keyed with the derive root `R` (docs/control-abi.md).
    let deriveRoot: HKDFExpander
    let time: TimePlatform
    let keys: KeyStore

    /// `master` is the store's master key; only a subkey of it (label
    /// `elastic/v1/control/derive-root`) is kept, separate from every filesystem key. The key
    /// store is loaded from `keyStore` (and never written on a read-only mount).
    public init(
        master: SecureBytes, keyStore: KeyStoreFile, readOnly: Bool = false, time: TimePlatform,
        attestation: (any AttestationProvider)? = nil
    ) throws {
        deriveRoot = try HKDFExpander(
            ikm: try KDF.hkdfSHA256(ikm: master, salt: [], info: Array(KeyLabels.controlDeriveRoot.utf8), length: 32))
        keys = try KeyStore(file: keyStore, readOnly: readOnly)
        handles = try HandleTable()
        self.time = time
        self.attestation = attestation
    }

    /// The size of the struct a command carries (in and out), or nil for unknown commands.
    public static func requestSize(of cmd: UInt32) -> Int? { commands[cmd]?.requestSize }

    /// Whether a request should run off the FUSE threads, on a `SlowRequestQueue` (see
    /// `ControlCommand.isSlow`).
    public func isSlow(cmd: UInt32, input: UnsafeRawBufferPointer, caller: ControlCaller) -> Bool {
        guard let command = Self.commands[cmd], input.count == command.requestSize else { return false }
        return command.isSlow(self, input, caller)
    }

    /// Handles one request: `input` and `output` are the ioctl's in and out buffers (the kernel
    /// sizes both from the command). Returns the number of bytes of `output` to send back.
    public func handle(
        cmd: UInt32, input: UnsafeRawBufferPointer, output: UnsafeMutableRawBufferPointer, caller: ControlCaller
    ) throws(ControlError) -> Int {
        guard let command = Self.commands[cmd] else { throw .unknownCommand }
        guard input.count == command.requestSize, output.count >= command.requestSize else { throw .invalid("size") }
        guard input.load(as: UInt32.self) == ELASTIC_ABI_VERSION else { throw .invalid("version") }
        try command.serve(self, input, output, caller)
        return command.requestSize
    }

    static func allZero<T>(_ v: inout T) -> Bool { withUnsafeBytes(of: &v) { $0.allSatisfy { $0 == 0 } } }

    func clock(_ r: inout elastic_clock, _ caller: ControlCaller) throws(ControlError) {
        guard r.flags == 0, r.source == 0, r.seconds == 0, r.nanoseconds == 0, r.resolution_ns == 0, r.utc_offset == 0,
            r.reserved0 == 0, Self.allZero(&r.timezone), Self.allZero(&r.reserved)
        else { throw .invalid("output or reserved fields set") }
        let id: clockid_t
        var trusted = false
        switch r.clock {
        case UInt32(ELASTIC_CLOCK_REALTIME.rawValue): id = CLOCK_REALTIME
        // Only the raw monotonic clock counts TSC ticks at the firmware-given rate; the others
        // are slewed or stepped by NTP (time the host can feed), so they are never trusted.
        case UInt32(ELASTIC_CLOCK_MONOTONIC.rawValue): id = CLOCK_MONOTONIC
        case UInt32(ELASTIC_CLOCK_BOOTTIME.rawValue): id = CLOCK_BOOTTIME
        case UInt32(ELASTIC_CLOCK_MONOTONIC_RAW.rawValue):
            id = CLOCK_MONOTONIC_RAW
            trusted = time.trustedNow()
        case UInt32(ELASTIC_CLOCK_PROCESS_CPU.rawValue):
            guard let tgid = Self.threadGroup(of: caller.pid) else { throw .invalid("caller process gone") }
            id = clockid_t((~tgid) << 3 | 2)  // MAKE_PROCESS_CPUCLOCK(tgid, CPUCLOCK_SCHED)
        case UInt32(ELASTIC_CLOCK_THREAD_CPU.rawValue):
            guard let ns = Self.threadCPUNanoseconds(caller.pid) else { throw .invalid("caller thread gone") }
            r.seconds = Int64(ns / 1_000_000_000)
            r.nanoseconds = UInt32(ns % 1_000_000_000)
            r.resolution_ns = 1
            fillCommon(&r, trusted: false)
            return
        default: throw .invalid("clock")
        }
        var ts = timespec(), res = timespec()
        guard clock_gettime(id, &ts) == 0 else { throw .invalid("clock unavailable") }
        clock_getres(id, &res)
        r.seconds = Int64(ts.tv_sec)
        r.nanoseconds = UInt32(ts.tv_nsec)
        r.resolution_ns = UInt32(clamping: res.tv_sec * 1_000_000_000 + res.tv_nsec)
        fillCommon(&r, trusted: trusted)
    }

    func fillCommon(_ r: inout elastic_clock, trusted: Bool) {
        r.flags = trusted ? ELASTIC_TIME_TRUSTED : 0
        r.source = UInt32(trusted ? ELASTIC_SOURCE_SECURE_TSC.rawValue : ELASTIC_SOURCE_CLOCK_GETTIME.rawValue)
        var now = Glibc.time(nil)
        var tm = Glibc.tm()
        localtime_r(&now, &tm)
        r.utc_offset = Int32(tm.tm_gmtoff)
        // The zone abbreviation, copied without allocating (this is the hot path of CLOCK).
        withUnsafeMutableBytes(of: &r.timezone) { buf in
            guard let zone = tm.tm_zone else {
                buf.copyBytes(from: "UTC".utf8)
                return
            }
            let n = min(strnlen(zone, buf.count - 1), buf.count - 1)
            buf.copyMemory(from: UnsafeRawBufferPointer(start: zone, count: n))
        }
    }

    /// The thread group (process) of a task id, from /proc.
    static func threadGroup(of tid: Int32) -> Int32? {
        guard let status = try? readProc("/proc/\(tid)/status") else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix("Tgid:") {
            return Int32(line.dropFirst(5).filter { $0 != " " && $0 != "\t" })
        }
        return nil
    }

    /// On-CPU time of a thread in nanoseconds (/proc/<tid>/schedstat, first field).
    static func threadCPUNanoseconds(_ tid: Int32) -> UInt64? {
        guard let s = try? readProc("/proc/\(tid)/schedstat") else { return nil }
        return s.split(separator: " ").first.flatMap { UInt64($0) }
    }

    static func readProc(_ path: String) throws -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ControlError.invalid(path) }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = read(fd, &buf, buf.count)
        guard n > 0 else { throw ControlError.invalid(path) }
        return String(decoding: buf[0..<n], as: UTF8.self)
    }

    static func rawMonotonicNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC_RAW, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// The process (thread group) of the calling thread, which owns its handles. Reading
    /// /proc/<tid>/status costs more than the whole ioctl round trip, so the answer is cached and
    /// each use re-checked with one tgkill(tgid, tid, 0): a tid reused by another process fails it.
    func owner(_ caller: ControlCaller) throws(ControlError) -> Int32 {
        let tid = caller.pid
        if let tgid = threadGroups.withLock({ $0[tid] }), Syscall.isThread(tid, of: tgid) { return tgid }
        guard let tgid = Self.threadGroup(of: tid) else { throw .invalid("caller process gone") }
        threadGroups.withLock { cache in
            if cache.count >= 4096 { cache.removeAll(keepingCapacity: true) }
            cache[tid] = tgid
        }
        return tgid
    }

    func stopwatch(_ r: inout elastic_stopwatch, _ caller: ControlCaller) throws(ControlError) {
        guard r.elapsed_ns == 0, r.flags == 0, r.reserved0 == 0, Self.allZero(&r.reserved) else {
            throw .invalid("output or reserved fields set")
        }
        let owner = try owner(caller)
        // Elapsed time on the raw monotonic clock: never slewed, and trusted (start and end
        // both) when Secure TSC drives it.
        let now = Self.rawMonotonicNanoseconds()
        let trustedNow = time.trustedNow()
        let trusted: Bool
        switch r.op {
        case UInt32(ELASTIC_STOPWATCH_START.rawValue):
            guard r.handle == 0 else { throw .invalid("handle on START") }
            r.handle = try handles.open(
                owner: owner, uid: caller.uid, .stopwatch(startNanoseconds: now, trusted: trustedNow))
            trusted = trustedNow
        case UInt32(ELASTIC_STOPWATCH_READ.rawValue), UInt32(ELASTIC_STOPWATCH_STOP.rawValue):
            let stop = r.op == UInt32(ELASTIC_STOPWATCH_STOP.rawValue)
            let start = try handles.use(r.handle, owner: owner, close: stop) {
                (_, o) throws(ControlError) -> (UInt64, Bool) in
                guard case .stopwatch(let s, let t) = o else { throw .badHandle }
                return (s, t)
            }
            r.elapsed_ns = Int64(now - start.0)
            trusted = start.1 && trustedNow
        default: throw .invalid("op")
        }
        r.flags = trusted ? ELASTIC_TIME_TRUSTED : 0
    }

    func hash(_ r: inout elastic_hash, _ caller: ControlCaller) throws(ControlError) {
        guard r.reserved == 0 else { throw .invalid("reserved") }
        let owner = try owner(caller)
        switch r.op {
        case UInt32(ELASTIC_HASH_INIT.rawValue):
            guard r.handle == 0, r.length == 0 else { throw .invalid("fields on INIT") }
            let alg: Digest.Algorithm
            switch r.algorithm {
            case UInt32(ELASTIC_HASH_SHA256.rawValue): alg = .sha256
            case UInt32(ELASTIC_HASH_SHA384.rawValue): alg = .sha384
            case UInt32(ELASTIC_HASH_SHA512.rawValue): alg = .sha512
            default: throw .invalid("algorithm")
            }
            let d: Digest
            do { d = try Digest(alg) } catch { throw .cryptoFailure("digest \(alg): \(error)") }
            r.handle = try handles.open(owner: owner, uid: caller.uid, .hash(d))
        case UInt32(ELASTIC_HASH_UPDATE.rawValue):
            guard r.length <= ELASTIC_HASH_CHUNK, r.algorithm == 0 else { throw .invalid("length") }
            let n = Int(r.length)
            let data = withUnsafeBytes(of: &r.data) { Array($0.prefix(n)) }
            try handles.use(r.handle, owner: owner, close: false) { (_, o) throws(ControlError) in
                guard case .hash(let d) = o else { throw .badHandle }
                do { try data.withUnsafeBytes { try d.update($0) } } catch {
                    throw .cryptoFailure("digest update: \(error)")
                }
            }
        case UInt32(ELASTIC_HASH_FINAL.rawValue):
            guard r.length == 0, r.algorithm == 0 else { throw .invalid("fields on FINAL") }
            let digest = try handles.use(r.handle, owner: owner, close: true) {
                (_, o) throws(ControlError) -> [UInt8] in
                guard case .hash(let d) = o else { throw .badHandle }
                do { return try d.finish() } catch { throw .cryptoFailure("digest final: \(error)") }
            }
            withUnsafeMutableBytes(of: &r.data) { buf in
                buf.initializeMemory(as: UInt8.self, repeating: 0)
                buf.copyBytes(from: digest)
            }
            r.length = UInt32(digest.count)
        default: throw .invalid("op")
        }
    }

    func attest(_ r: inout elastic_attest) throws(ControlError) {
        guard r.platform == 0, r.report_length == 0, r.reserved0 == 0, Self.allZero(&r.report) else {
            throw .invalid("output or reserved fields set")
        }
        guard let attestation else { throw .notAvailable }
        let data = withUnsafeBytes(of: &r.report_data) { Array($0) }
        let result: (platform: UInt32, report: [UInt8])
        do { result = try attestation.report(reportData: data) } catch { throw .platformFailure("\(error)") }
        guard result.report.count <= Int(ELASTIC_REPORT_MAX) else { throw .platformFailure("report too large") }
        r.platform = result.platform
        r.report_length = UInt32(result.report.count)
        withUnsafeMutableBytes(of: &r.report) { $0.copyBytes(from: result.report) }
    }

    func evidence(_ r: inout elastic_evidence) throws(ControlError) {
        let at = Int(CElasticControlABI_EVIDENCE_DATA_OFFSET)
        let outputZero = withUnsafeBytes(of: &r) { $0[at...].allSatisfy { $0 == 0 } }
        guard r.platform == 0, r.report_length == 0, r.certs_length == 0, outputZero else {
            throw .invalid("output fields set")
        }
        guard let attestation else { throw .notAvailable }
        let data = withUnsafeBytes(of: &r.report_data) { Array($0) }
        let result: (platform: UInt32, report: [UInt8], certificates: [UInt8])
        do { result = try attestation.evidence(reportData: data) } catch { throw .platformFailure("\(error)") }
        let total = result.report.count + result.certificates.count
        guard total <= Int(ELASTIC_EVIDENCE_MAX) else { throw .tooLarge }
        r.platform = result.platform
        r.report_length = UInt32(result.report.count)
        r.certs_length = UInt32(result.certificates.count)
        withUnsafeMutableBytes(of: &r) { raw in
            UnsafeMutableRawBufferPointer(rebasing: raw[at..<(at + total)]).copyBytes(
                from: result.report + result.certificates)
        }
    }

    func random(_ r: inout elastic_random) throws(ControlError) {
        guard r.length >= 1, r.length <= ELASTIC_RANDOM_MAX, r.reserved == 0, Self.allZero(&r.data) else {
            throw .invalid("length or reserved")
        }
        let n = Int(r.length)
        let failure = withUnsafeMutableBytes(of: &r.data) { buf -> (any Error)? in
            do { try Random.fill(UnsafeMutableRawBufferPointer(rebasing: buf[0..<n])) } catch { return error }
            return nil
        }
        if let failure { throw .cryptoFailure("random source: \(failure)") }
    }

    static let deriveInfoPrefix = Array(KeyLabels.controlDerive.utf8) + [0]

    func derive(_ r: inout elastic_derive, _ caller: ControlCaller) throws(ControlError) {
        let klen = Int(r.key_length), llen = Int(r.label_length)
        guard (16...Int(ELASTIC_DERIVED_KEY_MAX)).contains(klen), (1...Int(ELASTIC_LABEL_MAX)).contains(llen),
            r.reserved0 == 0, Self.allZero(&r.reserved), Self.allZero(&r.key)
        else { throw .invalid("lengths or reserved") }
        guard withUnsafeBytes(of: &r.label, { $0[llen...].allSatisfy { $0 == 0 } }) else {
            throw .invalid("label padding")
        }
        // info = "elastic/v1/control/derive" ‖ 0x00 ‖ be32(uid) ‖ label, built on the stack.
        let prefix = Self.deriveInfoPrefix.count, total = prefix + 4 + llen
        let failure = withUnsafeTemporaryAllocation(byteCount: total, alignment: 1) { info -> (any Error)? in
            Self.deriveInfoPrefix.withUnsafeBytes { info.copyMemory(from: $0) }
            withUnsafeBytes(of: caller.uid.bigEndian) {
                UnsafeMutableRawBufferPointer(rebasing: info[prefix..<(prefix + 4)]).copyMemory(from: $0)
            }
            withUnsafeBytes(of: &r.label) {
                UnsafeMutableRawBufferPointer(rebasing: info[(prefix + 4)...]).copyMemory(
                    from: UnsafeRawBufferPointer(rebasing: $0[0..<llen]))
            }
            return withUnsafeMutableBytes(of: &r.key) { out -> (any Error)? in
                do {
                    try deriveRoot.expand(
                        info: UnsafeRawBufferPointer(info), into: UnsafeMutableRawBufferPointer(rebasing: out[0..<klen])
                    )
                } catch { return error }
                return nil
            }
        }
        if let failure { throw .cryptoFailure("derivation: \(failure)") }
    }
}
