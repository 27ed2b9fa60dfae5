import ArgumentParser
import ElasticFormat
import ElasticRuntime
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

    func run() throws {
        let checker: StoreChecker
        let lock: StoreLock
        do {
            let store = try unlock.unlock(backing, platform: platform)
            lock = try StoreLock(directory: store.directory, purpose: "checked by elastic fsck")
            checker = try StoreChecker(store: store)
        } catch { throw failure(error) }
        defer { withExtendedLifetime(lock) {} }
        // A progress line on a terminal, redrawn at most ten times a second.
        let tty = isatty(2) == 1 && !json
        var last = 0.0
        if tty {
            checker.progress = { c in
                let now = Date().timeIntervalSince1970
                guard now - last >= 0.1 else { return }
                last = now
                printProgress(c)
            }
        }
        do { try checker.run() } catch { throw failure(error) }
        if tty { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
        let c = checker.counts
        if json {
            let obj: [String: Any] = [
                "directories": c.directories, "files": c.files, "symlinks": c.symlinks, "others": c.others,
                "blocks": c.blocks, "bytes": c.bytes,
                "problems": checker.problems.map { ["path": $0.path, "problem": $0.what] },
            ]
            print(try jsonLine(obj))
        } else {
            for p in checker.problems { print("\(p.path): \(p.what)") }
            print(
                "checked \(c.directories) directories, \(c.files) files (\(c.blocks) blocks, \(c.bytes) bytes), \(c.symlinks) symlinks: "
                    + (checker.problems.isEmpty
                        ? "clean" : checker.problems.count == 1 ? "1 problem" : "\(checker.problems.count) problems"))
        }
        if !checker.problems.isEmpty { throw ExitCode(ElasticExitCode.problemsFound.rawValue) }
    }
}

private func printProgress(_ c: StoreChecker.Counts) {
    let line = "\r\u{1B}[Kchecking: \(c.directories) directories, \(c.files) files, \(c.blocks) blocks"
    FileHandle.standardError.write(Data(line.utf8))
}
