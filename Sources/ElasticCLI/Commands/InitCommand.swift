import ArgumentParser
import ElasticFormat

/// `elastic init [--keyfile K | --passphrase-file F] BACKING`
struct InitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init", abstract: "Create a new encrypted store in an empty directory.")

    @OptionGroup var secret: SecretOptions

    @Argument(help: "The backing directory (created if missing; must be empty).")
    var backing: String

    func run() throws {
        do {
            let (kind, key) = try secret.newSlot()
            let store = try Store.create(backing: backing, kind: kind, secret: key)
            print("created ELASTIC store in \(backing) (key slot \(store.config.slots[0].idHex), \(kind.name))")
        } catch { throw failure(error) }
    }
}
