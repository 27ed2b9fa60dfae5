import ArgumentParser
import ElasticFormat
import ElasticSEV

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
                    case .passphrase(_, let logN, let r, let p): print("\(s.idHex)  passphrase  scrypt N=2^\(logN) r=\(r) p=\(p)")
                    case .snp(_, let q):
                        let fields = GuestFieldSelect(rawValue: q.fields)
                        let names = [(GuestFieldSelect.measurement, "measurement"), (.guestPolicy, "policy"), (.tcbVersion, "tcb"), (.imageID, "image-id"), (.familyID, "family-id"), (.guestSVN, "guest-svn")]
                            .filter { fields.contains($0.0) }.map(\.1).joined(separator: "+")
                        print("\(s.idHex)  snp  root=\(q.rootKey == 0 ? "vcek" : "vmrk") fields=\(names) vmpl=\(q.vmpl) tcb=\(TCBVersion(raw: q.tcbVersion))")
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
            discussion: "Opens the store with an SNP slot sealed to the old TCB (a platform can still derive keys for any TCB up to its committed one), seals a new slot to the committed TCB, and removes the old one. Never above the committed TCB.")
        @Argument var backing: String
        @OptionGroup var platform: PlatformOptions
        func run() throws {
            do {
                let p = try platform.open()
                let store = try Store.unlock(backing: backing, secret: .snp { try SNPSealing.derive(guest: p.guest, $0) })
                for old in store.config.slots {
                    guard case .snp(_, let q) = old.kind else { continue }
                    let fresh = try SNPSealing.parameters(guest: p.guest, vmpl: q.vmpl, root: SNPRootKey(rawValue: UInt32(q.rootKey)) ?? .vcek, fields: GuestFieldSelect(rawValue: q.fields))
                    if fresh == q { print("slot \(old.idHex) is already sealed to the committed TCB"); continue }
                    let secret = try SNPSealing.derive(guest: p.guest, fresh)
                    let slot = try store.addSlot(kind: .snp(salt: try ElasticFormatRandom.salt(), request: fresh), secret: secret)
                    _ = try store.removeSlot(idPrefix: old.idHex)
                    print("resealed slot \(old.idHex) as \(slot.idHex) for TCB \(TCBVersion(raw: fresh.tcbVersion))")
                }
            } catch { throw failure(error) }
        }
    }
}
