import ArgumentParser
import ElasticFormat
import ElasticPlatform
import ElasticRuntime

/// `elastic slot list|add|remove`: manage key slots without re-encrypting anything.
struct SlotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "slot", abstract: "List, add and remove key slots.",
        subcommands: [List.self, Add.self, Remove.self, Reseal.self])

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the key slots (no key needed).")
        @Argument var backing: String
        func run() throws {
            do {
                let (config, _) = try Store.readConfig(backing: backing)
                for s in config.slots {
                    switch s.kind {
                    case .keyFile: print("\(s.idHex)  keyfile")
                    case .passphrase(_, let logN, let r, let p):
                        print("\(s.idHex)  passphrase  scrypt N=2^\(logN) r=\(r) p=\(p)")
                    case .sealed(let code, _, let parameters):
                        let detail =
                            PlatformRegistry.descriptor(slotCode: code)?.describe(parameters) ?? "unknown platform"
                        print("\(s.idHex)  \(s.kind.name)  \(detail)")
                    }
                }
            } catch { throw failure(error) }
        }
    }

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add a key slot (opens the store with an existing one).")
        @Argument var backing: String
        @OptionGroup var unlock: UnlockOptions
        @OptionGroup var secret: SecretOptions
        func run() throws {
            do {
                let store = try unlock.unlock(backing, platform: secret.platformOptions)
                let (kind, key) = try secret.newSlot()
                let slot = try store.addSlot(kind: kind, secret: key)
                print("added key slot \(slot.idHex) (\(kind.name))")
            } catch { throw failure(error) }
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a key slot by its id (or a unique prefix).")
        @Argument var backing: String
        @Argument var id: String
        @OptionGroup var unlock: UnlockOptions
        @OptionGroup var platform: PlatformOptions
        func run() throws {
            do {
                let store = try unlock.unlock(backing, platform: platform)
                let slot = try store.removeSlot(idPrefix: id)
                print("removed key slot \(slot.idHex) (\(slot.kind.name))")
            } catch { throw failure(error) }
        }
    }

    struct Reseal: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Move SNP slots to the platform's current committed TCB (after a TCB upgrade).",
            discussion:
                "Opens the store with an SNP slot sealed to the old TCB (a platform can still derive keys for any TCB up to its committed one), seals a new slot to the committed TCB, and removes the old one. Never above the committed TCB."
        )
        @Argument var backing: String
        @OptionGroup var platform: PlatformOptions
        func run() throws {
            do {
                let p = try platform.open()
                let store = try Store.unlock(backing: backing, secret: StoreOpener.sealedSecret(p))
                for old in store.config.slots {
                    guard case .sealed(let code, _, let parameters) = old.kind, code == p.descriptor.slotCode else {
                        continue
                    }
                    guard let fresh = try p.resealed(parameters) else {
                        print("slot \(old.idHex) is already sealed to the committed TCB")
                        continue
                    }
                    let secret = try p.unseal(fresh)
                    let slot = try store.addSlot(
                        kind: .sealed(platform: code, salt: try ElasticFormatRandom.salt(), parameters: fresh),
                        secret: secret)
                    _ = try store.removeSlot(idPrefix: old.idHex)
                    print("resealed slot \(old.idHex) as \(slot.idHex): \(p.descriptor.describe(fresh))")
                }
            } catch { throw failure(error) }
        }
    }
}
