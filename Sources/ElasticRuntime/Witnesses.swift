import ElasticFormat
import ElasticPlatform
import Glibc

/// The freshness witnesses a store can be bound to, by spec: `file:PATH` (`FileWitness`) and
/// `tpm:NV-INDEX` (a TPM 2.0 NV counter, reached through the TCTI given, `ELASTIC_TPM_TCTI`,
/// or the kernel's resource manager).
public enum Witnesses {
    /// The environment variable naming the TCTI for `tpm:` witnesses ("swtpm:port=2321").
    public static let tctiVariable = "ELASTIC_TPM_TCTI"

    /// An opener for both kinds; `tcti` overrides the environment.
    public static func opener(tcti: String? = nil) -> WitnessOpener {
        let tcti = tcti ?? getenv(tctiVariable).map { String(cString: $0) } ?? TPMNVCounter.defaultTCTI
        return { spec, storeID in
            if spec.hasPrefix("file:") { return try FileWitness(path: String(spec.dropFirst(5)), storeID: storeID) }
            if spec.hasPrefix("tpm:") { return try TPMWitness(index: try tpmIndex(spec), tcti: tcti) }
            throw FormatError.invalidArgument("witness \(spec): give file:PATH or tpm:NV-INDEX")
        }
    }

    /// The NV index of "tpm:0x01500016" (hex with 0x, or decimal).
    static func tpmIndex(_ spec: String) throws -> UInt32 {
        let text = spec.dropFirst(4)
        let value = text.hasPrefix("0x") ? UInt32(text.dropFirst(2), radix: 16) : UInt32(text)
        guard let value, TPMNVCounter.ownerRange.contains(value) else {
            throw FormatError.invalidArgument(
                "witness \(spec): give an NV index in the owner range, 0x01000000 to 0x01ffffff")
        }
        return value
    }
}

/// `tpm:NV-INDEX`: the witness is the TPM's NV counter itself (its value only ever goes up).
final class TPMWitness: FreshnessWitness, @unchecked Sendable {  // used only under the root keeper's lock
    let spec: String
    let counter: TPMNVCounter

    init(index: UInt32, tcti: String) throws {
        spec = "tpm:0x" + String(index, radix: 16)
        do { counter = try TPMNVCounter(index: index, tcti: tcti) } catch {
            throw FormatError.integrity("witness \(spec): \(error)")
        }
    }

    func create() throws -> UInt64 {
        do {
            if try counter.exists() {
                // Defined by a binding a crash interrupted before its first increment: taken over.
                do { _ = try counter.read() } catch TPMNVCounter.Failure.neverIncremented {
                    return try counter.increment()
                }
                throw FormatError.integrity(
                    "witness \(spec) is defined already but the store's root names no witness: the store may have "
                        + "been rolled back to before it was bound to it, or the index is in use; choose another index, "
                        + "or undefine it (tpm2_nvundefine) if nothing uses it")
            }
            return try counter.define()
        } catch let e as TPMNVCounter.Failure {
            throw FormatError.integrity("witness \(spec): \(e)")
        }
    }

    func read() throws -> UInt64 {
        do { return try counter.read() } catch let e as TPMNVCounter.Failure {
            throw FormatError.integrity("witness \(spec): \(e)")
        }
    }

    func advance(to value: UInt64) throws {
        let now: UInt64
        do { now = try counter.increment() } catch let e as TPMNVCounter.Failure {
            throw FormatError.integrity("witness \(spec): \(e)")
        }
        guard now == value else {
            throw FormatError.integrity(
                "witness \(spec) moved to \(now), not \(value): something else increments this NV counter")
        }
    }
}
