import ArgumentParser
import ElasticControlClient
import ElasticFormat
import ElasticRuntime
import ElasticSystem
import Foundation
import Glibc

/// The exit code and message for a failed control-file request (docs/cli-abi.md).
func controlFailure(_ error: any Error) -> ExitCode {
    guard let e = error as? Errno else { return failure(error) }
    let code: ElasticExitCode
    let why: String
    switch e {
    case .badMessage:
        code = .verificationFailed
        why = "verification failed: the data or signature was altered, or the key is wrong"
    case .notSupported:
        code = .notAvailable
        why = "not available on this platform (see elastic doctor)"
    case .noSuchFileOrDirectory:
        code = .controlRefused
        why = "no such key"
    case .fileExists:
        code = .controlRefused
        why = "a key of that name exists"
    case .permissionDenied:
        code = .controlRefused
        why = "permission denied (the key or the control file belongs to another user)"
    case .notPermitted:
        code = .controlRefused
        why = "the key was not created exportable"
    case .readOnlyFileSystem:
        code = .controlRefused
        why = "the mount is read-only"
    case .illegalByteSequence:
        code = .usage
        why = "the input is not ELASTIC-encrypted data"
    default:
        code = .controlRefused
        why = "the daemon refused the request: \(e)"
    }
    printError("error: \(why)")
    return ExitCode(code.rawValue)
}

/// Binary output (keys, random bytes, signatures, ciphertext) is refused on a terminal, as gpg
/// does: it would garble the terminal and show secrets. `--hex` or `--out FILE`, or a redirect.
func refuseBinaryOnTerminal(_ what: String) throws {
    guard isatty(1) == 1 else { return }
    throw CLIError("refusing to write binary \(what) to a terminal: give --hex or --out FILE, or redirect stdout")
}

/// `--in FILE` (default stdin) and `--out FILE` (default stdout). A file output is written to a
/// temporary name and renamed into place only when the command succeeds.
struct IOOptions: ParsableArguments {
    @Option(name: .customLong("in"), help: "Read this file (default: stdin).") var input: String?
    @Option(name: .customLong("out"), help: "Write this file, replaced only on success (default: stdout).") var output:
        String?

    init() {}
    init(input: String? = nil, output: String? = nil) {
        self.input = input
        self.output = output
    }

    /// All of the input, refusing more than `limit` bytes.
    func readAll(limit: Int) throws -> [UInt8] {
        let read = try reader()
        var out: [UInt8] = []
        while true {
            let chunk = try read(limit + 1 - out.count)
            if chunk.isEmpty { return out }
            out += chunk
            guard out.count <= limit else { throw CLIError("input larger than \(limit) bytes") }
        }
    }

    func reader() throws -> (Int) throws -> [UInt8] {
        let h: FileHandle
        if let input {
            guard let f = FileHandle(forReadingAtPath: input) else { throw CLIError("cannot read \(input)") }
            h = f
        } else {
            h = FileHandle.standardInput
        }
        return { n in [UInt8](h.readData(ofLength: n)) }
    }

    /// Runs `body` with a writer; commits the file output only if `body` succeeds. `binary`
    /// names output that must not go to a terminal (`refuseBinaryOnTerminal`).
    func withWriter(mode: mode_t = 0o644, binary: String? = nil, _ body: (([UInt8]) throws -> Void) throws -> Void)
        throws
    {
        guard let output else {
            if let binary { try refuseBinaryOnTerminal(binary) }
            try body { bytes in
                var at = 0
                while at < bytes.count {
                    let n = bytes[at...].withUnsafeBytes { Glibc.write(1, $0.baseAddress, $0.count) }
                    guard n > 0 else { throw Errno(rawValue: errno) }
                    at += n
                }
            }
            return
        }
        let tmp = output + ".elastic-tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw CLIError("cannot write \(output): \(Errno(rawValue: errno))") }
        do {
            try body { bytes in
                var at = 0
                while at < bytes.count {
                    let n = bytes[at...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
                    guard n > 0 else { throw Errno(rawValue: errno) }
                    at += n
                }
            }
            guard fsync(fd) == 0 else { throw CLIError("cannot write \(output): \(Errno(rawValue: errno))") }
        } catch {
            close(fd)
            unlink(tmp)
            throw error
        }
        guard close(fd) == 0, rename(tmp, output) == 0 else {
            unlink(tmp)
            throw CLIError("cannot write \(output): \(Errno(rawValue: errno))")
        }
    }
}
