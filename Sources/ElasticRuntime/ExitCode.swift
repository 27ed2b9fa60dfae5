import ElasticFormat
import ElasticPlatform
import ElasticSystem

/// Exit codes of `mount.elastic` and `elastic`, fixed forever (docs/cli-abi.md).
public enum ElasticExitCode: Int32, Sendable {
    case success = 0
    /// Bad invocation: unknown option, missing argument.
    case usage = 1
    /// The store cannot be used: missing, not a store, corrupt or edited configuration.
    case badStore = 10
    /// The store needs a newer ELASTIC (format version or feature flags).
    case unsupportedStore = 11
    /// No key slot opened with the key or passphrase given.
    case wrongKey = 12
    /// The key file or passphrase could not be read.
    case keySource = 13
    /// The store is not its newest version or its pieces do not belong together: a rolled-back,
    /// replaced or missing `elastic.root`, configuration or key store, or a root older than its
    /// freshness witness. The message says what failed.
    case storeIntegrity = 14
    /// The mount's control file refused the request (no such key, another user's key, bad
    /// argument, read-only mount...); the message names the reason.
    case controlRefused = 20
    /// The service does not exist on this platform (attestation on plain Linux).
    case notAvailable = 21
    /// A signature did not verify, or encrypted data was altered, reordered or cut off.
    case verificationFailed = 22
    /// Attestation evidence failed a check (`elastic attest verify`: signature, chain, TCB,
    /// chip or the policy).
    case evidenceRefused = 23
    /// Mounting failed (mount point, FUSE, permissions).
    case mountFailed = 32
    /// The store is mounted already (one mount, or offline tool, per store at a time).
    case storeInUse = 33
    /// `elastic fsck` found problems (each printed with its path).
    case problemsFound = 40

    /// The exit code for an error raised while opening a store, the same from both executables.
    public static func forStoreError(_ error: any Error) -> ElasticExitCode {
        switch error {
        // The key source failed before any slot was tried: the passphrase or key file could not
        // be read, or the sealing platform could not be opened.
        case is Passphrase.Failure, is SEVError: return .keySource
        case is StoreLock.Failure: return .storeInUse
        case FormatError.wrongKey: return .wrongKey
        case FormatError.keySource: return .keySource
        case FormatError.unsupportedVersion, FormatError.unknownFeatureFlags, FormatError.needsMigration:
            return .unsupportedStore
        case FormatError.integrity: return .storeIntegrity
        case is TPMNVCounter.Failure: return .storeIntegrity
        case is FormatError: return .badStore
        default: return .badStore
        }
    }
}
