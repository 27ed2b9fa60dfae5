import CElasticControlABI
import ElasticCrypto
import ElasticFormat

/// ELASTIC_IOC_KEY and ELASTIC_IOC_KEYOP: the key store and the operations with its keys.
extension ControlDispatcher {
    static let keyDataMax = Int(ELASTIC_KEY_DATA_MAX)

    /// The NUL-terminated, zero-padded name of a request: NAME, or UID:NAME for another
    /// uid's key (see `KeyStore.resolve`).
    static func keyName<T>(_ field: inout T) throws(ControlError) -> String {
        let bytes = withUnsafeBytes(of: &field) { Array($0) }
        guard let end = bytes.firstIndex(of: 0), bytes[end...].allSatisfy({ $0 == 0 }) else {
            throw .invalid("key name not NUL-terminated and zero-padded")
        }
        var name = Array(bytes[..<end])
        if let colon = name.firstIndex(of: UInt8(ascii: ":")) {
            let owner = name[..<colon]
            guard (1...10).contains(owner.count), owner.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
                throw .invalid("a key is NAME or UID:NAME")
            }
            name = Array(name[(colon + 1)...])
        }
        guard KeyStore.isValidName(name) else { throw .invalid("key name must be 1 to 63 of A-Z a-z 0-9 . _ -") }
        return String(decoding: bytes[..<end], as: UTF8.self)
    }

    static func setName(_ r: inout elastic_key, _ name: String) {
        withUnsafeMutableBytes(of: &r.name) { b in
            b.initializeMemory(as: UInt8.self, repeating: 0)
            b.copyBytes(from: Array(name.utf8))
        }
    }

    static func setData<T>(_ field: inout T, _ bytes: UnsafeRawBufferPointer) {
        withUnsafeMutableBytes(of: &field) { b in
            b.initializeMemory(as: UInt8.self, repeating: 0)
            b.copyMemory(from: bytes)
        }
    }

    func key(_ r: inout elastic_key, _ caller: ControlCaller) throws(ControlError) {
        guard r.reserved == 0, r.owner == 0, r.created == 0 else { throw .invalid("output or reserved fields set") }
        let op = r.op
        // Inputs each op reads; everything else must be zero.
        let takesType =
            op == UInt32(ELASTIC_KEY_CREATE.rawValue) || op == UInt32(ELASTIC_KEY_IMPORT.rawValue)
            || op == UInt32(ELASTIC_KEY_LIST.rawValue)
        let takesData = op == UInt32(ELASTIC_KEY_IMPORT.rawValue)
        let takesName = op != UInt32(ELASTIC_KEY_LIST.rawValue)
        guard takesType || (r.type == 0 && r.flags == 0), op == UInt32(ELASTIC_KEY_CREATE.rawValue) || r.bits == 0,
            op == UInt32(ELASTIC_KEY_LIST.rawValue) || r.index == 0,
            takesData || (r.length == 0 && Self.allZero(&r.data)), takesName || Self.allZero(&r.name)
        else {
            throw .invalid("a field this op does not take is set")
        }
        let listing = op == UInt32(ELASTIC_KEY_LIST.rawValue)
        guard r.flags & ~(listing ? ELASTIC_KEY_LIST_ALL : ELASTIC_KEY_EXPORTABLE) == 0 else { throw .invalid("flags") }
        switch op {
        case UInt32(ELASTIC_KEY_CREATE.rawValue):
            let name = try Self.keyName(&r.name)
            guard let type = KeyStore.KeyType(rawValue: r.type) else { throw .invalid("key type") }
            guard type == .rsa ? (AsymmetricKey.Kind.rsaBits.contains(Int(r.bits)) && r.bits % 8 == 0) : r.bits == 0
            else {
                throw .invalid("bits: 2048..4096 for RSA, 0 otherwise")
            }
            try keys.create(name: name, type: type, rsaBits: Int(r.bits), flags: r.flags, uid: caller.uid)
        case UInt32(ELASTIC_KEY_IMPORT.rawValue):
            let name = try Self.keyName(&r.name)
            guard let type = KeyStore.KeyType(rawValue: r.type) else { throw .invalid("key type") }
            guard r.length >= 1, r.length <= ELASTIC_KEY_DATA_MAX else { throw .invalid("length") }
            let n = Int(r.length)
            try withUnsafeBytes(of: &r.data) { (d) throws(ControlError) in
                guard d[n...].allSatisfy({ $0 == 0 }) else { throw ControlError.invalid("data padding") }
                try keys.importKey(
                    name: name, type: type, flags: r.flags, uid: caller.uid,
                    data: UnsafeRawBufferPointer(rebasing: d[0..<n]))
            }
        case UInt32(ELASTIC_KEY_INFO.rawValue):
            fillInfo(&r, try keys.key(try Self.keyName(&r.name), uid: caller.uid))
        case UInt32(ELASTIC_KEY_LIST.rawValue):
            guard r.type == 0 else { throw .invalid("a field this op does not take is set") }
            let everyone = r.flags & ELASTIC_KEY_LIST_ALL != 0
            guard !everyone || caller.uid == 0 else { throw .accessDenied }
            let listed = keys.list(uid: caller.uid, everyone: everyone)
            guard Int(r.index) < listed.count else { throw .notFound }
            let k = listed[Int(r.index)]
            Self.setName(&r, k.stored.name)
            fillInfo(&r, k)
        case UInt32(ELASTIC_KEY_PUBLIC.rawValue):
            let k = try keys.key(try Self.keyName(&r.name), uid: caller.uid)
            guard let asym = k.asymmetric else { throw .invalid("a symmetric key has no public part") }
            guard let pem = try? asym.publicKeyPEM(), pem.count <= Self.keyDataMax else {
                throw .storageFailure("public key encoding")
            }
            pem.withUnsafeBytes { Self.setData(&r.data, $0) }
            r.length = UInt32(pem.count)
        case UInt32(ELASTIC_KEY_EXPORT.rawValue):
            let k = try keys.key(try Self.keyName(&r.name), uid: caller.uid)
            guard k.exportable else { throw .notExportable }
            let secret: SecureBytes
            if let asym = k.asymmetric {
                guard let pem = try? asym.privateKeyPEM() else { throw .storageFailure("private key encoding") }
                secret = pem
            } else {
                secret = k.stored.material
            }
            guard secret.count <= Self.keyDataMax else {
                throw .storageFailure("private key larger than the data field")
            }
            secret.withUnsafeBytes { Self.setData(&r.data, $0) }
            r.length = UInt32(secret.count)
        case UInt32(ELASTIC_KEY_DELETE.rawValue):
            try keys.delete(name: try Self.keyName(&r.name), uid: caller.uid)
        default:
            throw .invalid("op")
        }
    }

    func fillInfo(_ r: inout elastic_key, _ k: KeyStore.Key) {
        r.type = k.type.rawValue
        r.flags = UInt32(k.stored.flags)
        r.bits = k.bits
        r.owner = k.stored.owner
        r.created = k.stored.created
    }

    func keyOperation(_ r: inout elastic_keyop, _ caller: ControlCaller) throws(ControlError) {
        guard r.length <= ELASTIC_KEY_DATA_MAX else { throw .invalid("length") }
        let n = Int(r.length)
        try withUnsafeBytes(of: &r.data) { (d) throws(ControlError) in
            guard d[n...].allSatisfy({ $0 == 0 }) else { throw ControlError.invalid("data padding") }
        }
        let owner = try owner(caller)
        switch r.step {
        case UInt32(ELASTIC_STEP_INIT.rawValue):
            guard r.handle == 0, Self.allZero(&r.tag) else { throw .invalid("handle or tag on INIT") }
            let object = try startOperation(&r, uid: caller.uid)
            var slowFinal = false
            if case .signature(let stream, verifying: false) = object { slowFinal = stream.isRSA }
            r.handle = try handles.open(owner: owner, uid: caller.uid, object, slowFinal: slowFinal)
        case UInt32(ELASTIC_STEP_UPDATE.rawValue), UInt32(ELASTIC_STEP_FINAL.rawValue):
            guard r.operation == 0, r.scheme == 0, r.hash == 0, Self.allZero(&r.name) else {
                throw .invalid("INIT fields after INIT")
            }
            let final = r.step == UInt32(ELASTIC_STEP_FINAL.rawValue)
            // A failed step ends the stream: the handle is closed whatever the outcome.
            var failure: ControlError? = nil
            try handles.use(r.handle, owner: owner, close: final) { (entry, o) throws(ControlError) in
                do throws(ControlError) { try continueOperation(entry, o, &r, final: final) } catch { failure = error }
            }
            if let failure {
                if !final { _ = try? handles.use(r.handle, owner: owner, close: true) { _, _ in } }
                throw failure
            }
        default:
            throw .invalid("step")
        }
    }

    /// Checks an INIT request and makes the stream it asks for.
    func startOperation(_ r: inout elastic_keyop, uid: UInt32) throws(ControlError) -> HandleTable.Object {
        let k = try keys.key(try Self.keyName(&r.name), uid: uid)
        let data = withUnsafeBytes(of: &r.data) { Array($0.prefix(Int(r.length))) }
        let signing =
            r.operation == UInt32(ELASTIC_OP_SIGN.rawValue) || r.operation == UInt32(ELASTIC_OP_VERIFY.rawValue)
        guard signing || (r.scheme == 0 && r.hash == 0) else {
            throw .invalid("scheme and hash are for SIGN and VERIFY")
        }
        switch r.operation {
        case UInt32(ELASTIC_OP_ENCRYPT.rawValue), UInt32(ELASTIC_OP_DECRYPT.rawValue):
            guard k.type == .aes256 else { throw .invalid("encryption needs an AES-256 key") }
            let sealing = r.operation == UInt32(ELASTIC_OP_ENCRYPT.rawValue)
            let salt: [UInt8]
            let aad: [UInt8]
            if sealing {
                guard let s = try? Random.bytes(AEADStream.saltSize) else {
                    throw .cryptoFailure("random source failed")
                }
                salt = s
                aad = data
                salt.withUnsafeBytes { Self.setData(&r.data, $0) }
                r.length = UInt32(salt.count)
            } else {
                guard data.count >= AEADStream.saltSize else {
                    throw .invalid("DECRYPT INIT takes the 32-byte salt, then the AAD")
                }
                salt = Array(data.prefix(AEADStream.saltSize))
                aad = Array(data.dropFirst(AEADStream.saltSize))
                Self.setData(&r.data, UnsafeRawBufferPointer(start: nil, count: 0))
                r.length = 0
            }
            guard
                let stream = try? AEADStream(key: k.stored.material, salt: salt, label: KeyLabels.aeadStream, aad: aad)
            else { throw .cryptoFailure("stream setup") }
            return .aead(stream, sealing: sealing)
        case UInt32(ELASTIC_OP_SIGN.rawValue), UInt32(ELASTIC_OP_VERIFY.rawValue):
            guard let asym = k.asymmetric else { throw .invalid("signatures need an RSA, EC or Ed25519 key") }
            guard r.length == 0 else { throw .invalid("SIGN INIT takes no data") }
            let scheme: SignatureScheme
            switch (r.scheme, asym.kind) {
            case (UInt32(ELASTIC_SIGN_DEFAULT.rawValue), .rsa), (UInt32(ELASTIC_SIGN_RSA_PSS.rawValue), .rsa):
                scheme = .rsaPSS
            case (UInt32(ELASTIC_SIGN_RSA_PKCS1.rawValue), .rsa): scheme = .rsaPKCS1v15
            case (UInt32(ELASTIC_SIGN_DEFAULT.rawValue), .ecP256), (UInt32(ELASTIC_SIGN_DEFAULT.rawValue), .ecP384),
                (UInt32(ELASTIC_SIGN_ECDSA.rawValue), .ecP256), (UInt32(ELASTIC_SIGN_ECDSA.rawValue), .ecP384):
                scheme = .ecdsa
            case (UInt32(ELASTIC_SIGN_DEFAULT.rawValue), .ed25519), (UInt32(ELASTIC_SIGN_ED25519.rawValue), .ed25519):
                scheme = .ed25519
            default: throw .invalid("scheme does not go with a \(asym.kind) key")
            }
            let digest: Digest.Algorithm?
            switch r.hash {
            case _ where scheme == .ed25519:
                guard r.hash == 0 else { throw .invalid("Ed25519 takes no hash") }
                digest = nil
            case 0: digest = asym.kind == .ecP384 ? .sha384 : .sha256
            case UInt32(ELASTIC_HASH_SHA256.rawValue): digest = .sha256
            case UInt32(ELASTIC_HASH_SHA384.rawValue): digest = .sha384
            case UInt32(ELASTIC_HASH_SHA512.rawValue): digest = .sha512
            default: throw .invalid("hash")
            }
            let verifying = r.operation == UInt32(ELASTIC_OP_VERIFY.rawValue)
            do {
                return .signature(
                    try SignatureStream(key: asym, scheme: scheme, digest: digest, verifying: verifying),
                    verifying: verifying)
            } catch {
                throw .invalid("\(error)")
            }
        case UInt32(ELASTIC_OP_HMAC.rawValue):
            guard k.type == .hmacSHA256 else { throw .invalid("HMAC needs an HMAC-SHA-256 key") }
            guard r.length == 0 else { throw .invalid("HMAC INIT takes no data") }
            guard let stream = try? SignatureStream(hmacKey: k.stored.material) else {
                throw .cryptoFailure("HMAC setup")
            }
            return .signature(stream, verifying: false)
        default:
            throw .invalid("operation")
        }
    }

    /// One UPDATE or FINAL step of a stream.
    func continueOperation(_ entry: HandleTable.Entry, _ o: HandleTable.Object, _ r: inout elastic_keyop, final: Bool)
        throws(ControlError)
    {
        let n = Int(r.length)
        switch o {
        case .aead(let stream, let sealing):
            if sealing { guard Self.allZero(&r.tag) else { throw .invalid("tag set on ENCRYPT") } }
            // In place: the segment in `data` becomes its ciphertext (or plaintext), the tag is
            // read from or written to `tag`.
            var tag = r.tag
            do {
                try withUnsafeMutableBytes(of: &r.data) { d in
                    try withUnsafeMutableBytes(of: &tag) { t in
                        let segment = UnsafeRawBufferPointer(rebasing: d[0..<n])
                        if sealing {
                            try stream.seal(segment, final: final, output: d.baseAddress!, tag: t.baseAddress!)
                        } else {
                            try stream.open(segment, final: final, output: d.baseAddress!, tag: t.baseAddress!)
                        }
                    }
                }
            } catch CryptoError.authenticationFailure {
                throw .verificationFailed
            } catch CryptoError.invalidLength {
                throw .invalid("every segment but the last is exactly \(AEADStream.segmentSize) bytes")
            } catch {
                throw .invalid("\(error)")
            }
            r.tag = sealing ? tag : (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        case .signature(let stream, let verifying):
            guard Self.allZero(&r.tag) else { throw .invalid("tag") }
            do {
                if final && verifying {
                    let signature = withUnsafeBytes(of: &r.data) { Array($0.prefix(n)) }
                    guard try stream.verify(signature) else { throw ControlError.verificationFailed }
                } else {
                    // A stream that buffers its message (Ed25519) charges it to the caller's uid.
                    if stream.buffersMessage { try handles.charge(entry, bytes: n) }
                    try withUnsafeBytes(of: &r.data) { try stream.update(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                }
                Self.setData(&r.data, UnsafeRawBufferPointer(start: nil, count: 0))
                r.length = 0
                if final && !verifying {
                    let signature = try stream.sign()
                    signature.withUnsafeBytes { Self.setData(&r.data, $0) }
                    r.length = UInt32(signature.count)
                }
            } catch let e as ControlError {
                throw e
            } catch CryptoError.inputTooLarge(let limit) {
                throw .invalid("Ed25519 signs at most \(limit) bytes")
            } catch {
                throw .invalid("\(error)")
            }
        case .stopwatch, .hash:
            throw .badHandle
        }
    }
}
