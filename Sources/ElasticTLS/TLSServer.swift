import COpenSSL
import ElasticCrypto
import Foundation
import Glibc
import Synchronization

/// A TLS 1.3 terminating proxy: accepts connections on one endpoint, presents an attested
/// certificate, optionally requires an attested client certificate that satisfies a policy,
/// and forwards the plaintext to a backend. One thread per connection. The context can be
/// replaced while serving (a reloaded or renewed certificate); connections in progress keep
/// the one they started with.
public final class TLSServer: Sendable {
    let listenFD: Int32
    public let listen: Endpoint
    let backend: Endpoint
    let context: Mutex<TLSContext>
    let clientVerifier: AttestedCertificateVerifier?
    let log: @Sendable (String) -> Void
    /// Connections served at once; more are closed at once (each holds a thread).
    let maxConnections: Int
    /// A connection with no byte either way for this many seconds is closed (nil: never).
    let idleTimeout: Double?
    let stopping = Atomic<Bool>(false)
    /// Connections being served now.
    public let active = Atomic<Int>(0)

    public init(
        listen: Endpoint, backend: Endpoint, context: TLSContext, clientVerifier: AttestedCertificateVerifier?,
        maxConnections: Int = 1024, idleTimeout: Double? = nil, log: @escaping @Sendable (String) -> Void
    ) throws {
        self.maxConnections = maxConnections
        self.idleTimeout = idleTimeout
        listenFD = try listen.listen()
        self.listen = listen
        self.backend = backend
        self.context = Mutex(context)
        self.clientVerifier = clientVerifier
        self.log = log
    }

    deinit { close(listenFD) }

    /// Serves new connections with `context` from now on.
    public func replace(_ context: TLSContext) { self.context.withLock { $0 = context } }

    /// Accepts connections until `stop`.
    public func run() {
        while !stopping.load(ordering: .acquiring), let fd = acceptConnection(listenFD) {
            guard active.load(ordering: .relaxed) < maxConnections else {
                log("connection refused: \(maxConnections) connections are open already")
                close(fd)
                continue
            }
            let ctx = context.withLock { $0 }
            active.add(1, ordering: .relaxed)
            let thread = Thread { [self] in
                serve(fd, ctx)
                active.subtract(1, ordering: .relaxed)
            }
            thread.stackSize = 512 * 1024
            thread.start()
        }
    }

    /// Stops accepting (connections in progress finish on their own).
    public func stop() {
        stopping.store(true, ordering: .releasing)
        shutdown(listenFD, Int32(SHUT_RDWR))
    }

    /// How long a whole handshake may take.
    static let handshakeSeconds = 15.0

    /// Runs `step` (SSL_accept or SSL_connect) on the non-blocking `fd` until the handshake
    /// is done, fails, or `handshakeSeconds` have passed (a peer that trickles bytes cannot
    /// hold a thread). Returns nil when done, else why not.
    static func handshake(_ ssl: OpaquePointer, _ fd: Int32, _ step: (OpaquePointer) -> Int32) -> String? {
        TLSRelay.setNonBlocking(fd)
        var start = timespec()
        clock_gettime(CLOCK_MONOTONIC, &start)
        while true {
            let rc = step(ssl)
            if rc == 1 { return nil }
            let e = SSL_get_error(ssl, rc)
            guard e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE else { return handshakeError(ssl, rc) }
            var now = timespec()
            clock_gettime(CLOCK_MONOTONIC, &now)
            let left =
                handshakeSeconds - (Double(now.tv_sec - start.tv_sec) + Double(now.tv_nsec - start.tv_nsec) / 1e9)
            guard left > 0 else { return "the peer did not finish the handshake within \(Int(handshakeSeconds)) s" }
            var p = pollfd(fd: fd, events: Int16(e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT), revents: 0)
            _ = poll(&p, 1, Int32(left * 1000) + 1)
        }
    }

    func serve(_ fd: Int32, _ context: TLSContext) {
        defer { close(fd) }
        guard let ssl = SSL_new(context.ctx) else { return }
        defer { SSL_free(ssl) }
        SSL_set_fd(ssl, fd)
        if let why = Self.handshake(ssl, fd, { SSL_accept($0) }) {
            log("handshake failed: \(why)")
            return
        }
        if let clientVerifier {
            guard let cert = peerCertificate(ssl) else {
                log("client refused: no certificate")
                return
            }
            var proven = clientVerifier
            proven.keyProvenByHandshake = true
            let result = proven.verify(cert)
            guard result.passed else {
                let failed = result.checks.filter { !$0.passed }.map { "\($0.name): \($0.detail)" }
                log("client refused: \(failed.joined(separator: "; "))")
                _ = SSL_shutdown(ssl)
                return
            }
        }
        let upstream: Int32
        do { upstream = try backend.connect() } catch {
            log("backend unreachable, connection closed: \(error)")
            _ = SSL_shutdown(ssl)
            return
        }
        defer { close(upstream) }
        var relay = TLSRelay(ssl: ssl, tlsFD: fd, plainIn: upstream, plainOut: upstream)
        if let idleTimeout { relay.idleTimeout = Int32(min(idleTimeout * 1000, Double(Int32.max))) }
        if relay.run().idle {
            _ = SSL_shutdown(ssl)  // (best effort: the peer learns the end was ours)
            log("connection closed: idle for \(idleTimeout ?? 0) s")
        }
    }
}

/// Connects to TLS servers that present attested certificates, and refuses any that does not
/// satisfy the verifier before a byte of data is sent.
public enum TLSClient {
    /// An established, verified connection.
    public final class Connection: @unchecked Sendable {  // used by one thread at a time
        public let fd: Int32
        let ssl: OpaquePointer
        public let info: ConnectionInfo
        public let verification: AttestedCertificateVerifier.Result

        init(fd: Int32, ssl: OpaquePointer, verification: AttestedCertificateVerifier.Result) {
            self.fd = fd
            self.ssl = ssl
            info = ConnectionInfo(ssl)
            self.verification = verification
        }

        deinit {
            SSL_free(ssl)
            close(fd)
        }

        /// Relays between this connection and plain descriptors until both directions end.
        public func relay(input: Int32, output: Int32) {
            _ = TLSRelay(ssl: ssl, tlsFD: fd, plainIn: input, plainOut: output).run()
        }
    }

    /// The server failed a check: nothing was sent.
    public struct Refused: Error, CustomStringConvertible {
        public let result: AttestedCertificateVerifier.Result
        public var description: String {
            "the server was refused: "
                + result.checks.filter { !$0.passed }.map { "\($0.name): \($0.detail)" }.joined(separator: "; ")
        }
    }

    /// Connects to `endpoint`, asking for `serverName` (SNI; the certificate must name it),
    /// and verifies the server's attested certificate.
    public static func connect(
        to endpoint: Endpoint, serverName: String, context: TLSContext, verifier: AttestedCertificateVerifier
    ) throws -> Connection {
        let fd = try endpoint.connect()
        guard let ssl = SSL_new(context.ctx) else {
            close(fd)
            throw CryptoError.drain("SSL_new")
        }
        var handedOver = false
        defer {
            if !handedOver {
                SSL_free(ssl)
                close(fd)
            }
        }
        SSL_set_fd(ssl, fd)
        if !isIPAddress(serverName) {
            _ = COpenSSL_set_host_name(ssl, serverName)  // SNI carries names, never addresses
        }
        if let why = TLSServer.handshake(ssl, fd, { SSL_connect($0) }) {
            throw TLSFailure("\(endpoint): \(why)")
        }
        guard let cert = peerCertificate(ssl) else {
            throw TLSFailure("\(endpoint): the server presented no certificate")
        }
        var proven = verifier
        proven.keyProvenByHandshake = true
        var result = proven.verify(cert)
        result.checks.insert(nameCheck(cert, serverName), at: min(1, result.checks.count))
        guard result.passed else { throw Refused(result: result) }
        handedOver = true
        return Connection(fd: fd, ssl: ssl, verification: result)
    }

    /// Whether the certificate names `name` (a DNS name or an IP address).
    static func nameCheck(_ cert: X509Certificate, _ name: String) -> AttestedCertificateVerifier.Check {
        let ok =
            isIPAddress(name)
            ? X509_check_ip_asc(cert.x509, name, 0) == 1
            : X509_check_host(cert.x509, name, name.utf8.count, 0, nil) == 1
        return AttestedCertificateVerifier.Check(
            name: "name", passed: ok,
            detail: ok ? "the certificate names \(name)" : "the certificate does not name \(name)")
    }
}
