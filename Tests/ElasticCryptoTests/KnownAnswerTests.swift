import Glibc
import Testing

@testable import ElasticCrypto

func hex(_ s: String) -> [UInt8] {
    var out: [UInt8] = []
    var it = s.makeIterator()
    while let a = it.next(), let b = it.next() { out.append(UInt8(String([a, b]), radix: 16)!) }
    return out
}

func key(_ bytes: [UInt8]) -> SecureBytes {
    var b = bytes
    return SecureBytes(consuming: &b)
}

@Suite struct KnownAnswerTests {
    /// GCM spec test cases 13 and 14 (AES-256, zero key and IV).
    @Test func aesGCMTestCases13And14() throws {
        let gcm = try AESGCM(key: key([UInt8](repeating: 0, count: 32)))
        let nonce = [UInt8](repeating: 0, count: 12)
        var tag = [UInt8](repeating: 0, count: 16)
        try nonce.withUnsafeBytes { n in
            try gcm.seal(
                nonce: n.baseAddress!, aad: UnsafeRawBufferPointer(start: nil, count: 0), input: nil, count: 0,
                output: nil, tag: &tag)
        }
        #expect(tag == hex("530f8afbc74536b9a963b4f1c4cb738b"))

        var out = [UInt8](repeating: 0, count: 16)
        let plain = [UInt8](repeating: 0, count: 16)
        try nonce.withUnsafeBytes { n in
            try plain.withUnsafeBytes { p in
                try gcm.seal(
                    nonce: n.baseAddress!, aad: UnsafeRawBufferPointer(start: nil, count: 0), input: p.baseAddress,
                    count: 16, output: &out, tag: &tag)
            }
        }
        #expect(out == hex("cea7403d4d606b6e074ec5d3baf39d18"))
        #expect(tag == hex("d0d1c8a799996bf0265b98b5d48ab919"))
    }

    @Test func aesGCMRoundTripAndTamper() throws {
        let gcm = try AESGCM(key: try SecureBytes.random(count: 32))
        let sealed = try gcm.seal(Array("hello, world".utf8), aad: [1, 2, 3])
        #expect(try gcm.open(sealed, aad: [1, 2, 3]) == Array("hello, world".utf8))
        #expect(throws: CryptoError.authenticationFailure) { try gcm.open(sealed, aad: [1, 2, 4]) }
        var flipped = sealed
        flipped[14] ^= 1
        #expect(throws: CryptoError.authenticationFailure) { try gcm.open(flipped, aad: [1, 2, 3]) }
    }

    /// RFC 5869 test case 1.
    @Test func hkdfRFC5869Case1() throws {
        let ikm = [UInt8](repeating: 0x0b, count: 22)
        let okm = try ikm.withUnsafeBytes {
            try KDF.hkdfSHA256(ikm: $0, salt: Array(0...12), info: Array(0xf0...0xf9), length: 42)
        }
        okm.withUnsafeBytes {
            #expect(
                Array($0) == hex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865")
            )
        }
    }

    /// The reusable expander (behind every HKDF here) against RFC 5869 cases 1 and 3.
    @Test func hkdfExpanderMatchesRFC5869AndOneShot() throws {
        let rfc = try HKDFExpander(ikm: key([UInt8](repeating: 0x0b, count: 22)), salt: Array(0...12))
        let okm = try [UInt8](0xf0...0xf9).withUnsafeBytes { try rfc.expand(info: $0, length: 42) }
        okm.withUnsafeBytes {
            #expect(
                Array($0) == hex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865")
            )
        }
        // RFC 5869 test case 3: empty salt and info.
        let case3 = try HKDFExpander(ikm: key([UInt8](repeating: 0x0b, count: 22)))
        let okm3 = try [UInt8]().withUnsafeBytes { try case3.expand(info: $0, length: 42) }
        okm3.withUnsafeBytes {
            #expect(
                Array($0) == hex("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8")
            )
        }
        // Shorter outputs are prefixes of longer ones, at every block boundary.
        let e = try HKDFExpander(ikm: try SecureBytes.random(count: 32))
        let info = Array("elastic".utf8)
        let long = try info.withUnsafeBytes { try e.expand(info: $0, length: 100) }.withUnsafeBytes { Array($0) }
        for length in [1, 16, 31, 32, 33, 64, 65] {
            let ours = try info.withUnsafeBytes { try e.expand(info: $0, length: length) }
            #expect(ours.withUnsafeBytes { Array($0) } == Array(long.prefix(length)), "length \(length)")
        }
    }

    /// RFC 5297 appendix A.1 (AES-SIV, deterministic mode).
    @Test func aesSIVRFC5297() throws {
        let siv = try AESSIV(key: key(hex("fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")))
        let sealed = try siv.seal(
            hex("112233445566778899aabbccddee"), ad: [hex("101112131415161718191a1b1c1d1e1f2021222324252627")])
        #expect(sealed == hex("85632d07c6e8f37f950acd320a2ecc9340c02b9690c4dc04daef7f6afe5c"))
        #expect(
            try siv.open(sealed, ad: [hex("101112131415161718191a1b1c1d1e1f2021222324252627")])
                == hex("112233445566778899aabbccddee"))
        #expect(throws: CryptoError.authenticationFailure) { try siv.open(sealed, ad: [[0]]) }
    }

    /// RFC 7914 §12, third vector (N = 1024, r = 8, p = 16).
    @Test func scryptRFC7914() throws {
        let out = try KDF.scrypt(
            password: Array("password".utf8), salt: Array("NaCl".utf8), logN: 10, r: 8, p: 16, length: 64)
        out.withUnsafeBytes {
            #expect(
                Array($0)
                    == hex(
                        "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b3731622eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640"
                    ))
        }
    }

    @Test func hmacAndSHA256() throws {
        #expect(
            KDF.sha256(Array("abc".utf8)) == hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"))
        // RFC 4231 test case 2.
        let mac = try KDF.hmacSHA256(key: key(Array("Jefe".utf8)), data: Array("what do ya want for nothing?".utf8))
        #expect(mac == hex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"))
        // The same through a context keyed once: every message alike, whatever its parts, both
        // where a reset keeps the key (OpenSSL 3.0.3 and later) and where the key is passed again.
        let keyed = try HMACSHA256(key: key(Array("Jefe".utf8)))
        for split in [0, 4, 28] {
            let m = Array("what do ya want for nothing?".utf8)
            let got = try keyed.mac { feed in
                m[..<split].withUnsafeBytes(feed)
                m[split...].withUnsafeBytes(feed)
            }
            #expect(got == mac, "split at \(split)")
            let keyedAgain = try keyed.mac(reset: false) { feed in
                m[..<split].withUnsafeBytes(feed)
                m[split...].withUnsafeBytes(feed)
            }
            #expect(keyedAgain == mac, "the key passed again")
            #expect(try keyed.mac { Array("other".utf8).withUnsafeBytes($0) } != mac)
        }
    }

    @Test func secureBytesNeverPrintsItsContents() throws {
        let k = key([0x41, 0x42, 0x43, 0x44])
        #expect(!"\(k)".contains("ABCD"))
        #expect(!"\(k)".contains("41"))
        #expect(k == key([0x41, 0x42, 0x43, 0x44]))
        #expect(k != key([0x41, 0x42, 0x43, 0x45]))
    }
}

@Suite struct HexTests {
    @Test func encodeDecode() {
        #expect(Hex.encode([0x00, 0x0f, 0xa5, 0xff]) == "000fa5ff")
        #expect(Hex.decode("000FA5ff") == [0x00, 0x0f, 0xa5, 0xff])
        #expect(Hex.decode("abc") == nil)
        #expect(Hex.decode("zz") == nil)
        #expect(Hex.decode("") == [])
    }
}

@Suite struct NonceTests {
    /// SHA-256 of "abc" (FIPS 180-2, B.1) through the pointer form records use.
    @Test func sha256IntoMemory() {
        var out = [UInt8](repeating: 0, count: 32)
        Array("abc".utf8).withUnsafeBytes { d in out.withUnsafeMutableBytes { KDF.sha256(d, into: $0.baseAddress!) } }
        #expect(out == hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"))
        #expect(KDF.sha256(Array("abc".utf8)) == out)
    }

    /// Nonces drawn from one pool never repeat, across refills and in sizes that go around it.
    @Test func poolNoncesAreDistinct() throws {
        let pool = NoncePool()
        var seen = Set<[UInt8]>()
        for k in 0..<3000 {
            // 1100 bytes: more than a quarter of the pool, straight from RAND_bytes.
            var n = [UInt8](repeating: 0, count: k % 7 == 0 ? 1100 : 12)
            try n.withUnsafeMutableBytes { try pool.fill($0) }
            #expect(seen.insert(n).inserted)
        }
    }

    /// A fork(2) child draws afresh: it never hands out the nonces its parent is about to.
    @Test func aForkedChildDrawsOtherNonces() throws {
        let pool = NoncePool()
        var first = [UInt8](repeating: 0, count: 12)
        for _ in 0..<2 { try first.withUnsafeMutableBytes { try pool.fill($0) } }  // the pool now holds the next ones
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        let child = fork()
        if child == 0 {
            var n = [UInt8](repeating: 0, count: 12)
            let ok = (try? n.withUnsafeMutableBytes { try pool.fill($0) }) != nil
            _ = n.withUnsafeBytes { write(fds[1], $0.baseAddress, ok ? 12 : 0) }
            _exit(0)
        }
        close(fds[1])
        var fromChild = [UInt8](repeating: 0, count: 12)
        var ready = pollfd(fd: fds[0], events: Int16(POLLIN), revents: 0)
        let got =
            poll(&ready, 1, 20_000) == 1 ? fromChild.withUnsafeMutableBytes { read(fds[0], $0.baseAddress, 12) } : -1
        close(fds[0])
        if got != 12 { kill(child, SIGKILL) }
        var status: Int32 = 0
        waitpid(child, &status, 0)
        var parentNext = [UInt8](repeating: 0, count: 12)
        try parentNext.withUnsafeMutableBytes { try pool.fill($0) }
        #expect(got == 12 && fromChild != parentNext && fromChild != first)
    }
}
