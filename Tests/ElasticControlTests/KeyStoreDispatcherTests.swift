import CElasticControlABI
import ElasticControl
import ElasticControlClient
import ElasticCrypto
import ElasticFormat
import ElasticSystem
import Glibc
import Testing

/// ELASTIC_IOC_KEY and ELASTIC_IOC_KEYOP through the dispatcher, as the FUSE layer calls it.
@Suite struct KeyStoreDispatcherTests {
    let alice = ControlCaller(uid: 1000, gid: 1000, pid: getpid())
    let bob = ControlCaller(uid: 1001, gid: 1001, pid: getpid())
    let root = ControlCaller(uid: 0, gid: 0, pid: getpid())

    struct Fixture {
        let master: SecureBytes
        let backing: String
        func dispatcher(readOnly: Bool = false) throws -> ControlDispatcher {
            try ControlDispatcher(
                master: master,
                keyStore: KeyStoreFile(
                    directory: try Syscall.openDirectory(backing), keys: try StoreKeys(master: master), root: nil),
                readOnly: readOnly, time: TimePlatform(secureTSC: false))
        }
    }

    func fixture() throws -> Fixture {
        Fixture(master: try SecureBytes.random(count: 32), backing: try temporaryDirectory())
    }

    /// Sends one request; returns the errno-level error, if any.
    @discardableResult
    func send<T>(_ d: ControlDispatcher, _ cmd: UInt32, _ value: ControlRequest<T>, _ caller: ControlCaller)
        -> ControlError?
    {
        var out = [UInt8](repeating: 0, count: MemoryLayout<T>.size)
        let input = Array(value.raw)
        do {
            _ = try input.withUnsafeBytes { i in
                try out.withUnsafeMutableBytes { o in try d.handle(cmd: cmd, input: i, output: o, caller: caller) }
            }
        } catch let e as ControlError { return e } catch { return .invalid("\(error)") }
        value.raw.copyBytes(from: out)
        return nil
    }

    func keyRequest(
        _ op: elastic_key_op, _ name: String, type: elastic_key_type? = nil, bits: UInt32 = 0, flags: UInt32 = 0
    ) -> ControlRequest<elastic_key> {
        let r = ControlRequest<elastic_key>()
        r.version = ELASTIC_ABI_VERSION
        r.op = UInt32(op.rawValue)
        r.type = type.map { UInt32($0.rawValue) } ?? 0
        r.bits = bits
        r.flags = flags
        r.withBytes(\.name) { $0.copyBytes(from: Array(name.utf8)) }
        return r
    }

    func create(
        _ d: ControlDispatcher, _ name: String, _ type: elastic_key_type, bits: UInt32 = 0, flags: UInt32 = 0,
        as caller: ControlCaller
    ) -> ControlError? {
        let r = keyRequest(ELASTIC_KEY_CREATE, name, type: type, bits: bits, flags: flags)
        return send(d, CElasticControlABI_IOC_KEY, r, caller)
    }

    /// The names LIST gives; with `all` (root), as OWNER:NAME.
    func list(_ d: ControlDispatcher, as caller: ControlCaller, all: Bool = false) -> [String] {
        var names: [String] = []
        while true {
            let r = ControlRequest<elastic_key>()
            r.version = ELASTIC_ABI_VERSION
            r.op = UInt32(ELASTIC_KEY_LIST.rawValue)
            r.flags = all ? ELASTIC_KEY_LIST_ALL : 0
            r.index = UInt32(names.count)
            if send(d, CElasticControlABI_IOC_KEY, r, caller) != nil { return names }
            let name = r.withBytes(\.name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            names.append(all ? "\(r.owner):\(name)" : name)
        }
    }

    /// One keyop step; returns output data and tag, or the error.
    func step(
        _ d: ControlDispatcher, _ s: elastic_keyop_step, handle: UInt64 = 0, op: elastic_keyop_operation? = nil,
        key: String = "",
        data: [UInt8] = [], tag: [UInt8] = [], scheme: UInt32 = 0, as caller: ControlCaller
    ) -> Result<(UInt64, [UInt8], [UInt8]), ControlError> {
        let r = ControlRequest<elastic_keyop>()
        r.version = ELASTIC_ABI_VERSION
        r.step = UInt32(s.rawValue)
        r.handle = handle
        r.operation = op.map { UInt32($0.rawValue) } ?? 0
        r.scheme = scheme
        r.length = UInt32(data.count)
        r.withBytes(\.name) { $0.copyBytes(from: Array(key.utf8)) }
        r.withBytes(\.data) { $0.copyBytes(from: data) }
        r.withBytes(\.tag) { $0.copyBytes(from: tag) }
        if let e = send(d, CElasticControlABI_IOC_KEYOP, r, caller) { return .failure(e) }
        return .success(
            (r.handle, r.withBytes(\.data) { Array($0.prefix(Int(r.length))) }, r.withBytes(\.tag) { Array($0) }))
    }

    @Test func everyUidHasItsOwnNameSpaceAndKeysPersist() throws {
        let f = try fixture()
        let d = try f.dispatcher()
        #expect(create(d, "a-sign", ELASTIC_KEY_ED25519, as: alice) == nil)
        #expect(create(d, "a-aes", ELASTIC_KEY_AES256, as: alice) == nil)
        #expect(create(d, "b-hmac", ELASTIC_KEY_HMAC_SHA256, as: bob) == nil)
        #expect(create(d, "a-sign", ELASTIC_KEY_ED25519, as: alice) == .exists)
        #expect(create(d, "a-sign", ELASTIC_KEY_ED25519, as: bob) == nil, "bob's own a-sign: no clash, no oracle")
        #expect(list(d, as: alice) == ["a-aes", "a-sign"])
        #expect(list(d, as: bob) == ["a-sign", "b-hmac"])
        #expect(list(d, as: root) == [], "root lists its own keys")
        #expect(list(d, as: root, all: true) == ["1000:a-aes", "1000:a-sign", "1001:a-sign", "1001:b-hmac"])
        let all = keyRequest(ELASTIC_KEY_LIST, "")
        all.flags = ELASTIC_KEY_LIST_ALL
        #expect(send(d, CElasticControlABI_IOC_KEY, all, alice) == .accessDenied, "LIST_ALL is root's")

        // A plain name is always the caller's own key.
        let info = keyRequest(ELASTIC_KEY_INFO, "a-sign")
        #expect(send(d, CElasticControlABI_IOC_KEY, info, bob) == nil && info.owner == 1001)
        let rootsOwn = keyRequest(ELASTIC_KEY_INFO, "a-sign")
        #expect(
            send(d, CElasticControlABI_IOC_KEY, rootsOwn, root) == .notFound,
            "root does not fall into another uid's key")
        // Another uid's key by owner: root may, anyone else gets EACCES whether or not it exists.
        let byOwner = keyRequest(ELASTIC_KEY_INFO, "1000:a-aes")
        #expect(send(d, CElasticControlABI_IOC_KEY, byOwner, root) == nil && byOwner.owner == 1000)
        for name in ["1000:a-aes", "1000:no-such-key"] {
            let probe = keyRequest(ELASTIC_KEY_INFO, name)
            #expect(send(d, CElasticControlABI_IOC_KEY, probe, bob) == .accessDenied, "\(name)")
            let export = keyRequest(ELASTIC_KEY_EXPORT, name)
            #expect(send(d, CElasticControlABI_IOC_KEY, export, bob) == .accessDenied, "\(name)")
        }
        #expect(
            step(d, ELASTIC_STEP_INIT, op: ELASTIC_OP_ENCRYPT, key: "1000:a-aes", as: bob).failureValue == .accessDenied
        )
        #expect(step(d, ELASTIC_STEP_INIT, op: ELASTIC_OP_ENCRYPT, key: "a-aes", as: bob).failureValue == .notFound)
        #expect(step(d, ELASTIC_STEP_INIT, op: ELASTIC_OP_ENCRYPT, key: "1000:a-aes", as: root).isSuccess)
        // Deleting bob's a-sign leaves alice's.
        let del = keyRequest(ELASTIC_KEY_DELETE, "a-sign")
        #expect(send(d, CElasticControlABI_IOC_KEY, del, bob) == nil)
        #expect(list(d, as: alice) == ["a-aes", "a-sign"])

        // A second dispatcher on the same store (a remount) sees the same keys, with the same bytes.
        let pub1 = keyRequest(ELASTIC_KEY_PUBLIC, "a-sign")
        #expect(send(d, CElasticControlABI_IOC_KEY, pub1, alice) == nil)
        let again = try f.dispatcher()
        #expect(list(again, as: root, all: true) == ["1000:a-aes", "1000:a-sign", "1001:b-hmac"])
        let pub2 = keyRequest(ELASTIC_KEY_PUBLIC, "a-sign")
        #expect(send(again, CElasticControlABI_IOC_KEY, pub2, alice) == nil)
        #expect(pub1.withBytes(\.data) { Array($0) } == pub2.withBytes(\.data) { Array($0) } && pub1.length > 0)
        let delAlice = keyRequest(ELASTIC_KEY_DELETE, "1000:a-sign")
        #expect(send(again, CElasticControlABI_IOC_KEY, delAlice, root) == nil)
        #expect(list(try f.dispatcher(), as: root, all: true) == ["1000:a-aes", "1001:b-hmac"])
        // Read-only: usable, not changeable.
        let ro = try f.dispatcher(readOnly: true)
        #expect(create(ro, "new", ELASTIC_KEY_AES256, as: alice) == .readOnly)
        #expect(step(ro, ELASTIC_STEP_INIT, op: ELASTIC_OP_HMAC, key: "b-hmac", as: bob).isSuccess)
        // Another store's master key cannot read this key store.
        let other = Fixture(master: try SecureBytes.random(count: 32), backing: f.backing)
        #expect(throws: (any Error).self) { try other.dispatcher() }
    }

    /// One uid cannot fill the store for everyone: quotas of keys and bytes per uid (root is
    /// bound only by the store's total).
    @Test func perUIDQuotas() throws {
        let d = try fixture().dispatcher()
        for i in 0..<Int(ELASTIC_KEYS_PER_UID) { #expect(create(d, "k\(i)", ELASTIC_KEY_AES256, as: alice) == nil) }
        #expect(create(d, "one-more", ELASTIC_KEY_AES256, as: alice) == .quotaExceeded)
        #expect(create(d, "bobs", ELASTIC_KEY_AES256, as: bob) == nil, "others are not affected")
        #expect(create(d, "roots", ELASTIC_KEY_AES256, as: root) == nil)
        let del = keyRequest(ELASTIC_KEY_DELETE, "k0")
        #expect(send(d, CElasticControlABI_IOC_KEY, del, alice) == nil)
        #expect(create(d, "one-more", ELASTIC_KEY_AES256, as: alice) == nil)
        // Bytes: RSA-4096 keys (about 2.4 KB of DER each) hit the byte quota before the count.
        let big = try fixture().dispatcher()
        let der = try AsymmetricKey.generate(.rsa(bits: 4096)).privateKeyDER()
        var made = 0
        while made < Int(ELASTIC_KEYS_PER_UID) {
            let r = keyRequest(ELASTIC_KEY_IMPORT, "rsa\(made)", type: ELASTIC_KEY_RSA)
            r.length = UInt32(der.count)
            der.withUnsafeBytes { d in r.withBytes(\.data) { $0.copyMemory(from: d) } }
            let e = send(big, CElasticControlABI_IOC_KEY, r, alice)
            if e != nil {
                #expect(e == .quotaExceeded)
                break
            }
            made += 1
        }
        #expect(made == Int(ELASTIC_KEY_BYTES_PER_UID) / der.count, "\(made) keys of \(der.count) bytes")
    }

    @Test func requestsAreValidated() throws {
        let d = try fixture().dispatcher()
        for bad in ["", "a/b", "x y", String(repeating: "n", count: 64), "ü"] {
            #expect(create(d, bad, ELASTIC_KEY_AES256, as: alice) != nil, "name \(bad)")
        }
        #expect(create(d, "r", ELASTIC_KEY_RSA, bits: 1024, as: alice) != nil)
        #expect(create(d, "r", ELASTIC_KEY_RSA, bits: 8192, as: alice) != nil)
        #expect(create(d, "e", ELASTIC_KEY_ED25519, bits: 256, as: alice) != nil, "bits only for RSA")
        #expect(create(d, "e", ELASTIC_KEY_ED25519, flags: 2, as: alice) != nil, "unknown flag")
        let reserved = keyRequest(ELASTIC_KEY_CREATE, "e", type: ELASTIC_KEY_ED25519)
        reserved.reserved = 1
        #expect(send(d, CElasticControlABI_IOC_KEY, reserved, alice) != nil)
        let pad = keyRequest(ELASTIC_KEY_CREATE, "e", type: ELASTIC_KEY_ED25519)
        pad.withBytes(\.name) { $0[40] = 0x41 }
        #expect(send(d, CElasticControlABI_IOC_KEY, pad, alice) != nil, "bytes after the NUL")
        #expect(create(d, "r", ELASTIC_KEY_RSA, bits: 2048, as: alice) == nil)
        let pubAES = keyRequest(ELASTIC_KEY_PUBLIC, "r")
        #expect(send(d, CElasticControlABI_IOC_KEY, pubAES, alice) == nil)
        #expect(
            String(decoding: pubAES.withBytes(\.data) { Array($0.prefix(Int(pubAES.length))) }, as: UTF8.self)
                .hasPrefix("-----BEGIN PUBLIC KEY-----"))
        let export = keyRequest(ELASTIC_KEY_EXPORT, "r")
        #expect(send(d, CElasticControlABI_IOC_KEY, export, alice) == .notExportable)
        #expect(
            step(d, ELASTIC_STEP_INIT, op: ELASTIC_OP_ENCRYPT, key: "r", as: alice).failureValue != nil,
            "RSA key cannot encrypt")
        #expect(
            step(
                d, ELASTIC_STEP_INIT, op: ELASTIC_OP_SIGN, key: "r", scheme: UInt32(ELASTIC_SIGN_ED25519.rawValue),
                as: alice
            ).failureValue != nil)
        #expect(step(d, ELASTIC_STEP_INIT, op: ELASTIC_OP_SIGN, key: "missing", as: alice).failureValue == .notFound)
        #expect(step(d, ELASTIC_STEP_UPDATE, handle: 12345, as: alice).failureValue == .badHandle)
    }

    @Test func importedRawKeysAndExportOfExportableKeys() throws {
        let d = try fixture().dispatcher()
        let imp = keyRequest(ELASTIC_KEY_IMPORT, "mac", type: ELASTIC_KEY_HMAC_SHA256, flags: ELASTIC_KEY_EXPORTABLE)
        let key = [UInt8](repeating: 0x0b, count: 20)
        imp.length = 20
        imp.withBytes(\.data) { $0.copyBytes(from: key) }
        #expect(send(d, CElasticControlABI_IOC_KEY, imp, alice) == nil)
        // RFC 4231 test case 1.
        let h = try step(d, ELASTIC_STEP_INIT, op: ELASTIC_OP_HMAC, key: "mac", as: alice).get().0
        let mac = try step(d, ELASTIC_STEP_FINAL, handle: h, data: Array("Hi There".utf8), as: alice).get().1
        #expect(Hex.encode(mac) == "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
        let export = keyRequest(ELASTIC_KEY_EXPORT, "mac")
        #expect(send(d, CElasticControlABI_IOC_KEY, export, alice) == nil)
        #expect(export.withBytes(\.data) { Array($0.prefix(Int(export.length))) } == key)
        let short = keyRequest(ELASTIC_KEY_IMPORT, "short", type: ELASTIC_KEY_AES256)
        short.length = 16
        #expect(send(d, CElasticControlABI_IOC_KEY, short, alice) != nil, "AES-256 needs 32 bytes")
    }

    @Test func streamedEncryptionRefusesTamperingReorderingAndTruncation() throws {
        let d = try fixture().dispatcher()
        #expect(create(d, "k", ELASTIC_KEY_AES256, as: alice) == nil)
        let message = (0..<(3 * 4096 + 100)).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        func encrypt() throws -> (salt: [UInt8], segments: [([UInt8], [UInt8])]) {
            let (h, salt, _) = try step(
                d, ELASTIC_STEP_INIT, op: ELASTIC_OP_ENCRYPT, key: "k", data: Array("aad".utf8), as: alice
            ).get()
            var segs: [([UInt8], [UInt8])] = []
            for i in stride(from: 0, to: message.count, by: 4096) {
                let chunk = Array(message[i..<min(i + 4096, message.count)])
                let last = i + 4096 >= message.count
                let (_, ct, tag) = try step(
                    d, last ? ELASTIC_STEP_FINAL : ELASTIC_STEP_UPDATE, handle: h, data: chunk, as: alice
                ).get()
                #expect(ct != chunk)
                segs.append((ct, tag))
            }
            return (salt, segs)
        }
        func decrypt(_ salt: [UInt8], _ segs: [([UInt8], [UInt8])], aad: String = "aad", finalAt: Int? = nil) -> Result<
            [UInt8], ControlError
        > {
            let h: UInt64
            switch step(d, ELASTIC_STEP_INIT, op: ELASTIC_OP_DECRYPT, key: "k", data: salt + Array(aad.utf8), as: alice)
            {
            case .success(let r): h = r.0
            case .failure(let e): return .failure(e)
            }
            var out: [UInt8] = []
            for (i, (ct, tag)) in segs.enumerated() {
                let last = i == (finalAt ?? segs.count - 1)
                switch step(
                    d, last ? ELASTIC_STEP_FINAL : ELASTIC_STEP_UPDATE, handle: h, data: ct, tag: tag, as: alice)
                {
                case .success(let r): out += r.1
                case .failure(let e): return .failure(e)
                }
                if last { break }
            }
            return .success(out)
        }
        let (salt, segs) = try encrypt()
        #expect(try decrypt(salt, segs).get() == message)
        var flipped = segs
        flipped[1].0[10] ^= 1
        #expect(decrypt(salt, flipped).failureValue == .verificationFailed)
        #expect(decrypt(salt, [segs[1], segs[0], segs[2], segs[3]]).failureValue == .verificationFailed, "reordered")
        #expect(decrypt(salt, Array(segs.prefix(3))).failureValue != nil, "cut off before the final segment")
        #expect(decrypt(salt, segs, aad: "other").failureValue == .verificationFailed)
        var otherSalt = salt
        otherSalt[0] ^= 1
        #expect(decrypt(otherSalt, segs).failureValue == .verificationFailed)
        // After a failed segment the handle is gone.
        let h = try step(
            d, ELASTIC_STEP_INIT, op: ELASTIC_OP_DECRYPT, key: "k", data: salt + Array("aad".utf8), as: alice
        ).get().0
        #expect(
            step(
                d, ELASTIC_STEP_UPDATE, handle: h, data: flipped[0].0, tag: [UInt8](repeating: 0, count: 16), as: alice
            ).failureValue == .verificationFailed)
        #expect(
            step(d, ELASTIC_STEP_UPDATE, handle: h, data: segs[0].0, tag: segs[0].1, as: alice).failureValue
                == .badHandle)
        // Segments other than the last are whole.
        let e = try step(d, ELASTIC_STEP_INIT, op: ELASTIC_OP_ENCRYPT, key: "k", as: alice).get().0
        #expect(step(d, ELASTIC_STEP_UPDATE, handle: e, data: [1, 2, 3], as: alice).failureValue != nil)
    }

    @Test func signaturesOfEveryKeyTypeVerifyAndTamperedOnesDoNot() throws {
        let d = try fixture().dispatcher()
        let cases: [(elastic_key_type, UInt32, [UInt32])] = [
            (
                ELASTIC_KEY_RSA, 2048,
                [0, UInt32(ELASTIC_SIGN_RSA_PSS.rawValue), UInt32(ELASTIC_SIGN_RSA_PKCS1.rawValue)]
            ),
            (ELASTIC_KEY_EC_P256, 0, [0, UInt32(ELASTIC_SIGN_ECDSA.rawValue)]),
            (ELASTIC_KEY_EC_P384, 0, [0]),
            (ELASTIC_KEY_ED25519, 0, [0, UInt32(ELASTIC_SIGN_ED25519.rawValue)]),
        ]
        let message = (0..<10_000).map { UInt8(truncatingIfNeeded: $0) }
        for (type, bits, schemes) in cases {
            let name = "k\(type.rawValue)"
            #expect(create(d, name, type, bits: bits, as: alice) == nil)
            for scheme in schemes {
                let s = try step(d, ELASTIC_STEP_INIT, op: ELASTIC_OP_SIGN, key: name, scheme: scheme, as: alice).get()
                    .0
                _ = try step(d, ELASTIC_STEP_UPDATE, handle: s, data: Array(message[..<4096]), as: alice).get()
                let sig = try step(
                    d, ELASTIC_STEP_FINAL, handle: s, data: Array(message[4096...4096 * 2 - 1]), as: alice
                ).get().1
                for (msg, ok) in [(Array(message[..<8192]), true), (Array(message[..<8191]), false)] {
                    let v = try step(d, ELASTIC_STEP_INIT, op: ELASTIC_OP_VERIFY, key: name, scheme: scheme, as: alice)
                        .get().0
                    _ = try step(d, ELASTIC_STEP_UPDATE, handle: v, data: Array(msg[..<4096]), as: alice).get()
                    _ = try step(d, ELASTIC_STEP_UPDATE, handle: v, data: Array(msg[4096...]), as: alice).get()
                    let r = step(d, ELASTIC_STEP_FINAL, handle: v, data: sig, as: alice)
                    #expect(
                        ok ? r.isSuccess : r.failureValue == .verificationFailed,
                        "type \(type.rawValue) scheme \(scheme)")
                }
            }
        }
    }
}

extension Result {
    var failureValue: Failure? { if case .failure(let e) = self { return e } else { return nil } }
    var isSuccess: Bool { if case .success = self { return true } else { return false } }
}
