import ElasticCrypto
import Glibc
import Testing

@testable import ElasticFormat

@Suite struct EncodingTests {
    @Test func fileHeaderBytesAndItsRecord() throws {
        let w = try CryptoWorker(keys: StoreKeys(master: SecureBytes.random(count: 32)))
        let record = ObjectRecord(kind: .regular, mode: 0o4755, uid: 1000, gid: 100, size: 12345)
        let h = FileHeader(fileID: Array(1...16), record: record)
        let bytes = try h.encode(with: w)
        #expect(bytes.count == 164 && FileHeader.size == 164)
        #expect(Array(bytes[0..<24]) == Array("ELFB".utf8) + [0, 2, 0, 0] + Array(1...16))
        #expect(try FileHeader(decoding: bytes, with: w) == h)
        for i in [0, 5, 6, 10, 24, 40, 115] {  // magic, version, reserved, file ID, nonce, record, tag
            var bad = bytes
            bad[i] ^= 1
            #expect(throws: FormatError.self, "byte \(i)") { try FileHeader(decoding: bad, with: w) }
        }
        #expect(throws: FormatError.self) { try FileHeader(decoding: Array(bytes.dropLast()), with: w) }
        // Another file's record cannot be moved onto this file ID.
        let other = try FileHeader(fileID: Array(repeating: 9, count: 16), record: record).encode(with: w)
        #expect(throws: FormatError.self) {
            try FileHeader(decoding: Array(bytes[0..<24]) + Array(other[24...]), with: w)
        }
        // A v1 header: read only for migration.
        let v1 = Array("ELFB".utf8) + [0, 1, 0, 0] + Array(1...16)
        #expect(try FileHeader.v1FileID(v1) == Array(1...16))
        #expect(throws: FormatError.self) { try FileHeader(decoding: v1, with: w) }
    }

    /// The record's plaintext, byte for byte as docs/file-format.md lays it out.
    @Test func recordPlaintextLayout() throws {
        var r = ObjectRecord(kind: .regular, mode: 0o4755, uid: 0x0102_0304, gid: 0x0506_0708, size: 0x1122_3344_5566)
        r.sparse = true
        r.mtime = timespec(tv_sec: 0x0A0B_0C0D, tv_nsec: 999_999_999)
        r.ctime = timespec(tv_sec: -2, tv_nsec: 7)
        r.content = BlockTag(0x0102_0304_0506_0708, 0x1112_1314_1516_1718)
        r.xattrs = BlockTag(1, 2)
        r.xattrsPending = BlockTag(3, 4)  // not written: no change under way
        r.session = 0xABCD
        let b = r.encoded
        func be(_ v: UInt64, _ n: Int) -> [UInt8] {
            (0..<n).map { UInt8(truncatingIfNeeded: v >> UInt64(8 * (n - 1 - $0))) }
        }
        func mem(_ t: BlockTag) -> [UInt8] { withUnsafeBytes(of: t) { Array($0) } }
        let expected: [UInt8] =
            [2, 1] + be(1, 2) + be(0o4755, 4) + be(0x0102_0304, 4) + be(0x0506_0708, 4) + be(0, 8)
            + be(0x1122_3344_5566, 8) + be(0x0A0B_0C0D, 8) + be(999_999_999, 4)
            + be(UInt64(bitPattern: -2), 8) + be(7, 4) + mem(r.content) + mem(r.xattrs)
            + [UInt8](repeating: 0, count: 16)
            + be(0xABCD, 8)
        #expect(b.count == ObjectRecord.plainSize && b == expected)
        #expect(
            try ObjectRecord(decoding: b)
                == {
                    var x = r
                    x.xattrsPending = .zero
                    return x
                }())
        r.xattrsChanging = true
        let changing = r.encoded
        #expect(changing[2...3] == [0, 5] && Array(changing[88..<104]) == mem(r.xattrsPending))
        #expect(try ObjectRecord(decoding: changing) == r)
    }

    @Test func recordsRefuseImpossibleValues() throws {
        let w = try CryptoWorker(keys: StoreKeys(master: SecureBytes.random(count: 32)))
        let id = [UInt8](repeating: 3, count: 16)
        var r = ObjectRecord(kind: .characterDevice, mode: 0o666, uid: 0, gid: 0, rdev: 0x0103)
        #expect(try ObjectRecord.open(r.seal(objectID: id, with: w), objectID: id, with: w) == r)
        #expect(r.statMode == S_IFCHR | 0o666)
        r.size = 10  // only regular files have a size
        #expect(throws: FormatError.self) {
            try ObjectRecord.open(r.seal(objectID: id, with: w), objectID: id, with: w)
        }
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
                            fileID: i, index: index, cipher: c.baseAddress! + start, length: len,
                            output: o.baseAddress!,
                            holes: false)
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
        // An all-zero block reads as zeros in a file that may hold holes, and fails in any other.
        var zeros = [UInt8](repeating: 0, count: 4124)
        var out = [UInt8](repeating: 1, count: 4096)
        let openZeros = { (holes: Bool) throws -> Int in
            try id1.withUnsafeBytes { i in
                try zeros.withUnsafeMutableBytes { z in
                    try out.withUnsafeMutableBytes { o in
                        try w.openBlock(
                            fileID: i, index: 0, cipher: z.baseAddress!, length: 4124, output: o.baseAddress!,
                            holes: holes)
                    }
                }
            }
        }
        #expect(try openZeros(true) == 4096 && out.allSatisfy { $0 == 0 })
        #expect(throws: FormatError.authenticationFailed(block: 0)) { try openZeros(false) }
    }

    /// An attribute change under way: the record accepts the digest before it and the one it
    /// will give, and no other; the pending digest is sealed with the record.
    @Test func anAttributeChangeUnderWayAcceptsExactlyTwoSets() throws {
        let w = try CryptoWorker(keys: StoreKeys(master: SecureBytes.random(count: 32)))
        var before = XattrSet()
        try before.set("user.a", sealed: [UInt8](repeating: 1, count: 40), with: w)
        var after = before
        try after.set("user.a", sealed: [UInt8](repeating: 2, count: 40), with: w)
        var other = before
        try other.set("user.b", sealed: [UInt8](repeating: 3, count: 40), with: w)
        var r = ObjectRecord(kind: .regular, mode: 0o600, uid: 0, gid: 0)
        r.xattrs = before.digest
        #expect(before.isNamed(by: r) && !after.isNamed(by: r))
        r.xattrsChanging = true
        r.xattrsPending = after.digest
        let id = [UInt8](repeating: 5, count: 16)
        let reopened = try ObjectRecord.open(r.seal(objectID: id, with: w), objectID: id, with: w)
        #expect(reopened == r)
        #expect(before.isNamed(by: reopened) && after.isNamed(by: reopened) && !other.isNamed(by: reopened))
    }
}
