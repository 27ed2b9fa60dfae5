import ArgumentParser
import ElasticCrypto
import ElasticFormat
import ElasticPlatform
import ElasticRuntime
import ElasticSystem
import Foundation
import Glibc

/// `elastic rekey BACKING`: a new master key for an unmounted store.
struct RekeyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rekey",
        abstract: "Give an unmounted store a new master key; only the slot that opens it now is kept.",
        discussion: """
            Writes the whole store again under a new master key next to BACKING and swaps the two in \
            one step (a crash leaves either the old store or the new one), so a removed key slot, a \
            leaked key file or an old copy of the configuration no longer opens it. The new store \
            has one key slot, of the kind that opened it (--unlock-keyfile, --unlock-passphrase-file, \
            or --unlock-snp, which seals the new slot to this VM as it is now); add others with \
            `elastic slot add`. Needs as much free space as the store takes.
            """)

    @Argument(help: "The backing directory of the store.") var backing: String
    @OptionGroup var unlock: UnlockOptions
    @OptionGroup var platform: PlatformOptions

    func run() throws {
        guard unlock.snp || unlock.keyFile != nil || unlock.passphraseFile != nil else {
            throw CLIError(
                "rekey needs --unlock-keyfile, --unlock-passphrase-file or --unlock-snp (the new slot is made from it)")
        }
        ProcessHardening.raiseFileLimit()
        do {
            // The secret is read once: it opens the store and becomes the new store's slot.
            let store: UnlockedStore
            var slot: (kind: KeySlot.Kind, secret: [UInt8])
            if let keyFile = unlock.keyFile {
                slot = (.keyFile(salt: try Random.bytes(32)), try KeyFile.read(at: keyFile))
                store = try Store.unlock(backing: backing, secret: .keyFile(slot.secret))
            } else if let passphraseFile = unlock.passphraseFile {
                let d = KeySlot.defaultScrypt
                slot = (
                    .passphrase(salt: try Random.bytes(32), logN: d.logN, r: d.r, p: d.p),
                    try Passphrase.fromFile(passphraseFile)
                )
                store = try Store.unlock(backing: backing, secret: .passphrase(slot.secret))
            } else {
                let p = try platform.open()
                store = try Store.unlock(backing: backing, secret: StoreOpener.sealedSecret(p))
                let (parameters, secret) = try p.seal(SealChoice())
                slot = (
                    .sealed(platform: p.descriptor.slotCode, salt: try Random.bytes(32), parameters: parameters), secret
                )
            }
            defer { secureWipe(&slot.secret) }
            let lock = try StoreLock(directory: store.directory)
            defer { withExtendedLifetime(lock) {} }
            let dropped = store.config.slots.count - 1
            let rekeyer = try StoreRekeyer(source: store, slot: slot)
            let line = ProgressLine()
            rekeyer.progress = { c in line.show("rekeying: \(c.directories) directories, \(c.files) files") }
            try rekeyer.run(backing: backing)
            line.clear()
            let c = rekeyer.counts
            print(
                "rekeyed \(backing): new master key; \(c.directories) directories, \(c.files) files (\(c.bytes) bytes) written again; "
                    + "one key slot (\(slot.kind.name))"
                    + (dropped > 0 ? ", \(dropped) other slot\(dropped == 1 ? "" : "s") removed" : ""))
        } catch { throw failure(error) }
    }
}
