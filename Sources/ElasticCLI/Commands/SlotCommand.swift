import ArgumentParser
import ElasticFormat

/// `elastic slot list|add|remove`: manage key slots without re-encrypting anything.
struct SlotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "slot", abstract: "List, add and remove key slots.",
        subcommands: [List.self, Add.self, Remove.self])

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the key slots (no key needed).")
        @Argument var backing: String
        func run() throws {
            do {
                let (config, _) = try Store.readConfig(backing: backing)
                for s in config.slots {
                    switch s.kind {
                    case .keyFile: print("\(s.idHex)  keyfile")
                    case .passphrase(_, let logN, let r, let p): print("\(s.idHex)  passphrase  scrypt N=2^\(logN) r=\(r) p=\(p)")
                    }
                }
            } catch { throw failure(error) }
        }
    }

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a key slot (opens the store with an existing one).")
        @Argument var backing: String
        @OptionGroup var unlock: UnlockOptions
        @OptionGroup var secret: SecretOptions
        func run() throws {
            do {
                let store = try unlock.unlock(backing)
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
        func run() throws {
            do {
                let store = try unlock.unlock(backing)
                let slot = try store.removeSlot(idPrefix: id)
                print("removed key slot \(slot.idHex) (\(slot.kind.name))")
            } catch { throw failure(error) }
        }
    }
}
