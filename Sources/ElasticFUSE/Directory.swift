import CFuse3
import ElasticFormat
import ElasticSystem
import Glibc

/// readdir and readdirplus replies, from the handle's snapshot of decrypted entries.
enum Directory {
    static func reply(
        _ req: fuse_req_t?, _ f: ElasticFilesystem, _ ino: UInt64, _ size: Int, _ off: off_t,
        _ fi: UnsafeMutablePointer<fuse_file_info>, plus: Bool
    ) throws {
        let h = Unmanaged<DirectoryHandle>.fromOpaque(UnsafeRawPointer(bitPattern: UInt(fi.pointee.fh))!)
            .takeUnretainedValue()
        let dir = try f.inode(ino)
        if off == 0 || h.entries == nil { h.entries = try f.listing(dir, fd: h.fd) }
        let entries = h.entries!
        let buf = UnsafeMutablePointer<CChar>.allocate(capacity: size)
        defer { buf.deallocate() }
        var used = 0
        var index = Int(off)
        while index < entries.count {
            let e = entries[index]
            let isDot = e.name == [0x2e] || e.name == [0x2e, 0x2e]
            let added: Int = (e.name + [0]).withUnsafeBufferPointer { np -> Int in
                let cname = UnsafeRawPointer(np.baseAddress!).assumingMemoryBound(to: CChar.self)
                if plus && !isDot {
                    let child: Entry
                    do {
                        child = try f.withEntries(dir, exclusive: false) { entries in
                            do {
                                let st = try Syscall.lstatat(h.fd, e.backing)
                                return try f.register(parent: dir, backingName: e.backing, stat: st)
                            } catch let err as Errno where err == .noSuchFileOrDirectory {
                                if entries.ids[e.backing] == nil { throw err }  // removed since the snapshot
                                throw f.refusedEntry(
                                    dir, e.backing, "an entry of the directory's sealed set is missing from BACKING")
                            }
                        }
                    } catch let err as Errno where err == .noSuchFileOrDirectory {
                        return 0  // removed since the snapshot: skip it
                    } catch {
                        // Damaged (a header that does not open, a node ELASTIC never makes): the
                        // name is listed without attributes, so the rest of the listing works and
                        // the entry fails (EIO) when used; `elastic fsck --repair` moves it aside.
                        var p = fuse_entry_param()
                        p.attr.st_ino = 0xffff_ffff
                        let n = fuse_add_direntry_plus(req, buf + used, size - used, cname, &p, off_t(index + 1))
                        return n > size - used ? -1 : n
                    }
                    var p = Operations.entryParam(f, child)
                    let n = fuse_add_direntry_plus(req, buf + used, size - used, cname, &p, off_t(index + 1))
                    if n > size - used {
                        f.forget(child.inode.id, 1)
                        return -1
                    }
                    return n
                }
                var st = stat()
                st.st_ino = ino_t(isDot ? ino : 0xffff_ffff)
                st.st_mode = mode_t(e.type) << 12
                let n =
                    plus
                    ? {
                        var p = fuse_entry_param()
                        p.attr = st
                        return fuse_add_direntry_plus(req, buf + used, size - used, cname, &p, off_t(index + 1))
                    }()
                    : fuse_add_direntry(req, buf + used, size - used, cname, &st, off_t(index + 1))
                return n > size - used ? -1 : n
            }
            if added < 0 { break }
            used += added
            index += 1
        }
        fuse_reply_buf(req, buf, used)
    }
}
