import ArgumentParser
import ElasticFormat
import ElasticRuntime
import ElasticSystem
import Foundation
import Glibc

/// `elastic fsck BACKING`: check an unmounted store, block by block (read-only).
struct FsckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fsck",
        abstract:
            "Check an unmounted store: every directory, name, file block, symlink, extended attribute and the key store.",
        discussion: """
            Opens the store like mount does and reads all of it; changes nothing. Prints every problem \
            with the plaintext path it affects. Exit 0 when the store is clean, 40 when problems were \
            found, 33 when the store is mounted.
            """)

    @Argument(help: "The backing directory of the store.") var backing: String
    @OptionGroup var unlock: UnlockOptions
    @OptionGroup var platform: PlatformOptions
    @Flag(name: .customLong("json"), help: "Print one JSON object: counts and problems.") var json = false
    @Flag(
        name: .customLong("repair"),
        help:
            "Move damaged entries aside (to /lost+found, or out of the tree when their name is unreadable), then check again."
    )
    var repair = false

    func run() throws {
        ProcessHardening.raiseFileLimit()
        var checker: StoreChecker
        let lock: StoreLock
        let store: UnlockedStore
        do {
            store = try unlock.unlock(backing, platform: platform)
            lock = try StoreLock(directory: store.directory)
            checker = try StoreChecker(store: store)
        } catch { throw failure(error) }
        defer { withExtendedLifetime(lock) {} }
        let line = ProgressLine(enabled: !json)
        checker.progress = { c in
            line.show("checking: \(c.directories) directories, \(c.files) files, \(c.blocks) blocks")
        }
        do { try checker.run() } catch { throw failure(error) }
        line.clear()
        if checker.restoredFromJournal > 0 {
            let note = "undo journal: put back \(checker.restoredFromJournal) blocks of a write a crash interrupted"
            if json { FileHandle.standardError.write(Data((note + "\n").utf8)) } else { print(note) }
        }
        if repair && !checker.problems.isEmpty {
            // Repair, say what was done, then check the result from scratch.
            do { try checker.repair() } catch { throw failure(error) }
            for p in checker.problems {
                let line = "\(p.path): \(p.what): \(p.repaired ?? "not repairable here")"
                if json { FileHandle.standardError.write(Data((line + "\n").utf8)) } else { print(line) }
            }
            do {
                checker = try StoreChecker(store: store)
                try checker.run()
            } catch { throw failure(error) }
            if !json { print("after repair:") }
        }
        let c = checker.counts
        if json {
            let obj: [String: Any] = [
                "directories": c.directories, "files": c.files, "symlinks": c.symlinks, "others": c.others,
                "blocks": c.blocks, "bytes": c.bytes, "quarantined": c.quarantined,
                "problems": checker.problems.map { ["path": $0.path, "problem": $0.what] },
            ]
            print(try jsonLine(obj))
        } else {
            for p in checker.problems { print("\(p.path): \(p.what)") }
            if c.quarantined > 0 {
                print("/lost+found holds \(c.quarantined) entries moved aside by an earlier repair (not checked)")
            }
            print(
                "checked \(c.directories) directories, \(c.files) files (\(c.blocks) blocks, \(c.bytes) bytes), \(c.symlinks) symlinks: "
                    + (checker.problems.isEmpty
                        ? "clean" : checker.problems.count == 1 ? "1 problem" : "\(checker.problems.count) problems"))
        }
        if !checker.problems.isEmpty { throw ExitCode(ElasticExitCode.problemsFound.rawValue) }
    }
}
