import Glibc

/// Why a certificate, an endpoint, a context or a connection could not be made.
public struct TLSFailure: Error, CustomStringConvertible {
    public let description: String
    init(_ d: String) { description = d }
}

/// Whether `text` is an IPv4 or IPv6 address (rather than a DNS name).
public func isIPAddress(_ text: String) -> Bool {
    var v4 = in_addr(), v6 = in6_addr()
    return inet_pton(AF_INET, text, &v4) == 1 || inet_pton(AF_INET6, text, &v6) == 1
}

/// TCP endpoints as "HOST:PORT" ("[v6]:PORT" for IPv6 literals): resolving, listening and
/// connecting, with errors that say which address and why.
public struct Endpoint: Sendable, CustomStringConvertible {
    public let host: String
    public let port: UInt16

    public init(_ text: String) throws {
        guard let colon = text.lastIndex(of: ":"), let port = UInt16(text[text.index(after: colon)...]), port > 0 else {
            throw TLSFailure("\(text): not HOST:PORT")
        }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { throw TLSFailure("\(text): no host") }
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
            throw TLSFailure("\(self): cannot resolve \(host): \(String(cString: gai_strerror(rc)))")
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

    static func failure(_ what: String, _ e: Int32) -> TLSFailure {
        TLSFailure("\(what): \(String(cString: strerror(e)))")
    }

    /// A listening socket (SO_REUSEADDR, backlog 1024).
    public func listen() throws -> Int32 {
        try firstSocket(passive: true, "cannot listen on", (EADDRINUSE, "the port is in use")) { fd, address in
            var one: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            return bind(fd, address.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(address.count)) == 0
                && Glibc.listen(fd, 1024) == 0
        }
    }

    /// A connected socket.
    public func connect() throws -> Int32 {
        let fd = try firstSocket(
            passive: false, "cannot connect to", (ECONNREFUSED, "nothing listens there (connection refused)")
        ) { fd, address in
            Glibc.connect(fd, address.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(address.count))
                == 0
        }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        return fd
    }

    /// A socket for the first address `attach` succeeds with (bind and listen, or connect);
    /// otherwise the last address's failure, `named` giving one errno its own words.
    private func firstSocket(
        passive: Bool, _ what: String, _ named: (errno: Int32, words: String),
        _ attach: (Int32, UnsafeRawBufferPointer) -> Bool
    ) throws -> Int32 {
        var last: TLSFailure? = nil
        for (family, address) in try resolve(passive: passive) {
            let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { continue }
            if address.withUnsafeBytes({ attach(fd, $0) }) { return fd }
            let e = errno
            close(fd)
            last = e == named.errno ? TLSFailure("\(what) \(self): \(named.words)") : Self.failure("\(what) \(self)", e)
        }
        throw last ?? TLSFailure("\(what) \(self)")
    }
}

/// Accepts one connection on `fd` (retrying on EINTR); nil when the socket was shut down.
public func acceptConnection(_ fd: Int32) -> Int32? {
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
