import CFuse3
import ElasticControl
import ElasticCrypto
import ElasticFormat
import ElasticSystem
import Glibc
import Logging

/// A request answered later, from another thread (libfuse allows a reply from any thread).
struct DeferredReply: @unchecked Sendable {  // the request is owned by whoever replies, once
    let req: fuse_req_t?
    init(_ req: fuse_req_t?) { self.req = req }
}

/// The `@convention(c)` trampolines: each recovers the filesystem from the request's userdata,
/// runs the operation and sends exactly one reply. Errors go through `ErrnoMapping`.
enum Operations {
    @inline(__always)
    static func fs(_ req: fuse_req_t?) -> ElasticFilesystem {
        Unmanaged<ElasticFilesystem>.fromOpaque(fuse_req_userdata(req)!).takeUnretainedValue()
    }

    @inline(__always)
    static func caller(_ req: fuse_req_t?) -> Caller {
        let c = fuse_req_ctx(req)!.pointee
        return Caller(uid: c.uid, gid: c.gid)
    }

    static func name(_ p: UnsafePointer<CChar>?) -> [UInt8] {
        guard let p else { return [] }
        return Array(UnsafeRawBufferPointer(start: p, count: strlen(p)))
    }

    /// Runs `body`; on error replies with the mapped errno (or, once `answered` was sent, logs it).
    @inline(__always)
    static func run(
        _ req: fuse_req_t?, _ op: StaticString, _ ino: UInt64, answered: EarlyAnswer? = nil,
        _ body: (ElasticFilesystem) throws -> Void
    ) {
        let f = fs(req)
        if f.debug { f.logger.debug("op", metadata: ["fuse.op": "\(op)", "fuse.ino": "\(ino)"]) }
        do { try body(f) } catch {
            if let answered, answered.sent {
                f.logger.error(
                    "operation failed after its success was answered: BACKING keeps the old state",
                    metadata: ["fuse.op": "\(op)", "fuse.ino": "\(ino)", "why": "\(error)"])
                return
            }
            let e = ErrnoMapping.errno(for: error, logger: f.logger, op: "\(op)", ino: ino)
            if f.debug {
                f.logger.debug("op failed", metadata: ["fuse.op": "\(op)", "fuse.ino": "\(ino)", "errno": "\(e)"])
            }
            fuse_reply_err(req, e)
        }
    }

    static func replyEntry(_ req: fuse_req_t?, _ f: ElasticFilesystem, _ e: Entry) {
        var p = entryParam(f, e)
        fuse_reply_entry(req, &p)
    }

    static func entryParam(_ f: ElasticFilesystem, _ e: Entry) -> fuse_entry_param {
        var p = fuse_entry_param()
        p.ino = e.inode.id
        p.generation = 0
        p.attr = e.attr
        p.attr_timeout = f.cacheTimeout
        p.entry_timeout = f.cacheTimeout
        return p
    }

    static func make() -> fuse_lowlevel_ops {
        var ops = fuse_lowlevel_ops()
        ops.`init` = { userdata, conn in
            guard let conn else { return }
            // Let the kernel clear setuid/setgid on write and chown (we are root on the backing side).
            conn.pointee.want &= ~UInt32(FUSE_CAP_HANDLE_KILLPRIV)
            conn.pointee.want &= ~UInt32(FUSE_CAP_SPLICE_READ)
            conn.pointee.max_write = min(conn.pointee.max_write, UInt32(ThreadState.maxRequest))
            conn.pointee.time_gran = 1
        }
        ops.lookup = { req, parent, name in
            Operations.run(req, "lookup", parent) { f in
                let n = Operations.name(name)
                if parent == ElasticFilesystem.rootID && n == ElasticFilesystem.controlName {
                    var p = fuse_entry_param()
                    p.ino = ElasticFilesystem.controlID
                    p.attr = f.controlAttributes
                    p.attr_timeout = f.cacheTimeout
                    p.entry_timeout = f.cacheTimeout
                    fuse_reply_entry(req, &p)
                    return
                }
                Operations.replyEntry(req, f, try f.lookup(parent, n))
            }
        }
        ops.forget = { req, ino, n in
            Operations.fs(req).forget(ino, n)
            fuse_reply_none(req)
        }
        ops.forget_multi = { req, count, list in
            let f = Operations.fs(req)
            f.forget((0..<count).map { (list![$0].ino, list![$0].nlookup) })
            fuse_reply_none(req)
        }
        ops.getattr = { req, ino, fi in
            Operations.run(req, "getattr", ino) { f in
                let fh = fi.flatMap {
                    $0.pointee.fh == Operations.controlHandle ? nil : Int32(truncatingIfNeeded: $0.pointee.fh)
                }
                var st = ino == ElasticFilesystem.controlID ? f.controlAttributes : try f.getattr(ino, fh: fh)
                fuse_reply_attr(req, &st, f.cacheTimeout)
            }
        }
        ops.setattr = { req, ino, attr, toSet, fi in
            Operations.run(req, "setattr", ino) { f in
                var st = try f.setattr(
                    ino, attr!.pointee, toSet, fh: fi.map { Int32(truncatingIfNeeded: $0.pointee.fh) },
                    caller: Operations.caller(req))
                fuse_reply_attr(req, &st, f.cacheTimeout)
            }
        }
        ops.readlink = { req, ino in
            Operations.run(req, "readlink", ino) { f in
                let target = try f.readlink(ino) + [0]
                target.withUnsafeBufferPointer { p in
                    p.withMemoryRebound(to: CChar.self) { _ = fuse_reply_readlink(req, $0.baseAddress) }
                }
            }
        }
        ops.mknod = { req, parent, name, mode, rdev in
            Operations.run(req, "mknod", parent) { f in
                Operations.replyEntry(
                    req, f, try f.mknod(parent, Operations.name(name), mode, rdev, Operations.caller(req)))
            }
        }
        ops.mkdir = { req, parent, name, mode in
            Operations.run(req, "mkdir", parent) { f in
                Operations.replyEntry(req, f, try f.mkdir(parent, Operations.name(name), mode, Operations.caller(req)))
            }
        }
        ops.unlink = { req, parent, name in
            let answer = EarlyAnswer(req)
            Operations.run(req, "unlink", parent, answered: answer) { f in
                do { try f.unlink(parent, Operations.name(name), answer: answer) } catch  where answer.sent {
                    f.nameStillThere(parent: parent, name: name!)  // told gone, still there
                    throw error
                }
                answer.send()
            }
        }
        ops.rmdir = { req, parent, name in
            Operations.run(req, "rmdir", parent) { f in
                try f.rmdir(parent, Operations.name(name))
                fuse_reply_err(req, 0)
            }
        }
        ops.symlink = { req, link, parent, name in
            Operations.run(req, "symlink", parent) { f in
                Operations.replyEntry(
                    req, f, try f.symlink(Operations.name(link), parent, Operations.name(name), Operations.caller(req)))
            }
        }
        ops.rename = { req, parent, name, newParent, newName, flags in
            Operations.run(req, "rename", parent) { f in
                try f.rename(parent, Operations.name(name), newParent, Operations.name(newName), flags)
                fuse_reply_err(req, 0)
            }
        }
        ops.link = { req, ino, newParent, newName in
            Operations.run(req, "link", ino) { f in
                Operations.replyEntry(req, f, try f.link(ino, newParent, Operations.name(newName)))
            }
        }
        ops.open = { req, ino, fi in
            Operations.run(req, "open", ino) { f in
                if ino == ElasticFilesystem.controlID {
                    guard fi!.pointee.flags & O_TRUNC == 0 else { throw Errno.notPermitted }
                    fi!.pointee.fh = Operations.controlHandle
                    fi!.pointee.direct_io = 1
                    fuse_reply_open(req, fi)
                    return
                }
                let fd = try f.open(ino, fi!.pointee.flags, Operations.caller(req))
                fi!.pointee.fh = UInt64(fd)
                fi!.pointee.keep_cache = 0
                if fuse_reply_open(req, fi) != 0 { f.release(ino, fd: fd) }
            }
        }
        ops.create = { req, parent, name, mode, fi in
            Operations.run(req, "create", parent) { f in
                let (entry, fd) = try f.create(
                    parent, Operations.name(name), mode, fi!.pointee.flags, Operations.caller(req))
                fi!.pointee.fh = UInt64(fd)
                var p = Operations.entryParam(f, entry)
                if fuse_reply_create(req, &p, fi) != 0 {
                    f.release(entry.inode.id, fd: fd)
                    f.forget(entry.inode.id, 1)
                }
            }
        }
        ops.read = { req, ino, size, off, fi in
            Operations.run(req, "read", ino) { f in
                let (p, n) = try f.read(
                    ino, fd: Int32(truncatingIfNeeded: fi!.pointee.fh), size: size, offset: Int64(off))
                fuse_reply_buf(req, p.assumingMemoryBound(to: CChar.self), n)
            }
        }
        ops.write = { req, ino, buf, size, off, fi in
            Operations.run(req, "write", ino) { f in
                let n = try f.write(
                    ino, fd: Int32(truncatingIfNeeded: fi!.pointee.fh), data: UnsafeRawPointer(buf!), size: size,
                    offset: Int64(off), caller: Operations.caller(req))
                fuse_reply_write(req, n)
            }
        }
        ops.flush = { req, _, _ in fuse_reply_err(req, 0) }
        ops.release = { req, ino, fi in
            if fi!.pointee.fh != Operations.controlHandle {
                Operations.fs(req).release(ino, fd: Int32(truncatingIfNeeded: fi!.pointee.fh))
            }
            fuse_reply_err(req, 0)
        }
        ops.ioctl = { req, ino, cmd, _, _, flags, inBuf, inSize, outSize in
            Operations.ioctl(req, ino, cmd, flags, inBuf, inSize, outSize)
        }
        ops.fsync = { req, ino, datasync, fi in
            Operations.run(req, "fsync", ino) { _ in
                try Syscall.fsync(Int32(truncatingIfNeeded: fi!.pointee.fh), dataOnly: datasync != 0)
                fuse_reply_err(req, 0)
            }
        }
        ops.fallocate = { req, ino, mode, off, len, fi in
            Operations.run(req, "fallocate", ino) { f in
                try f.fallocate(
                    ino, fd: Int32(truncatingIfNeeded: fi!.pointee.fh), mode: mode, offset: Int64(off),
                    length: Int64(len))
                fuse_reply_err(req, 0)
            }
        }
        ops.opendir = { req, ino, fi in
            Operations.run(req, "opendir", ino) { f in
                let h = try f.opendir(ino)
                fi!.pointee.fh = UInt64(UInt(bitPattern: Unmanaged.passRetained(h).toOpaque()))
                if fuse_reply_open(req, fi) != 0 { Unmanaged.passUnretained(h).release() }
            }
        }
        ops.readdir = { req, ino, size, off, fi in
            Operations.run(req, "readdir", ino) { f in try Directory.reply(req, f, ino, size, off, fi!, plus: false) }
        }
        ops.readdirplus = { req, ino, size, off, fi in
            Operations.run(req, "readdirplus", ino) { f in try Directory.reply(req, f, ino, size, off, fi!, plus: true)
            }
        }
        ops.releasedir = { req, _, fi in
            Unmanaged<DirectoryHandle>.fromOpaque(UnsafeRawPointer(bitPattern: UInt(fi!.pointee.fh))!).release()
            fuse_reply_err(req, 0)
        }
        ops.fsyncdir = { req, ino, datasync, fi in
            Operations.run(req, "fsyncdir", ino) { f in
                // Unlinks answered early in the directory reach BACKING first.
                try f.inode(ino).namespace.withReadLock {}
                let h = Unmanaged<DirectoryHandle>.fromOpaque(UnsafeRawPointer(bitPattern: UInt(fi!.pointee.fh))!)
                    .takeUnretainedValue()
                try Syscall.fsync(h.fd, dataOnly: datasync != 0)
                fuse_reply_err(req, 0)
            }
        }
        ops.statfs = { req, ino in
            Operations.run(req, "statfs", ino) { f in
                var s = try f.statfs()
                fuse_reply_statfs(req, &s)
            }
        }
        ops.setxattr = { req, ino, name, value, size, flags in
            Operations.run(req, "setxattr", ino) { f in
                let v = size > 0 ? Array(UnsafeRawBufferPointer(start: value, count: size)) : []
                try f.setxattr(ino, Operations.name(name), v, flags)
                fuse_reply_err(req, 0)
            }
        }
        ops.getxattr = { req, ino, name, size in
            Operations.run(req, "getxattr", ino) { f in
                let v = try f.getxattr(ino, Operations.name(name))
                Operations.replySized(req, v, size)
            }
        }
        ops.listxattr = { req, ino, size in
            Operations.run(req, "listxattr", ino) { f in Operations.replySized(req, try f.listxattr(ino), size) }
        }
        ops.removexattr = { req, ino, name in
            Operations.run(req, "removexattr", ino) { f in
                try f.removexattr(ino, Operations.name(name))
                fuse_reply_err(req, 0)
            }
        }
        return ops
    }

    /// File handle of an open control file (no backing descriptor).
    static let controlHandle = UInt64.max

    /// Control-file ioctls: exact sizes, then the dispatcher; ENOTTY for anything else. Slow
    /// requests (key generation, RSA signatures, attestation) are answered later from the slow
    /// queue's thread, so they never hold a FUSE worker thread.
    static func ioctl(
        _ req: fuse_req_t?, _ ino: UInt64, _ cmd: UInt32, _ flags: UInt32,
        _ inBuf: UnsafeRawPointer?, _ inSize: Int, _ outSize: Int
    ) {
        let f = Operations.fs(req)
        guard ino == ElasticFilesystem.controlID else {
            fuse_reply_err(req, ENOTTY)
            return
        }
        guard flags & UInt32(FUSE_IOCTL_COMPAT) == 0 else {
            fuse_reply_err(req, ENOSYS)
            return
        }
        guard let size = ControlDispatcher.requestSize(of: cmd) else {
            fuse_reply_err(req, ENOTTY)
            return
        }
        guard inSize == size, outSize == size, let inBuf else {
            fuse_reply_err(req, EINVAL)
            return
        }
        let ctx = fuse_req_ctx(req)!.pointee
        let caller = ControlCaller(uid: ctx.uid, gid: ctx.gid, pid: ctx.pid)
        let input = UnsafeRawBufferPointer(start: inBuf, count: inSize)
        if f.control.isSlow(cmd: cmd, input: input, caller: caller) {
            // The request buffer lives only as long as this callback: the job gets a copy.
            let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: size * 2, alignment: 16)
            copy.copyMemory(from: input)
            let job = DeferredReply(req)
            do {
                try f.slow.submit(uid: caller.uid) {
                    let out = UnsafeMutableRawBufferPointer(rebasing: copy[size...])
                    answer(job.req, f, cmd, UnsafeRawBufferPointer(rebasing: copy[..<size]), out, caller)
                    secureWipe(copy)
                    copy.deallocate()
                }
            } catch {
                secureWipe(copy)
                copy.deallocate()
                fuse_reply_err(req, ErrnoMapping.errno(for: error, logger: f.logger))
            }
            return
        }
        guard let t = try? f.worker() else {
            fuse_reply_err(req, EIO)
            return
        }
        answer(req, f, cmd, input, UnsafeMutableRawBufferPointer(start: t.plain, count: size), caller)
    }

    /// Runs one control request and replies; the output buffer is wiped afterwards (a derived
    /// or exported key may have passed through it).
    static func answer(
        _ req: fuse_req_t?, _ f: ElasticFilesystem, _ cmd: UInt32, _ input: UnsafeRawBufferPointer,
        _ out: UnsafeMutableRawBufferPointer, _ caller: ControlCaller
    ) {
        do {
            let n = try f.control.handle(cmd: cmd, input: input, output: out, caller: caller)
            fuse_reply_ioctl(req, 0, out.baseAddress, n)
        } catch {
            fuse_reply_err(req, ErrnoMapping.errno(for: error, logger: f.logger))
        }
        secureWipe(out)
    }

    /// The xattr reply convention: size 0 asks for the length; too small a buffer is ERANGE.
    static func replySized(_ req: fuse_req_t?, _ v: [UInt8], _ size: Int) {
        if size == 0 {
            fuse_reply_xattr(req, v.count)
        } else if v.count > size {
            fuse_reply_err(req, ERANGE)
        } else {
            _ = v.withUnsafeBytes { fuse_reply_buf(req, $0.baseAddress?.assumingMemoryBound(to: CChar.self), $0.count) }
        }
    }
}
