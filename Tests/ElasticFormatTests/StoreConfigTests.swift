import ElasticCrypto
import Foundation
import Testing

@testable import ElasticFormat

@Suite struct StoreConfigTests {
    func tempDir() -> String {
        let p = NSTemporaryDirectory() + "elastic-cfg-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
        return p
    }

    let secret = [UInt8](repeating: 7, count: 32)

    @Test func configEncodingIsStableAndParses() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try Store.create(backing: dir, kind: .keyFile(salt: Array(repeating: 1, count: 32)), secret: secret)
        let bytes = try store.config.encode(keys: store.keys)
        #expect(Array(bytes[0..<8]) == Array("ELASTIC\0".utf8))
        #expect(bytes[8] == 0 && bytes[9] == 2)  // version 2
        #expect(Array(bytes[10..<14]) == [0, 0, 0, 15])  // feature flags
        #expect(Array(bytes[14..<18]) == [0, 0, 0x10, 0])  // block size 4096
        #expect(bytes[34] == 1)  // one slot
        // 35 + slot (8 id + 1 kind + 2 len + 32 params + 60 wrapped) + 32 MAC
        #expect(bytes.count == 35 + 8 + 1 + 2 + 32 + 60 + 32)
        let parsed = try StoreConfig.parse(bytes)
        #expect(parsed == store.config)
        try StoreConfig.verifyMAC(bytes, keys: store.keys)
    }

    @Test func unlockWithRightAndWrongKey() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let created = try Store.create(backing: dir, kind: .keyFile(salt: try Random.bytes(32)), secret: secret)
        let opened = try Store.unlock(backing: dir, secret: .keyFile(secret))
        #expect(opened.master! == created.master!)
        #expect(throws: FormatError.self) {
            try Store.unlock(backing: dir, secret: .keyFile(Array(repeating: 8, count: 32)))
        }
        #expect(throws: FormatError.self) { try Store.unlock(backing: dir, secret: .passphrase(Array("x".utf8))) }
    }

    @Test func everyEditedByteIsRefused() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = try Store.create(backing: dir, kind: .keyFile(salt: try Random.bytes(32)), secret: secret)
        let path = dir + "/elastic.conf"
        let original = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        for i in 0..<original.count {
            var edited = original
            edited[i] ^= 0x01
            try FileManager.default.removeItem(atPath: path)
            try Data(edited).write(to: URL(fileURLWithPath: path))
            #expect(throws: (any Error).self, "byte \(i)") { try Store.unlock(backing: dir, secret: .keyFile(secret)) }
        }
    }

    @Test func unknownFeatureFlagIsRefusedBeforeAnyKeyIsTried() throws {
        var config = StoreConfig(
            storeID: Array(repeating: 0, count: 16),
            slots: [
                KeySlot(
                    id: Array(repeating: 0, count: 8), kind: .keyFile(salt: Array(repeating: 0, count: 32)),
                    wrapped: Array(repeating: 0, count: 60))
            ])
        config.features.insert(StoreConfig.Features(rawValue: 1 << 9))
        let bytes = config.encodeBody() + Array(repeating: 0, count: 32)
        #expect(throws: FormatError.unknownFeatureFlags(1 << 9)) { try StoreConfig.parse(bytes) }
        var newer = config
        newer.features = .known
        newer.version = 3
        #expect(throws: FormatError.unsupportedVersion(3)) {
            try StoreConfig.parse(newer.encodeBody() + Array(repeating: 0, count: 32))
        }
    }

    @Test func slotsAddListRemove() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try Store.create(backing: dir, kind: .keyFile(salt: try Random.bytes(32)), secret: secret)
        let pass = Array("correct horse".utf8)
        let slot = try store.addSlot(kind: .passphrase(salt: try Random.bytes(32), logN: 10, r: 8, p: 1), secret: pass)
        #expect(try Store.unlock(backing: dir, secret: .passphrase(pass)).master! == store.master!)
        #expect(try Store.readConfig(backing: dir).0.slots.count == 2)
        _ = try store.removeSlot(idPrefix: store.config.slots[0].idHex)
        #expect(throws: FormatError.self) { try Store.unlock(backing: dir, secret: .keyFile(secret)) }
        #expect(try Store.unlock(backing: dir, secret: .passphrase(pass)).master! == store.master!)
        #expect(throws: FormatError.self) { try store.removeSlot(idPrefix: slot.idHex) }  // the last one
    }
}
