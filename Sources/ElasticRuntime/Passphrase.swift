import ElasticCrypto
import ElasticSystem
import Glibc

/// Reading passphrases: from a file (its first line) or from the terminal with echo off.
public enum Passphrase {
    public enum Failure: Error, CustomStringConvertible {
        case empty, noTerminal, mismatch
        public var description: String {
            switch self {
            case .empty: return "empty passphrase"
            case .noTerminal: return "no terminal to ask for a passphrase: give a key or passphrase file"
            case .mismatch: return "passphrases do not match"
            }
        }
    }

    /// The first line of `path` (without its newline).
    public static func fromFile(_ path: String) throws -> [UInt8] {
        var raw = try Syscall.readFile(AT_FDCWD, path, limit: 64 * 1024, requireRegular: false)
        defer { secureWipe(&raw) }
        let line = Array(raw.prefix { $0 != 0x0a })
        let trimmed = line.last == 0x0d ? Array(line.dropLast()) : line
        guard !trimmed.isEmpty else { throw Failure.empty }
        return trimmed
    }

    /// Prompts on the controlling terminal with echo off; `confirm` asks twice.
    public static func prompt(_ text: String, confirm: Bool) throws -> [UInt8] {
        let fd = Glibc.open("/dev/tty", O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw Failure.noTerminal }
        defer { Glibc.close(fd) }
        func ask(_ p: String) throws -> [UInt8] {
            _ = p.withCString { Glibc.write(fd, $0, strlen($0)) }
            var old = termios()
            tcgetattr(fd, &old)
            var quiet = old
            quiet.c_lflag &= ~tcflag_t(ECHO)
            tcsetattr(fd, TCSAFLUSH, &quiet)
            defer {
                tcsetattr(fd, TCSAFLUSH, &old)
                _ = Glibc.write(fd, "\n", 1)
            }
            var out: [UInt8] = []
            out.reserveCapacity(4096)  // no reallocation leaves partial copies behind
            var c: UInt8 = 0
            while Glibc.read(fd, &c, 1) == 1 && c != 0x0a { out.append(c) }
            guard !out.isEmpty else { throw Failure.empty }
            return out
        }
        var first = try ask(text)
        if confirm {
            var second = try ask("Repeat passphrase: ")
            defer { secureWipe(&second) }
            guard second == first else {
                secureWipe(&first)
                throw Failure.mismatch
            }
        }
        return first
    }
}
