import ElasticCrypto
import ElasticSystem
import Foundation
import Testing

@testable import ElasticFormat

/// `elastic.root`: its encoding, and how it names the current versions of the store-wide files.
@Suite struct StoreRootTests {
    let secret = [UInt8](repeating: 9, count: 32)
    let slot = KeySlot.Kind.keyFile(salt: Array(repeating: 2, count: 32))

    func tempDir() -> String {
        let p = NSTemporaryDirectory() + "elastic-root-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
        return p
    }

    func file(_ dir: String, _ name: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: URL(fileURLWithPath: dir + "/" + name)))
    }

    func put(_ dir: String, _ name: String, _ bytes: [UInt8]) throws {
        let path = dir + "/" + name
        try? FileManager.default.removeItem(atPath: path)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    @Test func rootRoundTripsAndIsBoundToItsStore() throws {
        let key = try SecureBytes.random(count: 32)
        var root = StoreRoot(counter: 7, configDigest: StoreRoot.digest([1]), keyStoreDigest: StoreRoot.absent)
        root.previousKeyStoreDigest = StoreRoot.digest([2])
        root.witness = .init(spec: "tpm:0x1500016", value: 42)
        let id = [UInt8](repeating: 5, count: 16)
        let bytes = try root.encode(key: key, storeID: id)
        #expect(try StoreRoot(decoding: bytes, key: key, storeID: id) == root)
        #expect(throws: FormatError.self) {
            try StoreRoot(decoding: bytes, key: key, storeID: [UInt8](repeating: 6, count: 16))
        }
        var flipped = bytes
        flipped[20] ^= 1
        #expect(throws: FormatError.self) { try StoreRoot(decoding: flipped, key: key, storeID: id) }
    }

    @Test func olderKeyStoreOrConfigIsRefused() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try Store.create(backing: dir, kind: slot, secret: secret)
        let keyStore = store.keyStoreFile()
        let material = try SecureBytes.random(count: 32)
        try keyStore.save([StoredKey(name: "a", owner: 0, type: 1, flags: 0, created: 1, material: material)])
        let oldKeys = try file(dir, BackingNames.keyStore)
        try keyStore.save([])
        #expect(try keyStore.load().isEmpty)
        let newKeys = try file(dir, BackingNames.keyStore)
        try put(dir, BackingNames.keyStore, oldKeys)
        #expect { _ = try keyStore.load() } throws: { isIntegrity($0) }
        // Nothing is changed on top of a store whose key store was put back.
        #expect { try store.addSlot(kind: .keyFile(salt: Array(repeating: 3, count: 32)), secret: secret) } throws: {
            isIntegrity($0)
        }
        try put(dir, BackingNames.keyStore, newKeys)

        let oldConfig = try file(dir, BackingNames.config)
        try store.addSlot(kind: .keyFile(salt: Array(repeating: 3, count: 32)), secret: secret)
        try put(dir, BackingNames.config, oldConfig)
        #expect { _ = try Store.unlock(backing: dir, secret: .keyFile(secret)) } throws: { isIntegrity($0) }
    }

    @Test func rootPutBackWhileOpenIsRefused() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try Store.create(backing: dir, kind: slot, secret: secret)
        let oldRoot = try file(dir, BackingNames.root), oldConfig = try file(dir, BackingNames.config)
        try store.addSlot(kind: .keyFile(salt: Array(repeating: 3, count: 32)), secret: secret)
        // Root and configuration put back together: consistent, but older than this process saw.
        try put(dir, BackingNames.root, oldRoot)
        try put(dir, BackingNames.config, oldConfig)
        #expect { try store.addSlot(kind: .keyFile(salt: Array(repeating: 4, count: 32)), secret: secret) } throws: {
            isIntegrity($0)
        }
    }

    /// An upgrade to roots interrupted between the root and the configuration still opens.
    @Test func interruptedUpgradeToRootsStillOpens() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try Store.create(backing: dir, kind: slot, secret: secret)
        var legacy = store.config
        legacy.features.remove(.storeRoot)
        legacy.version = 1
        let legacyBytes = try legacy.encode(keys: store.keys)
        var upgraded = legacy
        upgraded.features.insert(.storeRoot)
        // The root of the upgrade is written; the crash comes before the configuration is.
        try FileManager.default.removeItem(atPath: dir + "/" + BackingNames.root)
        try put(dir, BackingNames.config, legacyBytes)
        let keeper = StoreRootKeeper(
            directory: try Syscall.openDirectory(dir), storeID: legacy.storeID, keys: store.keys)
        try keeper.create(
            configBytes: try upgraded.encode(keys: store.keys), keyStoreBytes: nil, replacing: legacyBytes)
        let opened = try Store.unlock(backing: dir, secret: .keyFile(secret), migrating: true)
        #expect(try opened.upgradeToRoot())
        #expect(
            try Store.unlock(backing: dir, secret: .keyFile(secret), migrating: true).config.features.contains(
                .storeRoot))
    }

    /// A change interrupted between its writes leaves a store that opens, with the old or the
    /// new file, and the next change settles the root.
    @Test func interruptedChangeStillOpens() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try Store.create(backing: dir, kind: slot, secret: secret)
        struct Crash: Error {}
        let config = try file(dir, BackingNames.config)
        #expect(throws: Crash.self) {
            try store.root.exclusive { try store.root.change(.config, to: [1, 2, 3]) { throw Crash() } }
        }
        let reopened = try Store.unlock(backing: dir, secret: .keyFile(secret))
        #expect(try file(dir, BackingNames.config) == config)
        try reopened.addSlot(kind: .keyFile(salt: Array(repeating: 3, count: 32)), secret: secret)
        let root = try #require(try reopened.root.read())
        #expect(root.previousConfigDigest == nil)
        #expect(root.configDigest == StoreRoot.digest(try file(dir, BackingNames.config)))
    }

    @Test func storeFromBeforeRootsIsUpgradedAndAnOldConfigurationIsThenRefused() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try Store.create(backing: dir, kind: slot, secret: secret)
        var legacy = store.config  // a version 1 store from before roots
        legacy.features.remove(.storeRoot)
        legacy.version = 1
        let legacyBytes = try legacy.encode(keys: store.keys)
        try put(dir, BackingNames.config, legacyBytes)
        try FileManager.default.removeItem(atPath: dir + "/" + BackingNames.root)
        #expect(throws: FormatError.needsMigration(dir)) { try Store.unlock(backing: dir, secret: .keyFile(secret)) }
        let opened = try Store.unlock(backing: dir, secret: .keyFile(secret), migrating: true)
        #expect(try opened.upgradeToRoot())
        #expect(opened.config.features.contains(.storeRoot))
        #expect(try !opened.upgradeToRoot())
        // The configuration from before the upgrade, put back: refused.
        try put(dir, BackingNames.config, legacyBytes)
        #expect { _ = try Store.unlock(backing: dir, secret: .keyFile(secret), migrating: true) } throws: {
            isIntegrity($0)
        }
        // A v2 configuration without the root's flag never existed: refused.
        var flagless = store.config
        flagless.features.remove(.storeRoot)
        try put(dir, BackingNames.config, try flagless.encode(keys: store.keys))
        #expect { _ = try Store.unlock(backing: dir, secret: .keyFile(secret)) } throws: { isIntegrity($0) }
    }

    @Test func fileWitnessDetectsWholeStoreRollback() throws {
        let dir = tempDir(), wdir = tempDir()
        defer {
            try? FileManager.default.removeItem(atPath: dir)
            try? FileManager.default.removeItem(atPath: wdir)
        }
        chmod(wdir, 0o700)
        let spec = "file:" + wdir + "/witness"
        let store = try Store.create(backing: dir, kind: slot, secret: secret)
        #expect(try store.root.bindWitness(requested: spec, readOnly: false) == .bound(spec: spec, value: 2))
        let snapshot = try [BackingNames.root, BackingNames.config].map { ($0, try file(dir, $0)) }
        try store.addSlot(kind: .keyFile(salt: Array(repeating: 3, count: 32)), secret: secret)
        let current = try Store.unlock(backing: dir, secret: .keyFile(secret))
        #expect(try current.root.bindWitness(requested: nil, readOnly: true) == .verified(spec: spec, value: 4))
        for (name, bytes) in snapshot { try put(dir, name, bytes) }
        let rolledBack = try Store.unlock(backing: dir, secret: .keyFile(secret))
        #expect { _ = try rolledBack.root.bindWitness(requested: nil, readOnly: true) } throws: { isIntegrity($0) }
        #expect {
            try rolledBack.addSlot(kind: .keyFile(salt: Array(repeating: 4, count: 32)), secret: secret)
        } throws: {
            isIntegrity($0)
        }
        // Another witness than the one the store is bound to: refused.
        #expect { _ = try current.root.bindWitness(requested: "file:" + wdir + "/other", readOnly: true) } throws: {
            isIntegrity($0)
        }
        // A witness others may write is refused.
        chmod(wdir + "/witness", 0o666)
        #expect { _ = try current.root.bindWitness(requested: nil, readOnly: true) } throws: { isIntegrity($0) }
    }
}

func isIntegrity(_ e: any Error) -> Bool {
    if case FormatError.integrity = e { return true }
    return false
}
