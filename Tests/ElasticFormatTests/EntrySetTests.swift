import ElasticCrypto
import ElasticSystem
import Foundation
import Testing

@testable import ElasticFormat

/// Directory entry sets: the digest, the sealed state and its size, and what a scan counts.
@Suite struct EntrySetUnitTests {
    let crypto: CryptoWorker

    init() throws { crypto = try CryptoWorker(keys: StoreKeys(master: try SecureBytes.random(count: 32))) }

    func id(_ b: UInt8) -> ObjectID { ObjectID([UInt8](repeating: b, count: 16)) }

    @Test func sizesArePinned() {
        #expect(EntrySetState.plainSize == 88)
        #expect(EntrySetState.sealedSize == 116)
        #expect(DirectoryIV.fileSize == 272)
        #expect(ObjectID([UInt8](0..<16)).bytes == [UInt8](0..<16))
    }

    /// An entry's hash and an attribute's term, as docs/file-format.md defines them.
    @Test func hashesAreTheDocumentedHMACs() throws {
        let iv = [UInt8](0..<16), oid = ObjectID([UInt8](100..<116)), name = "entry-é"
        let n = Array(name.utf8)
        #expect(
            try EntryDigest.hash(name: name, id: oid, dirIV: iv, with: crypto)
                == KDF.hmacSHA256(key: crypto.keys.entries, data: iv + [0, UInt8(n.count)] + n + Array(100..<116)))
        let tag = BlockTag(0x0102_0304_0506_0708, 0x1112_1314_1516_1718)
        let mac = try KDF.hmacSHA256(
            key: crypto.keys.xattrs, data: [0, UInt8(n.count)] + n + withUnsafeBytes(of: tag) { Array($0) })
        #expect(try XattrSet.term(name, tag, crypto) == mac.withUnsafeBytes { $0.loadUnaligned(as: BlockTag.self) })
    }

    @Test func digestIsOrderFreeAndBindsNameIDAndDirectory() throws {
        let iv = [UInt8](repeating: 1, count: 16)
        let a = try EntryDigest.of(["x": id(1), "y": id(2)], dirIV: iv, with: crypto)
        var b = EntryDigest.empty
        b.add(try EntryDigest.hash(name: "y", id: id(2), dirIV: iv, with: crypto))
        b.add(try EntryDigest.hash(name: "x", id: id(1), dirIV: iv, with: crypto))
        #expect(a == b && a.count == 2)
        // Swapped objects, another directory, a removed entry: all different.
        #expect(try EntryDigest.of(["x": id(2), "y": id(1)], dirIV: iv, with: crypto) != a)
        #expect(
            try EntryDigest.of(["x": id(1), "y": id(2)], dirIV: [UInt8](repeating: 2, count: 16), with: crypto) != a)
        b.remove(try EntryDigest.hash(name: "y", id: id(2), dirIV: iv, with: crypto))
        #expect(b == (try EntryDigest.of(["x": id(1)], dirIV: iv, with: crypto)))
    }

    @Test func stateSealsBoundToItsDirectory() throws {
        let iv = [UInt8](repeating: 3, count: 16)
        let committed = try EntryDigest.of(["n": id(4)], dirIV: iv, with: crypto)
        let state = EntrySetState(committed: committed, pending: .empty)
        let sealed = try state.seal(dirIV: iv, with: crypto)
        #expect(sealed.count == EntrySetState.sealedSize)
        #expect(try EntrySetState.open(sealed, dirIV: iv, with: crypto) == state)
        #expect(throws: FormatError.self) {
            try EntrySetState.open(sealed, dirIV: [UInt8](repeating: 4, count: 16), with: crypto)
        }
        var flipped = sealed
        flipped[40] ^= 1
        #expect(throws: FormatError.self) { try EntrySetState.open(flipped, dirIV: iv, with: crypto) }
        #expect(state.accepts(committed) && state.accepts(.empty))
        #expect(!EntrySetState(committed: committed).accepts(.empty))
    }

    @Test func scanCountsEntriesNotOwnFiles() throws {
        let dir = NSTemporaryDirectory() + "elastic-scan-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir + "/sub", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let d = try Syscall.openDirectory(dir)
        let sub = try Syscall.openat(d.fd, "sub", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        defer { Syscall.close(sub) }
        let subIV = try DirectoryIV.create(
            in: sub, record: ObjectRecord(kind: .directory, mode: 0o700, uid: 0, gid: 0), with: crypto)
        let header = try FileHeader.new(ObjectRecord(kind: .regular, mode: 0o600, uid: 0, gid: 0))
        try Data(try header.encode(with: crypto)).write(to: URL(fileURLWithPath: dir + "/file"))
        try Data([1]).write(to: URL(fileURLWithPath: dir + "/elastic.new.0011223344556677"))
        try Data([1]).write(to: URL(fileURLWithPath: dir + "/elastic.conf"))
        try Data([1, 2]).write(to: URL(fileURLWithPath: dir + "/noheader"))
        let found = try EntryScan.scan(d.fd)
        #expect(found.ids == ["sub": ObjectID(subIV), "file": ObjectID(header.fileID)])
        #expect(found.unreadable.map(\.name) == ["noheader"])
        #expect(found.leftovers == ["elastic.new.0011223344556677"])
        EntryScan.removeLeftover(d.fd, found.leftovers[0])
        #expect(try EntryScan.scan(d.fd).leftovers.isEmpty)
    }
}
