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
    let stopping = Atomic<Bool>(false)
    /// Connections being served now.
    public let active = Atomic<Int>(0)

    public init(
        listen: Endpoint, backend: Endpoint, context: TLSContext, clientVerifier: AttestedCertificateVerifier?,
        log: @escaping @Sendable (String) -> Void
    ) throws {
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

    /// A limit on how long a peer may take to send each part of the handshake.
    static func setTimeout(_ fd: Int32, seconds: Int) {
        var t = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &t, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &t, socklen_t(MemoryLayout<timeval>.size))
    }

    func serve(_ fd: Int32, _ context: TLSContext) {
        defer { close(fd) }
        guard let ssl = SSL_new(context.ctx) else { return }
        defer { SSL_free(ssl) }
        SSL_set_fd(ssl, fd)
        Self.setTimeout(fd, seconds: 15)
        let rc = SSL_accept(ssl)
        guard rc == 1 else {
            log("handshake failed: \(handshakeError(ssl, rc))")
            return
        }
        Self.setTimeout(fd, seconds: 0)
        if let clientVerifier {
            guard let cert = peerCertificate(ssl) else {
                log("client refused: no certificate")
                return
            }
            let result = clientVerifier.verify(cert)
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
        _ = TLSRelay(ssl: ssl, tlsFD: fd, plainIn: upstream, plainOut: upstream).run()
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
        if serverName.contains(where: { $0.isLetter }) { _ = COpenSSL_set_host_name(ssl, serverName) }
        TLSServer.setTimeout(fd, seconds: 15)
        let rc = SSL_connect(ssl)
        guard rc == 1 else { throw TLSContext.Failure(description: "\(endpoint): \(handshakeError(ssl, rc))") }
        TLSServer.setTimeout(fd, seconds: 0)
        guard let cert = peerCertificate(ssl) else {
            throw TLSContext.Failure(description: "\(endpoint): the server presented no certificate")
        }
        var result = verifier.verify(cert)
        result.checks.insert(nameCheck(cert, serverName), at: min(1, result.checks.count))
        guard result.passed else { throw Refused(result: result) }
        handedOver = true
        return Connection(fd: fd, ssl: ssl, verification: result)
    }

    /// Whether the certificate names `name` (a DNS name or an IP address).
    static func nameCheck(_ cert: X509Certificate, _ name: String) -> AttestedCertificateVerifier.Check {
        var v4 = in_addr(), v6 = in6_addr()
        let isIP = inet_pton(AF_INET, name, &v4) == 1 || inet_pton(AF_INET6, name, &v6) == 1
        let ok =
            isIP
            ? X509_check_ip_asc(cert.x509, name, 0) == 1
            : X509_check_host(cert.x509, name, name.utf8.count, 0, nil) == 1
        return AttestedCertificateVerifier.Check(
            name: "name", passed: ok,
            detail: ok ? "the certificate names \(name)" : "the certificate does not name \(name)")
    }
}
