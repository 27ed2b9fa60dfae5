import CElasticControlABI
import ElasticControlClient
import ElasticCrypto
import ElasticFormat
import ElasticSystem
import Glibc
import Synchronization
import Testing

@testable import ElasticControl

/// What one user of the control file can take from the others: handles are reclaimed when
/// their process exits and bounded per process, per uid and in all; buffered bytes are bounded
/// per uid; slow requests wait their turn per uid.
@Suite struct ControlResourceTests {
    func dispatcher() throws -> ControlDispatcher {
        let master = try SecureBytes.random(count: 32)
        return try ControlDispatcher(
            master: master,
            keyStore: KeyStoreFile(
                directory: try Syscall.openDirectory(try temporaryDirectory()), keys: try StoreKeys(master: master),
                root: nil),
            time: TimePlatform(secureTSC: false))
    }

    /// A child process that sleeps until killed.
    func sleeper() throws -> pid_t {
        var pid: pid_t = 0
        let args: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/sleep"), strdup("60"), nil]
        defer { for a in args { free(a) } }
        let rc = args.withUnsafeBufferPointer {
            posix_spawn(&pid, "/bin/sleep", nil, nil, UnsafeMutablePointer(mutating: $0.baseAddress!), environ)
        }
        guard rc == 0 else { throw Errno(rawValue: rc) }
        return pid
    }

    func end(_ pid: pid_t) {
        kill(pid, SIGKILL)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
    }

    func startStopwatch(_ d: ControlDispatcher, as caller: ControlCaller) -> ControlError? {
        let r = ControlRequest<elastic_stopwatch>()
        r.version = ELASTIC_ABI_VERSION
        r.op = UInt32(ELASTIC_STOPWATCH_START.rawValue)
        let input = Array(r.raw)
        var out = [UInt8](repeating: 0, count: input.count)
        do {
            _ = try input.withUnsafeBytes { i in
                try out.withUnsafeMutableBytes { o in
                    try d.handle(cmd: CElasticControlABI_IOC_STOPWATCH, input: i, output: o, caller: caller)
                }
            }
        } catch let e as ControlError { return e } catch { return .invalid("\(error)") }
        return nil
    }

    /// Waits up to two seconds for `condition`.
    func eventually(_ condition: () -> Bool) -> Bool {
        for _ in 0..<200 {
            if condition() { return true }
            usleep(10_000)
        }
        return condition()
    }

    @Test func handlesOfAnExitedProcessAreReclaimedAtOnce() throws {
        let d = try dispatcher()
        // Many short processes, each leaving its handles open: nothing accumulates.
        for _ in 0..<40 {
            let child = try sleeper()
            let caller = ControlCaller(uid: 1000, gid: 1000, pid: child)
            for _ in 0..<Int(ELASTIC_HANDLES_PER_PROCESS) { #expect(startStopwatch(d, as: caller) == nil) }
            #expect(startStopwatch(d, as: caller) == .tooManyHandles, "per-process limit")
            end(child)
            #expect(eventually { d.handles.count(uid: 1000) == 0 }, "handles of an exited process are dropped")
        }
        #expect(d.handles.count() == 0 && d.handles.processCount == 0)
    }

    @Test func handlesAreBoundedPerUIDAndInAll() throws {
        let d = try dispatcher()
        var children: [pid_t] = []
        defer { for c in children { end(c) } }
        var opened = 0
        var refused: ControlError? = nil
        // Five processes of one uid try 64 handles each; the uid stops at its limit.
        for _ in 0..<5 {
            let child = try sleeper()
            children.append(child)
            for _ in 0..<Int(ELASTIC_HANDLES_PER_PROCESS) {
                if let e = startStopwatch(d, as: ControlCaller(uid: 1000, gid: 1000, pid: child)) {
                    refused = e
                } else {
                    opened += 1
                }
            }
        }
        #expect(opened == Int(ELASTIC_HANDLES_PER_UID) && refused == .tooManyHandles)
        // Another uid is not affected.
        let other = try sleeper()
        children.append(other)
        #expect(startStopwatch(d, as: ControlCaller(uid: 1001, gid: 1001, pid: other)) == nil)
        // The total: a table with a small overall limit refuses past it, whoever asks.
        let small = try HandleTable(limits: .init(perProcess: 64, perUID: 64, total: 10, bufferedPerUID: 1 << 20))
        for i in 0..<10 {
            _ = try small.open(
                owner: children[i % 5], uid: UInt32(2000 + i), .stopwatch(startNanoseconds: 0, trusted: false))
        }
        #expect(throws: ControlError.tooManyHandles) {
            try small.open(owner: children[0], uid: 3000, .stopwatch(startNanoseconds: 0, trusted: false))
        }
    }

    @Test func bufferedBytesAreBoundedPerUID() throws {
        let d = try dispatcher()
        let alice = ControlCaller(uid: 1000, gid: 1000, pid: getpid())
        let create = ControlRequest<elastic_key>()
        create.version = ELASTIC_ABI_VERSION
        create.op = UInt32(ELASTIC_KEY_CREATE.rawValue)
        create.type = UInt32(ELASTIC_KEY_ED25519.rawValue)
        create.withBytes(\.name) { $0.copyBytes(from: Array("ed".utf8)) }
        try call(d, CElasticControlABI_IOC_KEY, create, alice)
        // Ed25519 buffers the message: 8 handles of 1 MiB fill the uid's 8 MiB, the ninth is refused.
        var refusedAt: Int? = nil
        for h in 0..<9 {
            let initR = ControlRequest<elastic_keyop>()
            initR.version = ELASTIC_ABI_VERSION
            initR.step = UInt32(ELASTIC_STEP_INIT.rawValue)
            initR.operation = UInt32(ELASTIC_OP_SIGN.rawValue)
            initR.withBytes(\.name) { $0.copyBytes(from: Array("ed".utf8)) }
            try call(d, CElasticControlABI_IOC_KEYOP, initR, alice)
            for chunk in 0..<256 {
                let u = ControlRequest<elastic_keyop>()
                u.version = ELASTIC_ABI_VERSION
                u.step = UInt32(ELASTIC_STEP_UPDATE.rawValue)
                u.handle = initR.handle
                u.length = 4096
                do { try call(d, CElasticControlABI_IOC_KEYOP, u, alice) } catch let e as ControlError {
                    #expect(e == .quotaExceeded)
                    refusedAt = h * 256 + chunk
                    break
                }
            }
            if refusedAt != nil { break }
        }
        #expect(refusedAt == Int(ELASTIC_BUFFERED_PER_UID) / 4096)
    }

    func call<T>(_ d: ControlDispatcher, _ cmd: UInt32, _ value: ControlRequest<T>, _ caller: ControlCaller) throws {
        let input = Array(value.raw)
        var out = [UInt8](repeating: 0, count: input.count)
        _ = try input.withUnsafeBytes { i in
            try out.withUnsafeMutableBytes { o in try d.handle(cmd: cmd, input: i, output: o, caller: caller) }
        }
        value.raw.copyBytes(from: out)
    }

    @Test func slowRequestsAreClassified() throws {
        let d = try dispatcher()
        let me = ControlCaller(uid: 0, gid: 0, pid: getpid())
        func key(_ op: elastic_key_op, _ type: elastic_key_type) -> Bool {
            let r = ControlRequest<elastic_key>()
            r.op = UInt32(op.rawValue)
            r.type = UInt32(type.rawValue)
            return d.isSlow(cmd: CElasticControlABI_IOC_KEY, input: UnsafeRawBufferPointer(r.raw), caller: me)
        }
        #expect(key(ELASTIC_KEY_CREATE, ELASTIC_KEY_RSA) && key(ELASTIC_KEY_IMPORT, ELASTIC_KEY_EC_P256))
        #expect(!key(ELASTIC_KEY_CREATE, ELASTIC_KEY_AES256) && !key(ELASTIC_KEY_INFO, ELASTIC_KEY_RSA))
        let attest = ControlRequest<elastic_attest>()
        #expect(d.isSlow(cmd: CElasticControlABI_IOC_ATTEST, input: UnsafeRawBufferPointer(attest.raw), caller: me))
        let clock = ControlRequest<elastic_clock>()
        #expect(!d.isSlow(cmd: CElasticControlABI_IOC_CLOCK, input: UnsafeRawBufferPointer(clock.raw), caller: me))
    }

    /// One uid's slow requests wait their turn: at most `perUID` in flight (then busy), and the
    /// worker serves uids in turn, so a uid with a long queue does not starve the next.
    @Test func slowQueueIsFairAndBoundedPerUID() throws {
        let q = SlowRequestQueue(workers: 1, perUID: 4, niceness: 0)
        defer { q.stop() }
        let order = Mutex<[UInt32]>([])
        let started = Mutex<Bool>(false)
        let gate = Mutex<Bool>(false)
        // The first job holds the worker until the others are queued.
        try q.submit(uid: 1) {
            started.withLock { $0 = true }
            while !gate.withLock({ $0 }) { usleep(1000) }
            order.withLock { $0.append(1) }
        }
        #expect(eventually { started.withLock { $0 } })
        for _ in 0..<3 { try q.submit(uid: 1) { order.withLock { $0.append(1) } } }
        #expect(throws: ControlError.busy) { try q.submit(uid: 1) {} }
        try q.submit(uid: 2) { order.withLock { $0.append(2) } }
        gate.withLock { $0 = true }
        #expect(eventually { order.withLock { $0.count } == 5 })
        #expect(
            order.withLock { $0 } == [1, 1, 2, 1, 1], "uid 2 waits for one of uid 1's requests, not for its backlog")
        try q.submit(uid: 1) {}  // room again
    }
}
