import ElasticControl
import ElasticCrypto
import ElasticFormat
import ElasticPlatform
import ElasticSystem

/// Where the secret that opens a store comes from.
public enum KeySource: Sendable {
    case keyFile(String)
    case passphraseFile(String)
    /// Asks on the terminal.
    case passphrasePrompt
    /// The store's sealed slots, unsealed by the platform.
    case platform(PlatformChoice)
}

/// Opening stores, the same way from `mount.elastic` and `elastic`.
public enum StoreOpener {
    /// What `mount.elastic` uses without a key option: the platform when one is named or the
    /// store has sealed slots, else the passphrase prompt.
    public static func defaultSource(backing: String, keyFile: String?, passFile: String?, platform: PlatformChoice)
        throws -> KeySource
    {
        if let keyFile { return .keyFile(keyFile) }
        if let passFile { return .passphraseFile(passFile) }
        let (config, _) = try Store.readConfig(backing: backing)
        if platform.name != nil
            || config.slots.contains(where: { if case .sealed = $0.kind { return true } else { return false } })
        {
            return .platform(platform)
        }
        return .passphrasePrompt
    }

    /// Opens the store at `backing` with `source`.
    /// `migrating`: a store of an older format is opened too (for `elastic migrate`).
    public static func unlock(
        backing: String, source: KeySource, migrating: Bool = false, warn: (String) -> Void = { _ in }
    ) throws -> UnlockedStore {
        switch source {
        case .keyFile(let path):
            var key = try KeyFile.read(at: path)
            defer { secureWipe(&key) }
            return try Store.unlock(backing: backing, secret: .keyFile(key), migrating: migrating)
        case .passphraseFile(let path):
            var pass = try Passphrase.fromFile(path)
            defer { secureWipe(&pass) }
            return try Store.unlock(backing: backing, secret: .passphrase(pass), migrating: migrating)
        case .passphrasePrompt:
            var pass = try Passphrase.prompt("Passphrase for \(backing): ", confirm: false)
            defer { secureWipe(&pass) }
            return try Store.unlock(backing: backing, secret: .passphrase(pass), migrating: migrating)
        case .platform(let choice):
            return try Store.unlock(
                backing: backing, secret: try sealedSecret(choice.openSealing(warn: warn)), migrating: migrating)
        }
    }

    /// The unlock secret of `platform`'s sealed slots.
    public static func sealedSecret(_ platform: any SealingPlatform) -> UnlockSecret {
        .sealed(platform: platform.descriptor.slotCode) { try platform.unseal($0) }
    }

    /// The control file's dispatcher for a mounted store: its key store, the platform's time
    /// and attestation. Needs the master key (before `forgetMaster()`).
    public static func controlDispatcher(for store: UnlockedStore, readOnly: Bool, platform: PlatformChoice) throws
        -> ControlDispatcher
    {
        guard let master = store.master else {
            throw FormatError.invalidArgument("the store's master key is needed to mount")
        }
        return try ControlDispatcher(
            master: master, keyStore: store.keyStoreFile(), readOnly: readOnly,
            time: platform.timePlatform(), attestation: platform.attestation())
    }
}
