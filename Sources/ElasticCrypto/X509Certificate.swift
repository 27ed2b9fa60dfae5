import COpenSSL
import Glibc

/// An X.509 certificate held in an OpenSSL `X509`: parsed from DER or PEM, its signature checked
/// against an issuer, its extensions read by OID; and, for simulators and tests, issued.
/// Immutable once made.
public final class X509Certificate: @unchecked Sendable {  // the X509 is never mutated after init
    /// The OpenSSL certificate; valid while this object lives.
    public let x509: OpaquePointer

    /// Takes ownership of `x509`.
    public init(taking x509: OpaquePointer) { self.x509 = x509 }
    deinit { X509_free(x509) }

    /// A certificate from its DER encoding (the whole input, nothing after it).
    public convenience init(der: [UInt8]) throws {
        let parsed: OpaquePointer? = der.withUnsafeBufferPointer { b in
            var p: UnsafePointer<UInt8>? = b.baseAddress
            let x = d2i_X509(nil, &p, b.count)
            // Trailing bytes are refused: the encoding must be exactly one certificate.
            if let x, let p, p != b.baseAddress! + b.count {
                X509_free(x)
                return nil
            }
            return x
        }
        guard let parsed else { throw CryptoError.drain("d2i_X509") }
        self.init(taking: parsed)
    }

    /// Every certificate of a PEM bundle, in order.
    public static func pem(_ text: [UInt8]) throws -> [X509Certificate] {
        // The BIO reads the caller's bytes in place: everything happens inside the closure.
        let out = try text.withUnsafeBytes { buf -> [X509Certificate] in
            guard let bio = BIO_new_mem_buf(buf.baseAddress, Int32(buf.count)) else {
                throw CryptoError.drain("BIO_new_mem_buf")
            }
            defer { BIO_free(bio) }
            var certs: [X509Certificate] = []
            while let x = PEM_read_bio_X509(bio, nil, nil, nil) { certs.append(X509Certificate(taking: x)) }
            ERR_clear_error()  // the end of the bundle reads as an error
            return certs
        }
        guard !out.isEmpty else { throw CryptoError.unsupportedKey("no PEM certificate") }
        return out
    }

    public var der: [UInt8] {
        let n = i2d_X509(x509, nil)
        guard n > 0 else { return [] }
        var out = [UInt8](repeating: 0, count: Int(n))
        out.withUnsafeMutableBufferPointer { b in
            var p: UnsafeMutablePointer<UInt8>? = b.baseAddress
            _ = i2d_X509(x509, &p)
        }
        return out
    }

    public var subjectCommonName: String? { Self.commonName(X509_get_subject_name(x509)) }
    public var issuerCommonName: String? { Self.commonName(X509_get_issuer_name(x509)) }

    static func commonName(_ name: OpaquePointer?) -> String? {
        guard let name else { return nil }
        let i = X509_NAME_get_index_by_NID(name, NID_commonName, -1)
        guard i >= 0, let entry = X509_NAME_get_entry(name, i), let data = X509_NAME_ENTRY_get_data(entry) else {
            return nil
        }
        var utf8: UnsafeMutablePointer<UInt8>? = nil
        let n = ASN1_STRING_to_UTF8(&utf8, data)
        guard n >= 0, let utf8 else { return nil }
        defer { CRYPTO_free(utf8, #fileID, #line) }
        return String(decoding: UnsafeBufferPointer(start: utf8, count: Int(n)), as: UTF8.self)
    }

    /// The validity period, in seconds since the epoch.
    public var notBefore: Int64? { Self.seconds(X509_get0_notBefore(x509)) }
    public var notAfter: Int64? { Self.seconds(X509_get0_notAfter(x509)) }

    static func seconds(_ t: UnsafePointer<ASN1_TIME>?) -> Int64? {
        guard let t else { return nil }
        var tm = tm()
        guard ASN1_TIME_to_tm(t, &tm) == 1 else { return nil }
        return Int64(timegm(&tm))
    }

    /// The subject's public key.
    public func publicKey() throws -> AsymmetricKey {
        guard let key = X509_get_pubkey(x509) else { throw CryptoError.drain("X509_get_pubkey") }
        return try AsymmetricKey(pkey: key)
    }

    /// Whether `issuer`'s key signed this certificate (any scheme OpenSSL knows, RSASSA-PSS too).
    public func isSigned(by issuer: X509Certificate) -> Bool {
        guard let key = X509_get0_pubkey(issuer.x509) else { return false }
        let ok = X509_verify(x509, key) == 1
        ERR_clear_error()
        return ok
    }

    /// The DER value (the contents of the extnValue OCTET STRING) of the extension `oid`.
    public func extensionValue(oid: String) -> [UInt8]? {
        guard let obj = OBJ_txt2obj(oid, 1) else { return nil }
        defer { ASN1_OBJECT_free(obj) }
        let i = X509_get_ext_by_OBJ(x509, obj, -1)
        guard i >= 0, let ext = X509_get_ext(x509, i), let data = X509_EXTENSION_get_data(ext) else { return nil }
        let n = Int(ASN1_STRING_length(data))
        guard n >= 0, let p = ASN1_STRING_get0_data(data) else { return nil }
        return Array(UnsafeBufferPointer(start: p, count: n))
    }

    /// Issues a certificate for `subject` (a common name) and `publicKey`, signed by `signer` as
    /// `issuer`: RSASSA-PSS with SHA-384 for an RSA signer (as AMD signs), ECDSA with SHA-384
    /// otherwise. `extensions` are (OID, DER value, critical). For simulators and tests.
    public static func issue(
        subject: String, publicKey: AsymmetricKey, issuer: String, signer: AsymmetricKey, serial: Int = 1,
        days: Int = 3650, certificateAuthority: Bool, extensions: [(oid: String, der: [UInt8], critical: Bool)] = []
    ) throws -> X509Certificate {
        guard let x = X509_new() else { throw CryptoError.drain("X509_new") }
        let cert = X509Certificate(taking: x)
        guard X509_set_version(x, 2) == 1, ASN1_INTEGER_set(X509_get_serialNumber(x), serial) == 1,
            X509_gmtime_adj(X509_getm_notBefore(x), 0) != nil,
            X509_gmtime_adj(X509_getm_notAfter(x), days * 86400) != nil,
            X509_set_pubkey(x, publicKey.pkey) == 1,
            try setName(subject, { X509_set_subject_name(x, $0) }), try setName(issuer, { X509_set_issuer_name(x, $0) })
        else { throw CryptoError.drain("X509 fields") }
        // basicConstraints (2.5.29.19): SEQUENCE { BOOLEAN TRUE } for a CA, an empty SEQUENCE otherwise.
        let basic: [UInt8] = certificateAuthority ? [0x30, 0x03, 0x01, 0x01, 0xFF] : [0x30, 0x00]
        for e in [(oid: "2.5.29.19", der: basic, critical: true)] + extensions {
            try addExtension(x, e.oid, e.der, critical: e.critical)
        }
        guard let md = EVP_MD_CTX_new() else { throw CryptoError.drain("EVP_MD_CTX_new") }
        defer { EVP_MD_CTX_free(md) }
        var pctx: OpaquePointer? = nil
        guard EVP_DigestSignInit(md, &pctx, EVP_sha384(), nil, signer.pkey) == 1 else {
            throw CryptoError.drain("EVP_DigestSignInit")
        }
        if case .rsa = signer.kind {
            guard EVP_PKEY_CTX_set_rsa_padding(pctx, 6) == 1,  // RSA_PKCS1_PSS_PADDING
                EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, -1) == 1  // RSA_PSS_SALTLEN_DIGEST
            else { throw CryptoError.drain("RSA-PSS parameters") }
        }
        guard X509_sign_ctx(x, md) > 0 else { throw CryptoError.drain("X509_sign_ctx") }
        return cert
    }

    static func setName(_ cn: String, _ set: (OpaquePointer) -> Int32) throws -> Bool {
        guard let name = X509_NAME_new() else { throw CryptoError.drain("X509_NAME_new") }
        defer { X509_NAME_free(name) }
        guard X509_NAME_add_entry_by_txt(name, "CN", 0x1001, cn, -1, -1, 0) == 1 else {  // MBSTRING_ASC
            throw CryptoError.drain("X509_NAME_add_entry_by_txt")
        }
        return set(name) == 1
    }

    static func addExtension(_ x: OpaquePointer, _ oid: String, _ der: [UInt8], critical: Bool) throws {
        guard let obj = OBJ_txt2obj(oid, 1) else { throw CryptoError.drain("extension \(oid)") }
        defer { ASN1_OBJECT_free(obj) }
        guard let value = ASN1_OCTET_STRING_new() else { throw CryptoError.drain("extension \(oid)") }
        defer { ASN1_OCTET_STRING_free(value) }
        guard ASN1_OCTET_STRING_set(value, der, Int32(der.count)) == 1,
            let ext = X509_EXTENSION_create_by_OBJ(nil, obj, critical ? 1 : 0, value)
        else { throw CryptoError.drain("extension \(oid)") }
        defer { X509_EXTENSION_free(ext) }
        guard X509_add_ext(x, ext, -1) == 1 else { throw CryptoError.drain("X509_add_ext") }
    }
}
