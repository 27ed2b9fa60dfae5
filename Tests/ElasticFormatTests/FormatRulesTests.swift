import ElasticCrypto
import ElasticFormat
import ElasticSystem
import Foundation
import Glibc
import Testing

/// The format rules that live in ElasticFormat: block-format dispatch, symlink and xattr
/// codecs, directory IVs and long-name sidecars, each against hostile input.
@Suite struct FormatRulesTests {
    func worker() throws -> CryptoWorker { try CryptoWorker(keys: StoreKeys(master: SecureBytes.random(count: 32))) }

    /// A fresh directory, opened; removed when the test ends (`defer { remove(path) }`).
    func scratchDirectory() throws -> (dir: OpenDirectory, path: String) {
        var template = Array("/tmp/elastic-format.XXXXXX".utf8CString)
        guard let p = mkdtemp(&template) else { throw Errno(rawValue: errno) }
        let path = String(cString: p)
        return (try Syscall.openDirectory(path), path)
    }

    func remove(_ path: String) { try? FileManager.default.removeItem(atPath: path) }

    @Test func readersDispatchOnTheHeadersBlockFormatVersion() throws {
        let w = try worker()
        let h = try FileHeader.new(ObjectRecord(kind: .regular, mode: 0o644, uid: 0, gid: 0))
        let bytes = try h.encode(with: w)
        #expect(try FileHeader(decoding: bytes, with: w) == h)
        #expect(try BlockFormat.forVersion(2) == .v2)
        var newer = bytes
        newer[5] = 3
        #expect {
            try FileHeader(decoding: newer, with: w)
        } throws: { ($0 as? FormatError).map { "\($0)".contains("block format version 3") } ?? false }
        #expect(throws: FormatError.self) { try BlockFormat.forVersion(0) }
    }

    /// Version 1 symlink targets, as `elastic migrate` reads them: inline (base64url of the
    /// sealed target) or a reference into elastic.links.
    @Test func version1SymlinkTargetsAreReadAndHostileOnesRefused() throws {
        let w = try worker()
        let short = Array("../some/where".utf8)
        let sealed = try w.sealMetadata(short, context: Array(KeyLabels.symlink.utf8))
        guard case .inline(let raw) = try SymlinkCodec.reference(backingTarget: Base64URL.encode(sealed)) else {
            Issue.record("inline")
            return
        }
        #expect(try SymlinkCodec.open(raw, with: w) == short)
        let id = String(repeating: "0123456789abcdef", count: 2)
        #expect(try SymlinkCodec.reference(backingTarget: BackingNames.longLinkPrefix + id) == .long(id: id))
        // Hostile backing targets: not base64url, a long-link reference that is not 16 hex bytes.
        for bad in ["not base64!", BackingNames.longLinkPrefix + "../../etc", BackingNames.longLinkPrefix] {
            #expect(throws: FormatError.self) { try SymlinkCodec.reference(backingTarget: bad) }
        }
        // Another store's (or another context's) sealed bytes do not open.
        #expect(throws: FormatError.self) { try SymlinkCodec.open(sealed, with: try worker()) }
        let otherContext = try w.sealMetadata(short, context: Array("elsewhere".utf8))
        #expect(throws: FormatError.self) { try SymlinkCodec.open(otherContext, with: w) }
    }

    @Test func xattrNamesAndValuesAreBoundTogether() throws {
        let w = try worker()
        #expect(try XattrCodec.backingName(Array("trusted.x".utf8), with: w) == nil, "only user.*")
        let a = try #require(try XattrCodec.backingName(Array("user.a".utf8), with: w))
        let b = try #require(try XattrCodec.backingName(Array("user.b".utf8), with: w))
        #expect(XattrCodec.name(backingName: Array(a.utf8)[...], with: w) == Array("user.a".utf8))
        #expect(XattrCodec.name(backingName: Array("user.plain".utf8)[...], with: w) == nil, "not ours")
        let sealed = try XattrCodec.sealValue(Array("v".utf8), backingName: a, with: w)
        #expect(try XattrCodec.openValue(sealed, backingName: a, with: w) == Array("v".utf8))
        #expect(throws: FormatError.self) { try XattrCodec.openValue(sealed, backingName: b, with: w) }
    }

    @Test func directoryIVsAreCheckedAndRemovedOnlyFromEmptyDirectories() throws {
        let (dir, path) = try scratchDirectory()
        defer { remove(path) }
        let d = dir.fd
        let w = try worker()
        let record = ObjectRecord(kind: .directory, mode: 0o2775, uid: 5, gid: 6)
        try DirectoryIV.create(in: d, record: record, with: w)
        let iv = try DirectoryIV.read(from: d)
        #expect(iv.count == DirectoryIV.size)
        #expect(try DirectoryIV.readRecord(from: d, with: w) == (iv, record))
        var changed = record
        changed.mode = 0o700
        try DirectoryIV.writeRecord(changed, iv: iv, in: d, with: w)
        #expect(try DirectoryIV.readRecord(from: d, with: w).record == changed)
        #expect(throws: FormatError.self) { try DirectoryIV.readRecord(from: d, with: try worker()) }  // other keys
        try Syscall.writeFileAtomically(d, "x", [1], mode: 0o600)
        #expect(throws: FormatError.directoryNotEmpty) { try DirectoryIV.removeFromEmptyDirectory(d) }
        #expect(try DirectoryIV.read(from: d) == iv, "nothing changed")
        try Syscall.unlinkat(d, "x", 0)
        let saved = try #require(try DirectoryIV.removeFromEmptyDirectory(d))
        #expect(Array(saved.prefix(DirectoryIV.size)) == iv)
        #expect(throws: (any Error).self) { try DirectoryIV.read(from: d) }
        DirectoryIV.restore(saved, in: d)
        #expect(try DirectoryIV.readRecord(from: d, with: w) == (iv, changed))
        // Planted by the host: a wrong size, or a FIFO instead of a file.
        _ = try Syscall.unlinkat(d, DirectoryIV.fileName, 0)
        try Syscall.writeFileAtomically(d, DirectoryIV.fileName, [1, 2, 3], mode: 0o400)
        #expect(throws: FormatError.self) { try DirectoryIV.read(from: d) }
        _ = try Syscall.unlinkat(d, DirectoryIV.fileName, 0)
        #expect(mkfifoat(d, DirectoryIV.fileName, 0o600) == 0)
        #expect(throws: FormatError.self) { try DirectoryIV.read(from: d) }
    }

    @Test func longNameSidecarsMustHashToTheirEntry() throws {
        let (dir, path) = try scratchDirectory()
        defer { remove(path) }
        let d = dir.fd
        let encoded = String(repeating: "A", count: 300)
        let b = BackingNames.backingName(forEncoded: encoded)
        #expect(b.isLong)
        try LongNameSidecar.write(d, backingName: b.name, encoded: encoded, isLong: true)
        #expect(LongNameSidecar.encodedName(d, backingName: b.name) == .success(encoded))
        // The host swaps in another name's sidecar.
        let other = BackingNames.backingName(forEncoded: String(repeating: "B", count: 300))
        try Syscall.writeFileAtomically(d, BackingNames.sidecar(of: other.name), Array(encoded.utf8), mode: 0o400)
        #expect(LongNameSidecar.encodedName(d, backingName: other.name) == .failure(.mismatch))
        LongNameSidecar.remove(d, backingName: b.name, isLong: true)
        #expect(LongNameSidecar.encodedName(d, backingName: b.name) == .failure(.missing))
    }
}
