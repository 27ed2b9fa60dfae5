import CElasticFUSEInit
import CFuse3
import ElasticFormat
import ElasticSystem
import Glibc
import Logging

/// Errors from setting up the FUSE session.
public enum SessionError: Error, CustomStringConvertible {
    case invalidOptions(String)
    case mountFailed(String)
    public var description: String {
        switch self {
        case .invalidOptions(let s): return "invalid FUSE options: \(s)"
        case .mountFailed(let s): return "mount failed: \(s)"
        }
    }
}

/// One mounted ELASTIC filesystem: a libfuse low-level session served by ELASTIC's own request
/// loop (`CElasticFUSEInit_loop`: one thread reads /dev/fuse, polling for `spinMicroseconds`
/// before it sleeps while that is measured to pay; all of them read while callers run in
/// parallel).
public enum FUSESession {
    /// Mounts `fs` at `mountpoint` with `options` (libfuse `-o` options), calls `onMounted` once
    /// the mount exists, serves requests until unmounted or signalled (SIGTERM, SIGINT, SIGHUP),
    /// then unmounts. In-flight requests complete before this returns.
    public static func run(
        _ fs: ElasticFilesystem, mountpoint: String, options: [String], debug: Bool,
        maxThreads: Int, spinMicroseconds: Int = 50, onMounted: () -> Void
    ) throws {
        var argv: [String] = ["mount.elastic"]
        if !options.isEmpty { argv += ["-o", options.joined(separator: ",")] }
        if debug { argv.append("-d") }
        var cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { for p in cargs { free(p) } }
        var ops = Operations.make()
        let userdata = Unmanaged.passRetained(fs).toOpaque()
        defer { Unmanaged<ElasticFilesystem>.fromOpaque(userdata).release() }
        try cargs.withUnsafeMutableBufferPointer { buf in
            var args = CFuse3_args_init(Int32(argv.count), buf.baseAddress)
            defer { fuse_opt_free_args(&args) }
            guard let se = CFuse3_session_new(&args, &ops, userdata) else {
                throw SessionError.invalidOptions(options.joined(separator: ","))
            }
            defer { fuse_session_destroy(se) }
            guard fuse_set_signal_handlers(se) == 0 else {
                throw SessionError.mountFailed("cannot install signal handlers")
            }
            defer { fuse_remove_signal_handlers(se) }
            guard fuse_session_mount(se, mountpoint) == 0 else {
                throw SessionError.mountFailed("cannot mount on \(mountpoint)")
            }
            defer { fuse_session_unmount(se) }
            // Our own /dev/fuse read/writev: identical, but they negotiate HANDLE_KILLPRIV_V2.
            var io = fuse_custom_io()
            io.read = { fd, buf, len, ud in CElasticFUSEInit_fuse_read(fd, buf, len, ud) }
            io.writev = { fd, iov, count, ud in CElasticFUSEInit_fuse_writev(fd, iov, count, ud) }
            guard fuse_session_custom_io(se, &io, fuse_session_fd(se)) == 0 else {
                throw SessionError.mountFailed("cannot set up FUSE i/o")
            }
            onMounted()
            fs.session = se
            defer { fs.session = nil }
            _ = CElasticFUSEInit_loop(se, UInt32(maxThreads), UInt32(spinMicroseconds))
            fs.helper?.stop()
            fs.slow.stop()
        }
    }
}
