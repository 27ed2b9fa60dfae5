import CElasticRemoteKey
import COpenSSL
import ElasticCrypto

/// A TLS 1.3 context (OpenSSL `SSL_CTX`) that presents an attested certificate whose key
/// signs through the control file, and asks the peer for its certificate when attestation of
/// the peer is required. Certificates of peers are checked by `AttestedCertificateVerifier`
/// after the handshake (TLS 1.3 has already proved the peer holds the certificate's key), not
/// by OpenSSL's chain building: an attested certificate is self-signed.
public final class TLSContext: @unchecked Sendable {  // the SSL_CTX is not changed after init
    public let ctx: OpaquePointer
    /// The certificate presented, and its key (kept alive as long as the context).
    public let certificate: X509Certificate?
    let key: RemoteKey?

    init(server: Bool, certificate: X509Certificate?, key: RemoteKey?, askForPeerCertificate: Bool) throws {
        guard let libctx = CElasticRemoteKey_libctx(),
            let ctx = SSL_CTX_new_ex(libctx, nil, server ? TLS_server_method() : TLS_client_method())
        else { throw CryptoError.drain("SSL_CTX_new_ex") }
        self.ctx = ctx
        self.certificate = certificate
        self.key = key
        guard COpenSSL_ctx_tls13_only(ctx) == 1 else { throw CryptoError.drain("TLS 1.3 only") }
        _ = COpenSSL_ctx_set_mode(ctx, Int(SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER))
        if let certificate, let key {
            guard SSL_CTX_use_certificate(ctx, certificate.x509) == 1 else {
                throw CryptoError.drain("SSL_CTX_use_certificate")
            }
            guard SSL_CTX_use_PrivateKey(ctx, key.pkey) == 1, SSL_CTX_check_private_key(ctx) == 1 else {
                throw CryptoError.drain("the certificate's key (\(key.name))")
            }
        }
        // Any certificate is taken at the handshake; the attestation check decides afterwards.
        let mode = askForPeerCertificate ? SSL_VERIFY_PEER | (server ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0) : 0
        SSL_CTX_set_verify(ctx, mode, askForPeerCertificate ? { _, _ in 1 } : nil)
    }

    deinit { SSL_CTX_free(ctx) }

    /// A server context presenting `certificate` (for `key`); `requireClientCertificate`:
    /// clients must present one (mutual attestation).
    public static func server(certificate: X509Certificate, key: RemoteKey, requireClientCertificate: Bool) throws
        -> TLSContext
    {
        try TLSContext(
            server: true, certificate: certificate, key: key, askForPeerCertificate: requireClientCertificate)
    }

    /// A client context, presenting `certificate` when given (mutual attestation).
    public static func client(certificate: X509Certificate? = nil, key: RemoteKey? = nil) throws -> TLSContext {
        try TLSContext(server: false, certificate: certificate, key: key, askForPeerCertificate: true)
    }
}

/// What a connection negotiated.
public struct ConnectionInfo: Sendable {
    public let version: String
    public let cipher: String

    init(_ ssl: OpaquePointer) {
        version = String(cString: SSL_get_version(ssl))
        cipher = SSL_get_current_cipher(ssl).map { String(cString: SSL_CIPHER_get_name($0)) } ?? "?"
    }
}

/// The peer's certificate of an established connection.
func peerCertificate(_ ssl: OpaquePointer) -> X509Certificate? {
    SSL_get1_peer_certificate(ssl).map { X509Certificate(taking: $0) }
}

/// The last OpenSSL error of a handshake, in words.
func handshakeError(_ ssl: OpaquePointer, _ rc: Int32) -> String {
    let code = SSL_get_error(ssl, rc)
    let queued = CryptoError.drain("TLS handshake").description
    if code == SSL_ERROR_SYSCALL { return "the peer closed the connection during the handshake (\(queued))" }
    return queued
}
