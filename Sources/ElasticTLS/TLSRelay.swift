import COpenSSL
import Glibc

/// Copies bytes both ways between an established TLS connection and plain descriptors (a
/// socket, or standard input and output) on one thread, non-blocking, until both directions
/// have ended: the end of the plain input sends close_notify; the peer's close_notify (or its
/// connection closing) ends the plain output. Any error ends both, and so does `idleTimeout`
/// (milliseconds, -1: none) without a byte either way.
struct TLSRelay {
    let ssl: OpaquePointer
    let tlsFD: Int32
    let plainIn: Int32
    let plainOut: Int32
    var idleTimeout: Int32 = -1

    /// Bytes carried each way.
    struct Totals {
        var fromPeer = 0
        var toPeer = 0
        /// Ended by `idleTimeout`.
        var idle = false
    }

    static func setNonBlocking(_ fd: Int32) {
        let flags = fcntl(fd, F_GETFL)
        if flags >= 0 { _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK) }
    }

    func run() -> Totals {
        // Standard input and output may be shared with a shell: their flags are put back.
        let saved = Set([plainIn, plainOut]).map { ($0, fcntl($0, F_GETFL)) }
        defer { for (fd, flags) in saved where flags >= 0 { _ = fcntl(fd, F_SETFL, flags) } }
        return pump()
    }

    func pump() -> Totals {
        var totals = Totals()
        var lastActivity = Self.now()
        for fd in Set([tlsFD, plainIn, plainOut]) { Self.setNonBlocking(fd) }
        let capacity = 64 * 1024
        var fromPeer = [UInt8](repeating: 0, count: capacity), fromPeerStart = 0, fromPeerEnd = 0
        var toPeer = [UInt8](repeating: 0, count: capacity), toPeerStart = 0, toPeerEnd = 0
        var peerEnded = false, plainEnded = false, closeNotifySent = false, plainOutClosed = false
        var shutdownWants: Int16 = 0  // an SSL_shutdown that could not send close_notify yet
        var readWants: Int16 = 0, writeWants: Int16 = 0  // what SSL_read / SSL_write wait for
        while true {
            var progress = false
            // The peer's bytes, while there is room for them.
            if fromPeerEnd == fromPeerStart && !peerEnded {
                fromPeerStart = 0
                fromPeerEnd = 0
                let n = fromPeer.withUnsafeMutableBytes { SSL_read(ssl, $0.baseAddress, Int32(capacity)) }
                readWants = 0
                if n > 0 {
                    fromPeerEnd = Int(n)
                    totals.fromPeer += Int(n)
                    progress = true
                } else {
                    switch SSL_get_error(ssl, n) {
                    case SSL_ERROR_WANT_READ: readWants = Int16(POLLIN)
                    case SSL_ERROR_WANT_WRITE: readWants = Int16(POLLOUT)
                    case SSL_ERROR_ZERO_RETURN:
                        peerEnded = true
                        progress = true
                    default:
                        ERR_clear_error()
                        return totals  // reset, or a TLS error: the connection is over
                    }
                }
            }
            if fromPeerEnd > fromPeerStart {
                let n = fromPeer[fromPeerStart..<fromPeerEnd].withUnsafeBytes {
                    write(plainOut, $0.baseAddress, $0.count)
                }
                if n > 0 {
                    fromPeerStart += n
                    progress = true
                } else if n < 0 && errno != EAGAIN && errno != EINTR {
                    return totals
                }
            }
            if peerEnded && fromPeerEnd == fromPeerStart && !plainOutClosed {
                plainOutClosed = true
                if plainOut == plainIn { shutdown(plainOut, Int32(SHUT_WR)) } else { close(plainOut) }
            }
            // The plain side's bytes, while the last ones are sent.
            if toPeerEnd == toPeerStart && !plainEnded {
                toPeerStart = 0
                toPeerEnd = 0
                let n = toPeer.withUnsafeMutableBytes { read(plainIn, $0.baseAddress, capacity) }
                if n > 0 {
                    toPeerEnd = n
                    progress = true
                } else if n == 0 {
                    plainEnded = true
                    progress = true
                } else if errno != EAGAIN && errno != EINTR {
                    // A reset is not an end: no close_notify, so the peer sees the stream cut.
                    return totals
                }
            }
            if toPeerEnd > toPeerStart {
                let n = toPeer[toPeerStart..<toPeerEnd].withUnsafeBytes {
                    SSL_write(ssl, $0.baseAddress, Int32($0.count))
                }
                writeWants = 0
                if n > 0 {
                    toPeerStart += Int(n)
                    totals.toPeer += Int(n)
                    progress = true
                } else {
                    switch SSL_get_error(ssl, n) {
                    case SSL_ERROR_WANT_READ: writeWants = Int16(POLLIN)
                    case SSL_ERROR_WANT_WRITE: writeWants = Int16(POLLOUT)
                    default:
                        ERR_clear_error()
                        return totals
                    }
                }
            }
            if plainEnded && toPeerEnd == toPeerStart && !closeNotifySent {
                // Sent once SSL_shutdown returns 0 or 1; on a full socket it asks to be called again.
                let rc = SSL_shutdown(ssl)
                shutdownWants = 0
                if rc >= 0 {
                    closeNotifySent = true
                    progress = true
                } else {
                    switch SSL_get_error(ssl, rc) {
                    case SSL_ERROR_WANT_WRITE: shutdownWants = Int16(POLLOUT)
                    case SSL_ERROR_WANT_READ: shutdownWants = Int16(POLLIN)
                    default:
                        ERR_clear_error()
                        return totals
                    }
                }
                ERR_clear_error()
            }
            if peerEnded && plainOutClosed && closeNotifySent { return totals }
            if progress {
                lastActivity = Self.now()
                continue
            }
            // Nothing moved: wait for what each side needs.
            var fds: [pollfd] = []
            var tlsEvents = writeWants | shutdownWants
            if fromPeerEnd == fromPeerStart && !peerEnded { tlsEvents |= readWants == 0 ? Int16(POLLIN) : readWants }
            // (-1: poll ignores the entry; the peer's end is not waited for again.)
            fds.append(pollfd(fd: tlsEvents == 0 ? -1 : tlsFD, events: tlsEvents, revents: 0))
            if fromPeerEnd > fromPeerStart { fds.append(pollfd(fd: plainOut, events: Int16(POLLOUT), revents: 0)) }
            if toPeerEnd == toPeerStart && !plainEnded {
                fds.append(pollfd(fd: plainIn, events: Int16(POLLIN), revents: 0))
            }
            var wait: Int32 = -1
            if idleTimeout >= 0 {
                let left = Int64(idleTimeout) - (Self.now() - lastActivity)
                if left <= 0 {
                    totals.idle = true
                    return totals
                }
                wait = Int32(left)
            }
            if poll(&fds, nfds_t(fds.count), wait) < 0 && errno != EINTR { return totals }
        }
    }

    /// Milliseconds on the monotonic clock.
    static func now() -> Int64 {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return Int64(t.tv_sec) * 1000 + Int64(t.tv_nsec) / 1_000_000
    }
}
