import ElasticCrypto
import ElasticSystem
import Foundation
import Testing

@testable import ElasticFormat

@Suite struct KeyStoreFileTests {
    func backing() -> String {
        let p = NSTemporaryDirectory() + "elastic-keys-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
        return p
    }

    func stored(_ name: String, _ bytes: [UInt8]) -> StoredKey {
        var b = bytes
        return StoredKey(
            name: name, owner: 1000, type: 1, flags: 1, created: 1_800_000_000, material: SecureBytes(consuming: &b))
    }

    @Test func roundTripAndAuthentication() throws {
        let dir = backing()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let keys = try StoreKeys(master: try SecureBytes.random(count: 32))
        let file = try KeyStoreFile(directory: Syscall.openDirectory(dir), keys: keys, root: nil)
        #expect(try file.load().isEmpty, "no file yet: no keys")
        try file.save([stored("a", [1, 2, 3]), stored("b", [UInt8](repeating: 9, count: 2400))])
        let loaded = try file.load()
        #expect(loaded.map(\.name) == ["a", "b"] && loaded[0].owner == 1000 && loaded[0].created == 1_800_000_000)
        #expect(loaded[1].material == stored("b", [UInt8](repeating: 9, count: 2400)).material)
        let path = dir + "/" + BackingNames.keyStore
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        #expect(!bytes.contains([9, 9, 9, 9, 9, 9, 9, 9]), "no key material in the clear")
        for i in stride(from: 0, to: bytes.count, by: 97) {
            var edited = bytes
            edited[i] ^= 0x01
            try Data(edited).write(to: URL(fileURLWithPath: path))
            #expect(throws: FormatError.self) { try file.load() }
        }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let other = try KeyStoreFile(
            directory: Syscall.openDirectory(dir), keys: try StoreKeys(master: try SecureBytes.random(count: 32)),
            root: nil)
        #expect(throws: FormatError.self) { try other.load() }
    }
}
