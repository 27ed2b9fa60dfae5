import ArgumentParser
import ElasticFormat
import ElasticRuntime
import ElasticSystem

/// `elastic migrate BACKING`: converts an unmounted store of an older format to the current one.
struct MigrateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Convert an unmounted version 1 store to the current format (version 2).",
        discussion: """
            Version 2 keeps every file's type, owner, mode, device number and length in a sealed \
            record the host cannot edit. The store is written again in the new format next to \
            BACKING and the two are swapped in one step (a crash leaves either the old store or the \
            new one). The master key and every key slot stay as they are. Needs as much free space as \
            the store takes.
            """)

    @Argument(help: "The backing directory of the store.") var backing: String
    @OptionGroup var unlock: UnlockOptions
    @OptionGroup var platform: PlatformOptions

    func run() throws {
        ProcessHardening.raiseFileLimit()
        do {
            let store = try unlock.unlock(backing, platform: platform, migrating: true)
            let lock = try StoreLock(directory: store.directory)
            defer { withExtendedLifetime(lock) {} }
            let from = store.config.version
            let migrator = try StoreRekeyer(migrating: store)
            let line = ProgressLine()
            migrator.progress = { c in line.show("migrating: \(c.directories) directories, \(c.files) files") }
            try migrator.run(backing: backing)
            line.clear()
            let c = migrator.counts
            print(
                "migrated \(backing) from version \(from) to \(StoreConfig.currentVersion): \(c.directories) directories, "
                    + "\(c.files) files (\(c.bytes) bytes) written again; key slots unchanged")
        } catch { throw failure(error) }
    }
}
