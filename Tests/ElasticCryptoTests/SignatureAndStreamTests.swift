import ElasticCrypto
import Foundation
import Testing

@Suite struct SignatureAndStreamTests {
    /// An Ed25519 private key as PKCS#8 DER from its 32-byte seed (RFC 8410).
    func ed25519(seed: String) throws -> AsymmetricKey {
        let der = hex("302e020100300506032b657004220420" + seed)
        return try der.withUnsafeBytes { try AsymmetricKey(privateKey: $0) }
    }

    func sign(_ key: AsymmetricKey, _ scheme: SignatureScheme, _ digest: Digest.Algorithm?, _ message: [UInt8]) throws
        -> [UInt8]
    {
        let s = try SignatureStream(key: key, scheme: scheme, digest: digest, verifying: false)
        try message.withUnsafeBytes { try s.update($0) }
        return try s.sign()
    }

    func verify(
        _ key: AsymmetricKey, _ scheme: SignatureScheme, _ digest: Digest.Algorithm?, _ message: [UInt8], _ sig: [UInt8]
    ) throws -> Bool {
        let s = try SignatureStream(key: key, scheme: scheme, digest: digest, verifying: true)
        for chunk in stride(from: 0, to: message.count, by: 7) {
            try message[chunk..<min(chunk + 7, message.count)].withUnsafeBytes { try s.update($0) }
        }
        return try s.verify(sig)
    }

    /// RFC 8032 §7.1, TEST 1 and TEST 2.
    @Test func ed25519RFC8032() throws {
        let k1 = try ed25519(seed: "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
        #expect(
            Hex.encode(try sign(k1, .ed25519, nil, []))
                == "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        )
        let k2 = try ed25519(seed: "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb")
        let sig2 = try sign(k2, .ed25519, nil, [0x72])
        #expect(
            Hex.encode(sig2)
                == "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
        )
        #expect(try verify(k2, .ed25519, nil, [0x72], sig2))
        #expect(try !verify(k2, .ed25519, nil, [0x73], sig2))
        // The public key in the PEM is RFC 8032's.
        let pem = String(decoding: try k2.publicKeyPEM(), as: UTF8.self)
        let body = pem.split(separator: "\n").filter { !$0.hasPrefix("-----") }.joined()
        #expect(
            Hex.encode([UInt8](Data(base64Encoded: body) ?? Data())) == "302a300506032b6570032100"
                + "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c")
    }

    @Test func everySchemeSignsAndVerifiesAndRefusesMismatches() throws {
        let message = Array("ELASTIC signs this".utf8)
        let rsa = try AsymmetricKey.generate(.rsa(bits: 2048))
        let p256 = try AsymmetricKey.generate(.ecP256)
        let p384 = try AsymmetricKey.generate(.ecP384)
        let ed = try AsymmetricKey.generate(.ed25519)
        for (key, scheme, digest) in [
            (rsa, SignatureScheme.rsaPSS, Digest.Algorithm.sha256), (rsa, .rsaPKCS1v15, .sha512),
            (p256, .ecdsa, .sha256), (p384, .ecdsa, .sha384),
        ] {
            let sig = try sign(key, scheme, digest, message)
            #expect(try verify(key, scheme, digest, message, sig))
            #expect(try !verify(key, scheme, digest, message + [0], sig))
            var bad = sig
            bad[bad.count / 2] ^= 0x40
            #expect(try !verify(key, scheme, digest, message, bad))
        }
        // PKCS#1 v1.5 is deterministic; PSS and ECDSA are not.
        #expect(try sign(rsa, .rsaPKCS1v15, .sha256, message) == sign(rsa, .rsaPKCS1v15, .sha256, message))
        #expect(try sign(rsa, .rsaPSS, .sha256, message) != sign(rsa, .rsaPSS, .sha256, message))
        #expect(throws: CryptoError.self) {
            try SignatureStream(key: p256, scheme: .rsaPSS, digest: .sha256, verifying: false)
        }
        #expect(throws: CryptoError.self) {
            try SignatureStream(key: ed, scheme: .ed25519, digest: .sha256, verifying: false)
        }
        #expect(throws: CryptoError.self) { try AsymmetricKey.generate(.rsa(bits: 1024)) }
        // Keys survive DER and PEM.
        let again = try rsa.privateKeyDER().withUnsafeBytes { try AsymmetricKey(privateKey: $0) }
        #expect(try again.publicKeyPEM() == rsa.publicKeyPEM() && again.kind == .rsa(bits: 2048))
        let fromPEM = try p384.privateKeyPEM().withUnsafeBytes { try AsymmetricKey(privateKey: $0) }
        #expect(try fromPEM.publicKeyPEM() == p384.publicKeyPEM())
        #expect(throws: CryptoError.self) {
            try Array("-----BEGIN PRIVATE KEY-----\nnope\n".utf8).withUnsafeBytes { try AsymmetricKey(privateKey: $0) }
        }
    }

    /// The STREAM construction as docs/control-abi.md states it, rebuilt from HKDF and AES-GCM.
    @Test func aeadStreamMatchesItsSpecification() throws {
        let k = key((0..<32).map { UInt8($0) })
        let salt = [UInt8](repeating: 0xA5, count: 32)
        let aad = Array("context".utf8)
        let message = (0..<(4096 + 10)).map { UInt8(truncatingIfNeeded: $0 * 3) }
        let stream = try AEADStream(key: k, salt: salt, label: "elastic/v1/aead-stream", aad: aad)
        var ct = [UInt8](repeating: 0, count: message.count)
        var tags = [UInt8](repeating: 0, count: 32)
        try message.withUnsafeBytes { m in
            try ct.withUnsafeMutableBytes { c in
                try tags.withUnsafeMutableBytes { t in
                    try stream.seal(
                        UnsafeRawBufferPointer(rebasing: m[0..<4096]), final: false, output: c.baseAddress!,
                        tag: t.baseAddress!)
                    try stream.seal(
                        UnsafeRawBufferPointer(rebasing: m[4096...]), final: true, output: c.baseAddress! + 4096,
                        tag: t.baseAddress! + 16)
                }
            }
        }
        let streamKey = try KDF.hkdfSHA256(ikm: k, salt: salt, info: Array("elastic/v1/aead-stream".utf8), length: 32)
        let gcm = try AESGCM(key: streamKey)
        let nonce0 = [UInt8](repeating: 0, count: 12)
        let nonce1: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1]
        #expect(try gcm.open(nonce0 + Array(ct[0..<4096]) + Array(tags[0..<16]), aad: aad) == Array(message[0..<4096]))
        #expect(try gcm.open(nonce1 + Array(ct[4096...]) + Array(tags[16...]), aad: aad) == Array(message[4096...]))
        #expect(throws: CryptoError.self) {
            try stream.seal(UnsafeRawBufferPointer(start: nil, count: 0), final: true, output: &ct, tag: &tags)
        }
    }
}
