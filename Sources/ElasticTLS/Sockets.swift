import Glibc

/// TCP endpoints as "HOST:PORT" ("[v6]:PORT" for IPv6 literals): resolving, listening and
/// connecting, with errors that say which address and why.
public struct Endpoint: Sendable, CustomStringConvertible {
    public let host: String
    public let port: UInt16

    /// Why an endpoint could not be used.
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        /// The errno, when a system call failed.
        public let code: Int32?
    }

    public init(_ text: String) throws {
        guard let colon = text.lastIndex(of: ":"), let port = UInt16(text[text.index(after: colon)...]), port > 0 else {
            throw Failure(description: "\(text): not HOST:PORT", code: nil)
        }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { throw Failure(description: "\(text): no host", code: nil) }
        self.host = host
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// The addresses `host` resolves to.
    func resolve(passive: Bool) throws -> [(family: Int32, address: [UInt8])] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = passive ? AI_PASSIVE : 0
        var list: UnsafeMutablePointer<addrinfo>? = nil
        let rc = getaddrinfo(host, String(port), &hints, &list)
        guard rc == 0, let list else {
            throw Failure(
                description: "\(self): cannot resolve \(host): \(String(cString: gai_strerror(rc)))", code: nil)
        }
        defer { freeaddrinfo(list) }
        var out: [(Int32, [UInt8])] = []
        var p: UnsafeMutablePointer<addrinfo>? = list
        while let a = p {
            let bytes = UnsafeRawBufferPointer(start: a.pointee.ai_addr, count: Int(a.pointee.ai_addrlen))
            out.append((a.pointee.ai_family, Array(bytes)))
            p = a.pointee.ai_next
        }
        return out
    }

    static func failure(_ what: String, _ e: Int32) -> Failure {
        Failure(description: "\(what): \(String(cString: strerror(e)))", code: e)
    }

    /// A listening socket (SO_REUSEADDR, backlog 1024).
    public func listen() throws -> Int32 {
        var last: Failure? = nil
        for (family, address) in try resolve(passive: true) {
            let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { continue }
            var one: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            let bound = address.withUnsafeBytes {
                bind(fd, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t($0.count))
            }
            if bound == 0 && Glibc.listen(fd, 1024) == 0 { return fd }
            let e = errno
            close(fd)
            last =
                e == EADDRINUSE
                ? Failure(description: "cannot listen on \(self): the port is in use", code: e)
                : Self.failure("cannot listen on \(self)", e)
        }
        throw last ?? Failure(description: "cannot listen on \(self)", code: nil)
    }

    /// A connected socket.
    public func connect() throws -> Int32 {
        var last: Failure? = nil
        for (family, address) in try resolve(passive: false) {
            let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { continue }
            let rc = address.withUnsafeBytes {
                Glibc.connect(fd, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t($0.count))
            }
            if rc == 0 {
                var one: Int32 = 1
                setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                return fd
            }
            let e = errno
            close(fd)
            last =
                e == ECONNREFUSED
                ? Failure(description: "cannot connect to \(self): nothing listens there (connection refused)", code: e)
                : Self.failure("cannot connect to \(self)", e)
        }
        throw last ?? Failure(description: "cannot connect to \(self)", code: nil)
    }
}

/// Accepts one connection on `fd` (retrying on EINTR); nil when the socket was shut down.
func acceptConnection(_ fd: Int32) -> Int32? {
    while true {
        let c = accept(fd, nil, nil)
        if c >= 0 {
            _ = fcntl(c, F_SETFD, FD_CLOEXEC)
            var one: Int32 = 1
            setsockopt(c, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            return c
        }
        if errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE {
            if errno == EMFILE || errno == ENFILE { usleep(10_000) }
            continue
        }
        return nil
    }
}
