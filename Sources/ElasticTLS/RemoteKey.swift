import CElasticRemoteKey
import COpenSSL
import Dispatch
import ElasticControlClient
import ElasticCrypto
import Glibc

/// A key of the mount's key store as an OpenSSL `EVP_PKEY`: its public half read from the
/// control file, every signature made by the control file (the private key never leaves the
/// daemon). Usable wherever OpenSSL signs: certificates, requests, TLS handshakes.
public final class RemoteKey: @unchecked Sendable {  // the EVP_PKEY is never mutated after init
    /// The OpenSSL key (provider "elastic-remote"); valid while this object lives.
    public let pkey: OpaquePointer
    /// The public key (default provider), for the certificate's SubjectPublicKeyInfo.
    public let publicKey: AsymmetricKey
    public let name: String

    /// What the C signing callback reaches: the client and the key's name.
    final class Signer {
        let client: ControlClient
        let name: String
        let kind: AsymmetricKey.Kind
        /// Signatures in flight at once: each holds a control-file handle, and a process has
        /// ELASTIC_HANDLES_PER_PROCESS (64) of them.
        let inFlight = DispatchSemaphore(value: 16)
        init(client: ControlClient, name: String, kind: AsymmetricKey.Kind) {
            (self.client, self.name, self.kind) = (client, name, kind)
        }

        func sign(digest: String?, pss: Bool, message: [UInt8]) throws -> [UInt8] {
            let hash: ControlClient.HashAlgorithm?
            switch digest {
            case nil: hash = nil
            case "SHA256": hash = .sha256
            case "SHA384": hash = .sha384
            case "SHA512": hash = .sha512
            default: throw CryptoError.unsupportedKey("digest \(digest ?? "")")
            }
            let scheme: ControlClient.SignatureScheme
            switch kind {
            case .rsa: scheme = pss ? .pss : .pkcs1
            case .ed25519: scheme = .ed25519
            default: scheme = .ecdsa
            }
            inFlight.wait()
            defer { inFlight.signal() }
            var sent = false
            return try client.sign(key: name, scheme: scheme, hash: hash) { _ in
                defer { sent = true }
                return sent ? [] : message
            }
        }
    }

    /// The key `name` of the caller's key store behind `client` (EC, RSA or Ed25519).
    public init(client: ControlClient, name: String) throws {
        let pem = try client.publicKey(name)
        let key = try AsymmetricKey(publicKeyPEM: pem)
        let spki = try key.publicKeyDER()
        let signer = Unmanaged.passRetained(Signer(client: client, name: name, kind: key.kind))
        let made = spki.withUnsafeBufferPointer { b in
            CElasticRemoteKey_new(
                b.baseAddress, b.count,
                { context, digest, pss, msg, len, sig, siglen in
                    guard let context, let sig, let siglen else { return 0 }
                    let signer = Unmanaged<Signer>.fromOpaque(context).takeUnretainedValue()
                    let message = msg.map { Array(UnsafeBufferPointer(start: $0, count: len)) } ?? []
                    let signature: [UInt8]
                    do {
                        signature = try signer.sign(
                            digest: digest.map { String(cString: $0) }, pss: pss != 0, message: message)
                    } catch {
                        // OpenSSL only says "EVP lib": the reason goes to standard error (the log).
                        let line = Array("signing with key \(signer.name) failed: \(error)\n".utf8)
                        _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
                        return 0
                    }
                    guard signature.count <= siglen.pointee else { return 0 }
                    signature.withUnsafeBytes {
                        sig.update(from: $0.bindMemory(to: UInt8.self).baseAddress!, count: $0.count)
                    }
                    siglen.pointee = signature.count
                    return 1
                },
                { context in if let context { Unmanaged<Signer>.fromOpaque(context).release() } },
                signer.toOpaque())
        }
        guard let made else { throw CryptoError.drain("a key of the control file as an OpenSSL key (\(name))") }
        pkey = made
        publicKey = key
        self.name = name
    }

    deinit { EVP_PKEY_free(pkey) }

    /// The digest certificates and requests are signed with: SHA-384 for P-384, none for
    /// Ed25519, SHA-256 otherwise.
    var certificateDigest: OpaquePointer? {
        switch publicKey.kind {
        case .ed25519: return nil
        case .ecP384: return EVP_sha384()
        default: return EVP_sha256()
        }
    }
}
