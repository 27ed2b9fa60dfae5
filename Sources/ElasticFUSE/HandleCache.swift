import ElasticSystem
import Glibc
import Synchronization

/// A descriptor on a backing object, closed when the last user lets go: the cache can evict a
/// handle while a request still works with it. `O_PATH`, or open read-write (`writable`) on a
/// file with a header, whose record can then be rewritten through it.
final class BackingHandle: Sendable {
    let fd: Int32
    let writable: Bool
    init(_ fd: Int32, writable: Bool = false) {
        self.fd = fd
        self.writable = writable
    }
    deinit { Syscall.close(fd) }
}

/// A bounded cache of handles on directories and on recently changed files (the CLOCK
/// algorithm over `capacity` slots), so the daemon's descriptors stay bounded however many
/// inodes the kernel holds. Pinned handles (the
/// root, and objects whose last name was removed while still in use) stay outside the slots.
/// Evicted handles are released after the lock is dropped (closing can be slow).
final class HandleCache: @unchecked Sendable {  // `slots` and the inodes' cache fields only under `lock`
    let capacity: Int
    private let lock = Mutex<Void>(())
    private var slots: [Inode?]
    private var hand = 0
    private var used = 0

    init(capacity: Int) {
        self.capacity = max(capacity, 4)
        slots = Array(repeating: nil, count: self.capacity)
    }

    /// The capacity for this process: a quarter of its open-file limit (the rest is for files
    /// open in the mount and transient use), between 16 and 4096.
    static func defaultCapacity() -> Int {
        var rl = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl) == 0 else { return 256 }
        let soft = rl.rlim_cur > UInt64(1 << 30) ? 1 << 30 : Int(rl.rlim_cur)
        return min(4096, max(16, soft / 4))
    }

    /// The cached handle of `inode`, if any.
    func lookup(_ inode: Inode) -> BackingHandle? {
        lock.withLock { _ in
            guard let h = inode.handle else { return nil }
            inode.referenced = true
            return h
        }
    }

    /// Caches `handle` for `inode` and returns the handle to use: an earlier one if another
    /// thread cached it first. A file's handle comes in on probation (the first the hand may
    /// evict, until it is used again), so a stream of files passing through (an untar) does
    /// not push out the directories in use.
    func insert(_ inode: Inode, _ handle: BackingHandle) -> BackingHandle {
        var evicted: BackingHandle? = nil
        let h = lock.withLock { _ -> BackingHandle in
            if let existing = inode.handle { return existing }
            inode.handle = handle
            inode.referenced = inode.isDirectory
            if !inode.pinned { evicted = place(inode) }
            return handle
        }
        _ = evicted  // closed here, outside the lock
        return h
    }

    /// Keeps `handle` for `inode` outside the slots until `unpin` or `drop`.
    func pin(_ inode: Inode, _ handle: BackingHandle) {
        lock.withLock { _ in
            if inode.handle == nil { inode.handle = handle }
            inode.pinned = true
            unplace(inode)
        }
    }

    /// Returns a pinned inode to the normal rules: a directory's handle goes back into the
    /// slots, any other handle is released.
    func unpin(_ inode: Inode) {
        var released: BackingHandle? = nil
        lock.withLock { _ in
            guard inode.pinned else { return }
            inode.pinned = false
            if inode.isDirectory {
                released = place(inode)
            } else {
                released = inode.handle
                inode.handle = nil
            }
        }
        _ = released
    }

    /// Forgets `inode` entirely (the kernel dropped it).
    func drop(_ inode: Inode) {
        var released: BackingHandle? = nil
        lock.withLock { _ in
            unplace(inode)
            inode.pinned = false
            released = inode.handle
            inode.handle = nil
        }
        _ = released
    }

    /// Evicts about half of the cached handles (the process ran out of descriptors: files open
    /// in the mount come first). Returns how many were dropped.
    @discardableResult
    func shrink() -> Int {
        var released: [BackingHandle] = []
        lock.withLock { _ in
            var i = 0
            for (index, slot) in slots.enumerated() where slot != nil {
                if i % 2 == 0, let inode = slot {
                    if let h = inode.handle { released.append(h) }
                    inode.handle = nil
                    inode.cacheSlot = -1
                    slots[index] = nil
                    used -= 1
                }
                i += 1
            }
        }
        return released.count  // closed as `released` goes
    }

    /// Whether `inode` holds a pinned handle.
    func isPinned(_ inode: Inode) -> Bool { lock.withLock { _ in inode.pinned && inode.handle != nil } }

    /// Number of handles in the slots (for tests and the debug log).
    var count: Int { lock.withLock { _ in used } }

    // MARK: CLOCK (call with the lock held)

    /// Puts `inode` into a slot, evicting the first unreferenced one the hand finds; returns
    /// the evicted handle for release outside the lock.
    private func place(_ inode: Inode) -> BackingHandle? {
        guard inode.cacheSlot < 0 else { return nil }
        var evicted: BackingHandle? = nil
        while true {
            if let occupant = slots[hand] {
                if occupant.referenced {
                    occupant.referenced = false
                } else {
                    evicted = occupant.handle
                    occupant.handle = nil
                    occupant.cacheSlot = -1
                    slots[hand] = nil
                    used -= 1
                }
            }
            if slots[hand] == nil {
                slots[hand] = inode
                inode.cacheSlot = hand
                used += 1
                hand = (hand + 1) % capacity
                return evicted
            }
            hand = (hand + 1) % capacity
        }
    }

    private func unplace(_ inode: Inode) {
        guard inode.cacheSlot >= 0 else { return }
        slots[inode.cacheSlot] = nil
        inode.cacheSlot = -1
        used -= 1
    }
}
