import CElasticControlABI
import ElasticControlClient
import ElasticCrypto
import ElasticFormat
import ElasticSystem
import Foundation
import Glibc
import Synchronization
import Testing

@testable import ElasticControl

@Suite struct ControlDispatcherTests {
    let caller = ControlCaller(uid: 1000, gid: 1000, pid: getpid())

    func dispatcher() throws -> ControlDispatcher {
        let master = try SecureBytes.random(count: 32)
        return try ControlDispatcher(
            master: master,
            keyStore: KeyStoreFile(
                directory: try Syscall.openDirectory(try temporaryDirectory()), keys: try StoreKeys(master: master),
                root: nil),
            time: TimePlatform(secureTSC: false))
    }

    /// One request through the dispatcher, as the FUSE layer sends it.
    func send<T>(_ d: ControlDispatcher, _ cmd: UInt32, _ value: ControlRequest<T>, caller: ControlCaller? = nil) throws
    {
        let size = MemoryLayout<T>.size
        var out = [UInt8](repeating: 0, count: size)
        let input = Array(value.raw)
        _ = try input.withUnsafeBytes { i throws -> Int in
            try out.withUnsafeMutableBytes { o throws -> Int in
                try d.handle(cmd: cmd, input: i, output: o, caller: caller ?? self.caller)
            }
        }
        value.raw.copyBytes(from: out)
    }

    @Test func abiSizesAndNumbersArePinned() {
        #expect(MemoryLayout<elastic_clock>.size == 104)
        #expect(MemoryLayout<elastic_random>.size == 4112)
        #expect(MemoryLayout<elastic_derive>.size == 352)
        #expect(CElasticControlABI_IOC_CLOCK == 0xC068_4501)
        #expect(CElasticControlABI_IOC_RANDOM == 0xD010_4502)
        #expect(CElasticControlABI_IOC_DERIVE == 0xC160_4503)
        #expect(MemoryLayout<elastic_stopwatch>.size == 48)
        #expect(MemoryLayout<elastic_hash>.size == 4128)
        #expect(CElasticControlABI_IOC_STOPWATCH == 0xC030_4504)
        #expect(CElasticControlABI_IOC_HASH == 0xD020_4505)
        #expect(MemoryLayout<elastic_attest>.size == 4080)
        #expect(MemoryLayout<elastic_evidence>.size == 15376 && CElasticControlABI_EVIDENCE_DATA_OFFSET == 80)
        #expect(CElasticControlABI_IOC_ATTEST == 0xCFF0_4506)
        #expect(MemoryLayout<elastic_key>.size == 4208)
        #expect(MemoryLayout<elastic_keyop>.size == 4208)
        #expect(CElasticControlABI_IOC_KEY == 0xD070_4507)
        #expect(CElasticControlABI_IOC_KEYOP == 0xD070_4508)
    }

    @Test func clockReadingsAndValidation() throws {
        let d = try dispatcher()
        var last: (Int64, UInt32) = (0, 0)
        for _ in 0..<1000 {
            let c = ControlRequest<elastic_clock>()
            c.version = ELASTIC_ABI_VERSION
            c.clock = UInt32(ELASTIC_CLOCK_MONOTONIC.rawValue)
            try send(d, CElasticControlABI_IOC_CLOCK, c)
            #expect((c.seconds, c.nanoseconds) >= last, "monotonic never goes back")
            #expect(c.source == UInt32(ELASTIC_SOURCE_CLOCK_GETTIME.rawValue) && c.flags & ELASTIC_TIME_TRUSTED == 0)
            last = (c.seconds, c.nanoseconds)
        }
        for id in [ELASTIC_CLOCK_REALTIME, ELASTIC_CLOCK_BOOTTIME, ELASTIC_CLOCK_PROCESS_CPU, ELASTIC_CLOCK_THREAD_CPU]
        {
            let c = ControlRequest<elastic_clock>()
            c.version = ELASTIC_ABI_VERSION
            c.clock = UInt32(id.rawValue)
            try send(d, CElasticControlABI_IOC_CLOCK, c)
            #expect(c.seconds > 0 || c.nanoseconds > 0)
        }
        let bad = ControlRequest<elastic_clock>()
        bad.version = ELASTIC_ABI_VERSION
        bad.clock = 99
        #expect(throws: ControlError.self) { try send(d, CElasticControlABI_IOC_CLOCK, bad) }
        bad.clock = 0
        bad.reserved.0 = 1
        #expect(throws: ControlError.self) { try send(d, CElasticControlABI_IOC_CLOCK, bad) }
        let v2 = ControlRequest<elastic_clock>()
        v2.version = 2
        #expect(throws: ControlError.self) { try send(d, CElasticControlABI_IOC_CLOCK, v2) }
    }

    @Test func deriveIsBoundToLabelAndUser() throws {
        let d = try dispatcher()
        func derive(_ label: String, uid: UInt32 = 1000, length: UInt32 = 32) throws -> [UInt8] {
            let r = ControlRequest<elastic_derive>()
            r.version = ELASTIC_ABI_VERSION
            r.key_length = length
            r.label_length = UInt32(label.utf8.count)
            r.withBytes(\.label) { $0.copyBytes(from: Array(label.utf8)) }
            try send(d, CElasticControlABI_IOC_DERIVE, r, caller: ControlCaller(uid: uid, gid: 0, pid: getpid()))
            return r.withBytes(\.key) { Array($0.prefix(Int(length))) }
        }
        let k = try derive("db")
        #expect(k == (try derive("db")))
        #expect(k != (try derive("db2")))
        #expect(k != (try derive("db", uid: 1001)))
        #expect((try derive("db", length: 64)).count == 64)
        // The derivation is exactly the one docs/control-abi.md states (so keys stay the same
        // across versions).
        let master = try SecureBytes.random(count: 32)
        let pinned = try ControlDispatcher(
            master: master,
            keyStore: KeyStoreFile(
                directory: try Syscall.openDirectory(try temporaryDirectory()), keys: try StoreKeys(master: master),
                root: nil),
            time: TimePlatform(secureTSC: false))
        let r = ControlRequest<elastic_derive>()
        r.version = ELASTIC_ABI_VERSION
        r.key_length = 48
        r.label_length = 6
        r.withBytes(\.label) { $0.copyBytes(from: Array("app/db".utf8)) }
        try send(
            pinned, CElasticControlABI_IOC_DERIVE, r, caller: ControlCaller(uid: 0x0102_0304, gid: 0, pid: getpid()))
        let root = try KDF.hkdfSHA256(
            ikm: master, salt: [], info: Array("elastic/v1/control/derive-root".utf8), length: 32)
        let expected = try KDF.hkdfSHA256(
            ikm: root, salt: [],
            info: Array("elastic/v1/control/derive".utf8) + [0, 1, 2, 3, 4] + Array("app/db".utf8), length: 48)
        #expect(expected.withUnsafeBytes { Array($0) } == r.withBytes(\.key) { Array($0.prefix(48)) })
        #expect(throws: ControlError.self) { try derive("db", length: 8) }
        #expect(throws: ControlError.self) { try derive("db", length: 65) }
        #expect(throws: ControlError.self) { try derive("") }
    }

    @Test func randomLengths() throws {
        let d = try dispatcher()
        let r = ControlRequest<elastic_random>()
        r.version = ELASTIC_ABI_VERSION
        r.length = 32
        try send(d, CElasticControlABI_IOC_RANDOM, r)
        #expect(r.withBytes(\.data) { $0.prefix(32).contains { $0 != 0 } && $0.dropFirst(32).allSatisfy { $0 == 0 } })
        r.length = 0
        #expect(throws: ControlError.self) { try send(d, CElasticControlABI_IOC_RANDOM, r) }
        let big = ControlRequest<elastic_random>()
        big.version = ELASTIC_ABI_VERSION
        big.length = ELASTIC_RANDOM_MAX + 1
        #expect(throws: ControlError.self) { try send(d, CElasticControlABI_IOC_RANDOM, big) }
    }

    func stopwatch(
        _ d: ControlDispatcher, _ op: elastic_stopwatch_op, _ handle: UInt64 = 0, caller: ControlCaller? = nil
    ) throws -> ControlRequest<elastic_stopwatch> {
        let r = ControlRequest<elastic_stopwatch>()
        r.version = ELASTIC_ABI_VERSION
        r.op = UInt32(op.rawValue)
        r.handle = handle
        try send(d, CElasticControlABI_IOC_STOPWATCH, r, caller: caller)
        return r
    }

    @Test func stopwatchesAndHandleOwnership() throws {
        let d = try dispatcher()
        let h = try stopwatch(d, ELASTIC_STOPWATCH_START).handle
        #expect(h != 0)
        usleep(20_000)
        let e1 = try stopwatch(d, ELASTIC_STOPWATCH_READ, h).elapsed_ns
        #expect(e1 >= 20_000_000)
        // Another process (init, pid 1) cannot use it.
        #expect(throws: ControlError.badHandle) {
            try stopwatch(d, ELASTIC_STOPWATCH_READ, h, caller: ControlCaller(uid: 0, gid: 0, pid: 1))
        }
        let e2 = try stopwatch(d, ELASTIC_STOPWATCH_STOP, h).elapsed_ns
        #expect(e2 >= e1)
        #expect(throws: ControlError.badHandle) { try stopwatch(d, ELASTIC_STOPWATCH_READ, h) }
        #expect(throws: ControlError.badHandle) { try stopwatch(d, ELASTIC_STOPWATCH_STOP, 12345) }
        // At most 64 open handles per process.
        var open: [UInt64] = []
        for _ in 0..<64 { open.append(try stopwatch(d, ELASTIC_STOPWATCH_START).handle) }
        #expect(throws: ControlError.tooManyHandles) { try stopwatch(d, ELASTIC_STOPWATCH_START) }
        for h in open { _ = try stopwatch(d, ELASTIC_STOPWATCH_STOP, h) }
        _ = try stopwatch(d, ELASTIC_STOPWATCH_START)
    }

    @Test func streamedHashMatchesOneShot() throws {
        let d = try dispatcher()
        let data = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 * 31) }
        let r = ControlRequest<elastic_hash>()
        r.version = ELASTIC_ABI_VERSION
        r.op = UInt32(ELASTIC_HASH_INIT.rawValue)
        r.algorithm = UInt32(ELASTIC_HASH_SHA256.rawValue)
        try send(d, CElasticControlABI_IOC_HASH, r)
        let h = r.handle
        for start in stride(from: 0, to: data.count, by: 4096) {
            let u = ControlRequest<elastic_hash>()
            u.version = ELASTIC_ABI_VERSION
            u.op = UInt32(ELASTIC_HASH_UPDATE.rawValue)
            u.handle = h
            let chunk = data[start..<min(start + 4096, data.count)]
            u.length = UInt32(chunk.count)
            u.withBytes(\.data) { $0.copyBytes(from: chunk) }
            try send(d, CElasticControlABI_IOC_HASH, u)
        }
        let f = ControlRequest<elastic_hash>()
        f.version = ELASTIC_ABI_VERSION
        f.op = UInt32(ELASTIC_HASH_FINAL.rawValue)
        f.handle = h
        try send(d, CElasticControlABI_IOC_HASH, f)
        #expect(f.length == 32)
        #expect(f.withBytes(\.data) { Array($0.prefix(32)) } == KDF.sha256(data))
        let again = ControlRequest<elastic_hash>()
        again.version = ELASTIC_ABI_VERSION
        again.op = UInt32(ELASTIC_HASH_FINAL.rawValue)
        again.handle = h
        #expect(throws: ControlError.badHandle) { try send(d, CElasticControlABI_IOC_HASH, again) }  // closed
        let bad = ControlRequest<elastic_hash>()
        bad.version = ELASTIC_ABI_VERSION
        bad.op = UInt32(ELASTIC_HASH_INIT.rawValue)
        bad.algorithm = 9
        #expect(throws: ControlError.self) { try send(d, CElasticControlABI_IOC_HASH, bad) }
    }

    /// Random commands and random bytes: every answer is a result or a ControlError, never a crash.
    /// Only the raw monotonic clock is ever trusted, and only while Secure TSC is on and the
    /// kernel's clock source is the TSC, checked again as readings are taken.
    @Test func trustFollowsSecureTSCAndTheClockSource() throws {
        let source = Mutex("tsc")
        let master = try SecureBytes.random(count: 32)
        let d = try ControlDispatcher(
            master: master,
            keyStore: KeyStoreFile(
                directory: try Syscall.openDirectory(try temporaryDirectory()), keys: try StoreKeys(master: master),
                root: nil),
            time: TimePlatform(secureTSC: true, recheckInterval: 0, clockSource: { source.withLock { $0 } }))
        func read(_ clock: elastic_clock_id) throws -> (trusted: Bool, source: UInt32) {
            let c = ControlRequest<elastic_clock>()
            c.clock = UInt32(clock.rawValue)
            try send(d, CElasticControlABI_IOC_CLOCK, c)
            return (c.flags & ELASTIC_TIME_TRUSTED != 0, c.source)
        }
        #expect(try read(ELASTIC_CLOCK_MONOTONIC_RAW) == (true, UInt32(ELASTIC_SOURCE_SECURE_TSC.rawValue)))
        for slewed in [ELASTIC_CLOCK_MONOTONIC, ELASTIC_CLOCK_BOOTTIME, ELASTIC_CLOCK_REALTIME] {
            #expect(try read(slewed).trusted == false, "NTP-adjusted clocks are never trusted")
        }
        let sw = ControlRequest<elastic_stopwatch>()
        sw.op = UInt32(ELASTIC_STOPWATCH_START.rawValue)
        try send(d, CElasticControlABI_IOC_STOPWATCH, sw)
        #expect(sw.flags & ELASTIC_TIME_TRUSTED != 0)
        // The clock source moves to kvm-clock: readings are untrusted while it is.
        source.withLock { $0 = "kvm-clock" }
        #expect(try read(ELASTIC_CLOCK_MONOTONIC_RAW) == (false, UInt32(ELASTIC_SOURCE_CLOCK_GETTIME.rawValue)))
        let read = ControlRequest<elastic_stopwatch>()
        read.op = UInt32(ELASTIC_STOPWATCH_READ.rawValue)
        read.handle = sw.handle
        try send(d, CElasticControlABI_IOC_STOPWATCH, read)
        #expect(read.flags & ELASTIC_TIME_TRUSTED == 0)
        // Back on the TSC: a stopwatch trusted at both ends is trusted again (the daemon samples
        // the clock source; docs/control-abi.md says what that cannot see).
        source.withLock { $0 = "tsc" }
        let stop = ControlRequest<elastic_stopwatch>()
        stop.op = UInt32(ELASTIC_STOPWATCH_STOP.rawValue)
        stop.handle = sw.handle
        try send(d, CElasticControlABI_IOC_STOPWATCH, stop)
        #expect(stop.flags & ELASTIC_TIME_TRUSTED != 0 && stop.elapsed_ns > 0)
        // Without Secure TSC nothing is trusted, whatever the clock source.
        let plain = try dispatcher()
        let c = ControlRequest<elastic_clock>()
        c.clock = UInt32(ELASTIC_CLOCK_MONOTONIC_RAW.rawValue)
        try send(plain, CElasticControlABI_IOC_CLOCK, c)
        #expect(c.flags == 0)
    }

    @Test func fuzzTheDispatcher() throws {
        let d = try dispatcher()
        var rng = SystemRandomNumberGenerator()
        let commands = [
            CElasticControlABI_IOC_CLOCK, CElasticControlABI_IOC_RANDOM, CElasticControlABI_IOC_DERIVE,
            CElasticControlABI_IOC_STOPWATCH, CElasticControlABI_IOC_HASH, CElasticControlABI_IOC_KEY,
            CElasticControlABI_IOC_KEYOP, 0, 0xC068_4509, UInt32.random(in: 0...UInt32.max, using: &rng),
        ]
        for i in 0..<20_000 {
            let cmd = commands[i % commands.count]
            let size = ControlDispatcher.requestSize(of: cmd) ?? Int.random(in: 0...512, using: &rng)
            var input = (0..<size).map { _ in UInt8.random(in: 0...255, using: &rng) }
            if size >= 4 && i % 3 == 0 {
                input[0] = 1
                input[1] = 0
                input[2] = 0
                input[3] = 0
            }
            if i % 7 == 0 { input = Array(input.prefix(Int.random(in: 0...size, using: &rng))) }
            var out = [UInt8](repeating: 0, count: max(size, 1))
            let known = ControlDispatcher.requestSize(of: cmd)
            do {
                let n = try input.withUnsafeBytes { inp throws -> Int in
                    try out.withUnsafeMutableBytes { o throws -> Int in
                        try d.handle(cmd: cmd, input: inp, output: o, caller: caller)
                    }
                }
                // An answer is the whole struct, still carrying the ABI version it was asked in.
                #expect(known != nil && n == known && input.count == known, "command \(cmd) answered \(n) bytes")
                #expect(out.prefix(4) == [1, 0, 0, 0], "reply keeps the version")
            } catch let e as ControlError {
                if known == nil { #expect(e == .unknownCommand, "unknown command \(cmd) must be ENOTTY, not \(e)") }
                if let known, input.count != known { #expect(e == .invalid("size")) }
            }
            // One process can never hold more handles than its limit, whatever it sends.
            #expect(d.handles.count(uid: caller.uid) <= Int(ELASTIC_HANDLES_PER_PROCESS))
        }
        // The dispatcher still answers well-formed requests after all that.
        let c = ControlRequest<elastic_clock>()
        c.clock = UInt32(ELASTIC_CLOCK_MONOTONIC.rawValue)
        try send(d, CElasticControlABI_IOC_CLOCK, c)
        #expect(c.seconds > 0 || c.nanoseconds > 0)
        let r = ControlRequest<elastic_random>()
        r.length = 32
        try send(d, CElasticControlABI_IOC_RANDOM, r)
        #expect(r.prefix(\.data, 32).contains { $0 != 0 })
    }
}

/// One directory per test process, holding every scratch directory; removed at exit.
let scratchRoot: String = {
    var template = Array("/tmp/elastic-unit.XXXXXX".utf8CString)
    guard let p = mkdtemp(&template) else { return "/tmp" }
    atexit {
        guard scratchRoot != "/tmp" else { return }
        _ = try? FileManager.default.removeItem(atPath: scratchRoot)
    }
    return String(cString: p)
}()

/// A fresh directory (a backing directory for the key store), removed when the tests end.
func temporaryDirectory() throws -> String {
    var template = Array((scratchRoot + "/d.XXXXXX").utf8CString)
    guard let p = mkdtemp(&template) else { throw Errno(rawValue: errno) }
    return String(cString: p)
}
