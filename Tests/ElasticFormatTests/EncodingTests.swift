import ElasticCrypto
import Testing

@testable import ElasticFormat

@Suite struct EncodingTests {
    @Test func fileHeaderBytes() throws {
        let h = FileHeader(fileID: Array(1...16))
        #expect(h.encoded == Array("ELFB".utf8) + [0, 1, 0, 0] + Array(1...16))
        #expect(try FileHeader(decoding: h.encoded) == h)
        var bad = h.encoded
        bad[0] = 0x58
        #expect(throws: FormatError.self) { try FileHeader(decoding: bad) }
        bad = h.encoded
        bad[5] = 2
        #expect(throws: FormatError.self) { try FileHeader(decoding: bad) }
        #expect(throws: FormatError.self) { try FileHeader(decoding: Array(h.encoded.dropLast())) }
    }

    @Test func base64URLIsCanonical() {
        for n in 0..<40 {
            let bytes = (0..<n).map { UInt8(truncatingIfNeeded: $0 * 37 + 11) }
            let s = Base64URL.encode(bytes)
            #expect(!s.contains("=") && !s.contains("+") && !s.contains("/") && !s.contains("."))
            #expect(Base64URL.decode(s) == bytes)
        }
        #expect(Base64URL.encode(Array("foobar".utf8)) == "Zm9vYmFy")
        #expect(Base64URL.encode([0xfb, 0xff]) == "-_8")
        #expect(Base64URL.decode("Zg") == Array("f".utf8))
        #expect(Base64URL.decode("Zh") == nil)  // non-zero trailing bits
        #expect(Base64URL.decode("Z") == nil)
        #expect(Base64URL.decode("a.b") == nil)
    }

    func worker() throws -> CryptoWorker {
        try CryptoWorker(keys: StoreKeys(master: try SecureBytes.random(count: 32)))
    }

    @Test func namesRoundTripAndBindToDirectory() throws {
        let w = try worker()
        let iv1 = [UInt8](repeating: 1, count: 16), iv2 = [UInt8](repeating: 2, count: 16)
        for name in ["a", "hello.txt", String(repeating: "x", count: 255), "ünïcödé ✓", ".hidden", "..."] {
            let bytes = Array(name.utf8)
            let enc = try w.encryptName(bytes, dirIV: iv1)
            #expect(try w.encryptName(bytes, dirIV: iv1) == enc, "deterministic")
            #expect(try w.encryptName(bytes, dirIV: iv2) != enc, "per directory")
            #expect(try w.decryptName(enc, dirIV: iv1) == bytes)
            #expect(throws: FormatError.self) { try w.decryptName(enc, dirIV: iv2) }
            #expect(!BackingNames.isInternal(enc))
        }
        #expect(try w.decryptName(try w.encryptName([0xff, 0xfe], dirIV: iv1), dirIV: iv1) == [0xff, 0xfe])
        #expect(throws: FormatError.self) { try w.encryptName(Array(repeating: 0x61, count: 256), dirIV: iv1) }
        #expect(throws: FormatError.self) { try w.encryptName(Array("a/b".utf8), dirIV: iv1) }
        #expect(throws: FormatError.self) { try w.decryptName("elastic.conf", dirIV: iv1) }
    }

    @Test func longNamesUseAHashedFormAndSidecar() throws {
        let w = try worker()
        let enc = try w.encryptName(Array(repeating: 0x61, count: 255), dirIV: Array(repeating: 0, count: 16))
        #expect(enc.utf8.count > 255)
        let b = BackingNames.backingName(forEncoded: enc)
        #expect(
            b.isLong && b.name.utf8.count < 100 && BackingNames.isLongName(b.name) && BackingNames.isInternal(b.name))
        #expect(!BackingNames.isLongName(BackingNames.sidecar(of: b.name)))
        let short = BackingNames.backingName(forEncoded: "abc")
        #expect(!short.isLong && short.name == "abc")
    }

    @Test func blocksRoundTripAndBindFileAndIndex() throws {
        let w = try worker()
        let plain = (0..<10000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        let id1 = [UInt8](repeating: 9, count: 16), id2 = [UInt8](repeating: 8, count: 16)
        var cipher = [UInt8](repeating: 0, count: Int(BlockLayout.ciphertextSize(plain: 10000)))
        let n = try id1.withUnsafeBytes { id in
            try plain.withUnsafeBytes { p in
                try cipher.withUnsafeMutableBytes { c in
                    try w.sealBlocks(
                        fileID: id, first: 5, plaintext: p.baseAddress!, count: p.count, output: c.baseAddress!)
                }
            }
        }
        #expect(n == Int(BlockLayout.ciphertextSize(plain: 10000) - BlockLayout.headerSize))
        func open(_ id: [UInt8], _ index: Int64, _ block: Int) throws -> [UInt8] {
            let start = block * 4124, len = min(4124, n - start)
            var out = [UInt8](repeating: 0, count: 4096)
            let got = try id.withUnsafeBytes { i in
                try cipher.withUnsafeBytes { c in
                    try out.withUnsafeMutableBytes { o in
                        try w.openBlock(
                            fileID: i, index: index, cipher: c.baseAddress! + start, length: len, output: o.baseAddress!
                        )
                    }
                }
            }
            return Array(out[0..<got])
        }
        #expect(try open(id1, 5, 0) == Array(plain[0..<4096]))
        #expect(try open(id1, 7, 2) == Array(plain[8192...]))
        #expect(throws: FormatError.authenticationFailed(block: 6)) { try open(id1, 6, 0) }  // moved block
        #expect(throws: FormatError.authenticationFailed(block: 5)) { try open(id2, 5, 0) }  // other file
        cipher[100] ^= 0x80
        #expect(throws: FormatError.authenticationFailed(block: 5)) { try open(id1, 5, 0) }  // flipped bit
        // A hole (all-zero block) reads as zeros.
        var zeros = [UInt8](repeating: 0, count: 4124)
        var out = [UInt8](repeating: 1, count: 4096)
        let got = try id1.withUnsafeBytes { i in
            try zeros.withUnsafeMutableBytes { z in
                try out.withUnsafeMutableBytes { o in
                    try w.openBlock(fileID: i, index: 0, cipher: z.baseAddress!, length: 4124, output: o.baseAddress!)
                }
            }
        }
        #expect(got == 4096 && out.allSatisfy { $0 == 0 })
    }
}
