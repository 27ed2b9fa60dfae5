import CElasticTPM

/// A TPM 2.0 NV counter (TPM2_NT_COUNTER): a value the TPM only ever increases, read and
/// incremented through tpm2-tss's ESAPI. The index is defined with its own empty auth value,
/// AUTHREAD | AUTHWRITE | NO_DA, 8 bytes; an existing index that is not such a counter is refused.
public final class TPMNVCounter {
    /// Failures, each with the TPM stack's own text.
    public enum Failure: Error, CustomStringConvertible, Equatable {
        case connect(tcti: String, String)
        case undefined(UInt32)
        case notACounter(UInt32)
        case definedAlready(UInt32)
        case neverIncremented(UInt32)
        case tpm(String, UInt32, String)

        public var description: String {
            switch self {
            case .connect(let tcti, let why): return "cannot reach the TPM through \(tcti): \(why)"
            case .undefined(let i): return "TPM NV index \(TPMNVCounter.hex(i)) is not defined"
            case .notACounter(let i):
                return "TPM NV index \(TPMNVCounter.hex(i)) is not an NV counter ELASTIC can use"
            case .definedAlready(let i): return "TPM NV index \(TPMNVCounter.hex(i)) is defined already"
            case .neverIncremented(let i): return "TPM NV counter \(TPMNVCounter.hex(i)) was never incremented"
            case .tpm(let op, let i, let why): return "TPM \(op) of NV index \(TPMNVCounter.hex(i)) failed: \(why)"
            }
        }
    }

    /// The default TCTI: the kernel's resource manager.
    public static let defaultTCTI = "device:/dev/tpmrm0"
    /// NV indices for owner-defined counters: 0x01000000 through 0x01ffffff (TPM 2.0 part 2, 13.4).
    public static let ownerRange: ClosedRange<UInt32> = 0x0100_0000...0x01ff_ffff

    public let index: UInt32
    public let tcti: String
    private let handle: OpaquePointer

    /// Connects to the TPM through `tcti` for the counter at `index`.
    public init(index: UInt32, tcti: String = TPMNVCounter.defaultTCTI) throws {
        guard Self.ownerRange.contains(index) else {
            throw Failure.tpm("use", index, "not an NV index in the owner range 0x01000000-0x01ffffff")
        }
        self.index = index
        self.tcti = tcti
        var h: OpaquePointer?
        let rc = CElasticTPM_open(tcti, &h)
        guard rc == 0, let h else { throw Failure.connect(tcti: tcti, String(cString: CElasticTPM_error(rc))) }
        handle = h
    }

    deinit { CElasticTPM_close(handle) }

    static func hex(_ i: UInt32) -> String { "0x" + String(i, radix: 16, uppercase: false) }

    private func check(_ rc: UInt32, _ op: String) throws {
        switch rc {
        case 0: return
        case UInt32(CELASTIC_TPM_RC_HANDLE): throw Failure.undefined(index)
        case UInt32(CELASTIC_TPM_RC_NOT_COUNTER): throw Failure.notACounter(index)
        case UInt32(CELASTIC_TPM_RC_NV_DEFINED): throw Failure.definedAlready(index)
        case UInt32(CELASTIC_TPM_RC_NV_UNINITIALIZED): throw Failure.neverIncremented(index)
        default: throw Failure.tpm(op, index, String(cString: CElasticTPM_error(rc)))
        }
    }

    /// Whether the index is defined (as a usable counter; any other kind of index throws).
    public func exists() throws -> Bool {
        let rc = CElasticTPM_counter_exists(handle, index)
        if rc == UInt32(CELASTIC_TPM_RC_HANDLE) { return false }
        try check(rc, "lookup")
        return true
    }

    /// Defines the counter and increments it once, so it holds a value; returns that value.
    public func define() throws -> UInt64 {
        try check(CElasticTPM_counter_define(handle, index), "define")
        return try increment()
    }

    /// The current value (throws for a counter never incremented).
    public func read() throws -> UInt64 {
        var v: UInt64 = 0
        try check(CElasticTPM_counter_read(handle, index, &v), "read")
        return v
    }

    /// Increments the counter; returns the new value.
    @discardableResult
    public func increment() throws -> UInt64 {
        try check(CElasticTPM_counter_increment(handle, index), "increment")
        return try read()
    }
}
