import CElasticControlABI
import ElasticCrypto

/// One ioctl of the control file: its number, the struct it carries in and out (whose size the
/// kernel checks), who serves it, and whether it runs on the slow queue. `ControlDispatcher.commands`
/// lists them all; a command not in the table is ENOTTY.
struct ControlCommand: Sendable {
    let number: UInt32
    let requestSize: Int
    let serve:
        @Sendable (ControlDispatcher, UnsafeRawBufferPointer, UnsafeMutableRawBufferPointer, ControlCaller)
            throws(ControlError) -> Void
    let isSlow: @Sendable (ControlDispatcher, UnsafeRawBufferPointer, ControlCaller) -> Bool

    /// A command carrying a `Layout`: the handler works on a private copy of the request, which
    /// is wiped afterwards when the command may carry key material (`secrets`).
    init<Layout>(
        _ number: UInt32, _ layout: Layout.Type, secrets: Bool = false,
        slow: @escaping @Sendable (ControlDispatcher, UnsafeRawBufferPointer, ControlCaller) -> Bool = { _, _, _ in
            false
        },
        _ handler: @escaping @Sendable (ControlDispatcher, inout Layout, ControlCaller) throws(ControlError) -> Void
    ) {
        self.number = number
        requestSize = MemoryLayout<Layout>.size
        isSlow = slow
        serve = { (dispatcher, input, output, caller) throws(ControlError) in
            guard input.count >= MemoryLayout<Layout>.size, output.count >= MemoryLayout<Layout>.size else {
                throw .invalid("size")
            }
            // One copy in, one out, through raw memory (never a Swift value copy of the struct).
            let request = UnsafeMutablePointer<Layout>.allocate(capacity: 1)
            let bytes = UnsafeMutableRawBufferPointer(
                start: UnsafeMutableRawPointer(request), count: MemoryLayout<Layout>.size)
            bytes.copyMemory(from: UnsafeRawBufferPointer(rebasing: input[0..<bytes.count]))
            defer {
                if secrets { secureWipe(bytes) }
                request.deallocate()
            }
            try handler(dispatcher, &request.pointee, caller)
            output.copyMemory(from: UnsafeRawBufferPointer(bytes))
        }
    }
}

extension ControlDispatcher {
    /// Every command of include/elastic/elastic_ioctl.h.
    static let commands: [UInt32: ControlCommand] = {
        let all: [ControlCommand] = [
            ControlCommand(CElasticControlABI_IOC_CLOCK, elastic_clock.self) { d, r, c throws(ControlError) in
                try d.clock(&r, c)
            },
            ControlCommand(CElasticControlABI_IOC_RANDOM, elastic_random.self, secrets: true) {
                d, r, _ throws(ControlError) in
                try d.random(&r)
            },
            ControlCommand(CElasticControlABI_IOC_DERIVE, elastic_derive.self, secrets: true) {
                d, r, c throws(ControlError) in try d.derive(&r, c)
            },
            ControlCommand(CElasticControlABI_IOC_STOPWATCH, elastic_stopwatch.self) { d, r, c throws(ControlError) in
                try d.stopwatch(&r, c)
            },
            ControlCommand(CElasticControlABI_IOC_HASH, elastic_hash.self) { d, r, c throws(ControlError) in
                try d.hash(&r, c)
            },
            ControlCommand(CElasticControlABI_IOC_ATTEST, elastic_attest.self, slow: { _, _, _ in true }) {
                d, r, _ throws(ControlError) in
                try d.attest(&r)
            },
            ControlCommand(CElasticControlABI_IOC_EVIDENCE, elastic_evidence.self, slow: { _, _, _ in true }) {
                d, r, _ throws(ControlError) in
                try d.evidence(&r)
            },
            ControlCommand(
                CElasticControlABI_IOC_KEY, elastic_key.self, secrets: true,
                slow: { _, input, _ in isSlowKeyRequest(input) }
            ) {
                d, r, c throws(ControlError) in try d.key(&r, c)
            },
            ControlCommand(
                CElasticControlABI_IOC_KEYOP, elastic_keyop.self, secrets: true,
                slow: { d, input, c in d.isSlowKeyOperation(input, c) }
            ) {
                d, r, c throws(ControlError) in try d.keyOperation(&r, c)
            },
        ]
        return Dictionary(uniqueKeysWithValues: all.map { ($0.number, $0) })
    }()

    /// Creating or importing an asymmetric key.
    static func isSlowKeyRequest(_ input: UnsafeRawBufferPointer) -> Bool {
        let op = input.load(fromByteOffset: MemoryLayout<elastic_key>.offset(of: \.op)!, as: UInt32.self)
        let type = input.load(fromByteOffset: MemoryLayout<elastic_key>.offset(of: \.type)!, as: UInt32.self)
        let creates = op == UInt32(ELASTIC_KEY_CREATE.rawValue) || op == UInt32(ELASTIC_KEY_IMPORT.rawValue)
        return creates && KeyStore.KeyType(rawValue: type).map { $0.isAsymmetric } == true
    }

    /// The last step of an operation whose FINAL is slow (an RSA signature).
    func isSlowKeyOperation(_ input: UnsafeRawBufferPointer, _ caller: ControlCaller) -> Bool {
        let step = input.load(fromByteOffset: MemoryLayout<elastic_keyop>.offset(of: \.step)!, as: UInt32.self)
        guard step == UInt32(ELASTIC_STEP_FINAL.rawValue), let owner = try? owner(caller) else { return false }
        let handle = input.loadUnaligned(
            fromByteOffset: MemoryLayout<elastic_keyop>.offset(of: \.handle)!, as: UInt64.self)
        return handles.hasSlowFinal(handle, owner: owner)
    }
}
