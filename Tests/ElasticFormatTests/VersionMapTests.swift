import ElasticCrypto
import Testing

@testable import ElasticFormat

/// The versions map: which version of an object it admits, before and after a crash, and its
/// sealed file.
@Suite struct VersionMapTests {
    func key(_ b: UInt8, _ part: VersionKey.Part = .record) -> VersionKey {
        VersionKey(ObjectID([UInt8](repeating: b, count: 16)), part)
    }
    func v(_ s: String, session: UInt64) -> ObjectVersion { ObjectVersion(digestOf: Array(s.utf8), session: session) }

    /// A map whose base holds `entries` (as a previous session wrote it).
    func map(_ entries: [(VersionKey, ObjectVersion)], reconcileFrom: UInt64? = nil) -> VersionMap {
        let writer = VersionMap(reconcileFrom: nil)
        for (k, version) in entries { writer.note(k, version) }
        return VersionMap(base: writer.merged(), reconcileFrom: reconcileFrom)
    }

    @Test func onlyTheRecordedVersionIsAdmittedAfterACleanSession() {
        let m = map([(key(1), v("new", session: 3)), (key(2), v("x", session: 2))])
        #expect(m.admit(key(1), v("new", session: 3)) == .current)
        #expect(!m.accepts(key(1), v("old", session: 2)), "an older version")
        #expect(!m.accepts(key(1), v("forged", session: 9)), "a later session that never ended")
        #expect(!m.accepts(key(3), v("anything", session: 3)), "an object the map lacks")
        #expect(!m.accepts(key(2, .entries), v("x", session: 2)), "the other part of an object")
    }

    @Test func afterACrashOnlyVersionsFromTheUnrecordedSessionsAreAdmitted() {
        let m = map([(key(1), v("clean", session: 3))], reconcileFrom: 4)
        #expect(m.admit(key(1), v("crashed", session: 4)) == .fromUnrecordedSession)
        #expect(m.admit(key(1), v("crashed", session: 4)) == .current, "noted once admitted")
        #expect(!m.accepts(key(1), v("clean", session: 3)), "once a newer one was seen, the map's is old")
        let n = map([(key(1), v("clean", session: 3))], reconcileFrom: 4)
        #expect(!n.accepts(key(1), v("older", session: 2)))
        #expect(n.accepts(key(2), v("made in the crash", session: 4)))
        #expect(!n.accepts(key(3), v("made before it", session: 3)))
    }

    @Test func thisSessionsWritesAndRemovalsWin() {
        let m = map([(key(1), v("a", session: 1))])
        m.note(key(1), v("b", session: 2))
        #expect(!m.accepts(key(1), v("a", session: 1)))
        #expect(m.accepts(key(1), v("b", session: 2)))
        m.remove(key(1).id)
        #expect(!m.accepts(key(1), v("b", session: 2)), "a removed object never comes back")
        #expect(m.merged().count == 0)
    }

    @Test func reconcilingDropsWhatNoWalkReached() {
        let m = map([(key(1), v("a", session: 1)), (key(2), v("b", session: 1))], reconcileFrom: 2)
        #expect(m.accepts(key(1), v("a", session: 1)))
        m.reconciled()
        #expect(m.reconcileFrom == nil)
        #expect(m.merged().count == 1 && m.merged().version(of: key(1)) == v("a", session: 1))
    }

    @Test func theFileIsSealedToItsStoreAndSession() throws {
        let m = map((0..<100).map { (key(UInt8($0)), v("\($0)", session: UInt64($0))) })
        let sorted = m.merged()
        #expect(sorted.count == 100)
        let k = try SecureBytes.random(count: 32)
        let store = [UInt8](repeating: 7, count: 16)
        let bytes = try sorted.encode(key: k, storeID: store, session: 5)
        #expect(bytes.count == 5 + 12 + 8 + 100 * 41 + 16)
        #expect(try SortedVersions(decoding: bytes, key: k, storeID: store, session: 5) == sorted)
        #expect(throws: FormatError.self) { try SortedVersions(decoding: bytes, key: k, storeID: store, session: 4) }
        var other = store
        other[0] = 8
        #expect(throws: FormatError.self) { try SortedVersions(decoding: bytes, key: k, storeID: other, session: 5) }
        var flipped = bytes
        flipped[40] ^= 1
        #expect(throws: FormatError.self) { try SortedVersions(decoding: flipped, key: k, storeID: store, session: 5) }
    }

    @Test func recordsAndEntrySetsCarryTheirSession() throws {
        let crypto = try CryptoWorker(keys: StoreKeys(master: try SecureBytes.random(count: 32)), session: 42)
        let id = [UInt8](repeating: 3, count: 16)
        let r = ObjectRecord(kind: .regular, mode: 0o644, uid: 1, gid: 2)
        let opened = try ObjectRecord.open(try r.seal(objectID: id, with: crypto), objectID: id, with: crypto)
        #expect(opened.session == 42 && opened == r && opened.version == r.sealedBy(crypto).version)
        #expect(opened.version == r.version && r.version.session == 0, "what it says, not when")
        // Sealed with its version from one encoding: the same record, the same version.
        let (sealed, version) = try r.sealWithVersion(objectID: id, with: crypto)
        let again = try ObjectRecord.open(sealed, objectID: id, with: crypto)
        #expect(again.session == 42 && again == r && version == r.sealedBy(crypto).version && version.session == 42)
        let state = EntrySetState(committed: .empty)
        let back = try EntrySetState.open(try state.seal(dirIV: id, with: crypto), dirIV: id, with: crypto)
        #expect(back.session == 42 && back == state)
    }
}
