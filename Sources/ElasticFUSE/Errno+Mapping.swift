import ElasticControl
import ElasticCrypto
import ElasticFormat
import ElasticSystem
import Glibc
import Logging

/// The one place where errors become errno for the kernel. Unknown errors become EIO and are
/// logged; authentication failures become EIO and are logged by the caller with file and block.
enum ErrnoMapping {
    static func errno(for error: any Error, logger: Logger, op: String, ino: UInt64) -> Int32 {
        switch error {
        case let e as Errno:
            if e == .tooManyOpenFiles || e == .tooManyOpenFilesInSystem {
                logger.error(
                    "out of file descriptors", metadata: ["fuse.op": "\(op)", "fuse.ino": "\(ino)", "errno": "\(e)"])
            }
            return e.rawValue
        case let e as SystemError:
            logger.error("integrity failure", metadata: ["fuse.op": "\(op)", "fuse.ino": "\(ino)", "error": "\(e)"])
            return EIO
        case let e as FormatError:
            switch e {
            case .fileTooLarge: return EFBIG
            case .nameTooLong: return ENAMETOOLONG
            case .invalidArgument: return EINVAL
            case .directoryNotEmpty: return ENOTEMPTY
            case .authenticationFailed, .contentMismatch, .corruptHeader, .corruptLength, .corruptMetadata,
                .invalidName:
                logger.error(
                    "integrity failure", metadata: ["fuse.op": "\(op)", "fuse.ino": "\(ino)", "error": "\(e)"])
                return EIO
            default:
                logger.error("format error", metadata: ["fuse.op": "\(op)", "fuse.ino": "\(ino)", "error": "\(e)"])
                return EIO
            }
        case let e as CryptoError:
            logger.error("crypto error", metadata: ["fuse.op": "\(op)", "fuse.ino": "\(ino)", "error": "\(e)"])
            return EIO
        default:
            logger.error("unexpected error", metadata: ["fuse.op": "\(op)", "fuse.ino": "\(ino)", "error": "\(error)"])
            return EIO
        }
    }

    /// The errno of a refused control-file request (docs/control-abi.md); daemon-side failures
    /// are logged and become EIO.
    static func errno(for error: ControlError, logger: Logger) -> Int32 {
        switch error {
        case .unknownCommand: return ENOTTY
        case .invalid: return EINVAL
        case .badHandle: return EBADF
        case .tooManyHandles: return EMFILE
        case .notAvailable: return EOPNOTSUPP
        case .tooLarge: return E2BIG
        case .notFound: return ENOENT
        case .exists: return EEXIST
        case .accessDenied: return EACCES
        case .notExportable: return EPERM
        case .readOnly: return EROFS
        case .full: return ENOSPC
        case .quotaExceeded: return EDQUOT
        case .busy: return EAGAIN
        case .verificationFailed: return EBADMSG
        case .platformFailure(let why):
            logger.error("attestation failed", metadata: ["error": "\(why)"])
            return EIO
        case .storageFailure(let why):
            logger.error("key store failure", metadata: ["error": "\(why)"])
            return EIO
        case .cryptoFailure(let why):
            logger.error("cryptographic operation failed", metadata: ["error": "\(why)"])
            return EIO
        }
    }
}
