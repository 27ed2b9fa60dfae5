import Foundation
import Testing

/// A store written by ELASTIC's version 1 format (Fixtures/v1-store.tgz, made with the v1
/// binaries: directories, a 100 KB setuid file, a hard link, an xattr, a symlink with a long
/// target, a 200-byte name, a fifo, a 64 MiB sparse file, an empty file, a file owned by
/// 1234:5678 with mode 2640) is refused by mount with a message naming `elastic migrate`, and
/// reads back the same after the migration.
@Suite(.enabled(if: Env.canMount, "needs root and /dev/fuse"))
struct MigrateTests {
    @Test func version1StoreIsRefusedThenMigratedWithEverythingKept() throws {
        let dir = try sh("mktemp -d /tmp/elastic-migrate.XXXXXX").stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let mnt = dir + "/mnt", store = dir + "/store", key = dir + "/store.key"
        defer {
            _ = try? run("/bin/fusermount3", ["-u", mnt])
            _ = try? run("/bin/rm", ["-rf", dir])
        }
        try expectOK(
            sh(
                "mkdir '\(mnt)' && tar --xattrs --xattrs-include='user.*' -C '\(dir)' -xzf '\(Env.packageRoot)/Tests/ElasticIntegrationTests/Fixtures/v1-store.tgz'"
            ), "unpack")
        let refused = try run(Env.mountElastic, [store, mnt, "-o", "keyfile=" + key])
        #expect(refused.status == 11, "\(refused.stderr)")
        #expect(refused.stderr.contains("elastic migrate"), "\(refused.stderr)")

        let migrated = try run(Env.elastic, ["migrate", store, "--unlock-keyfile", key])
        expectOK(migrated, "migrate")
        #expect(migrated.stdout.contains("from version 1 to 2"), "\(migrated.stdout)")
        expectOK(try run(Env.elastic, ["fsck", store, "--unlock-keyfile", key]), "fsck after migrate")

        expectOK(try run(Env.mountElastic, [store, mnt, "-o", "keyfile=" + key]), "mount")
        defer { _ = try? run("/bin/fusermount3", ["-u", mnt]) }
        expectOK(try sh("cd '\(mnt)' && md5sum -c ../contents.md5"), "contents")
        #expect(try sh("cat '\(mnt)/docs/hello.txt'").stdout == "hello v1\n")
        #expect(try sh("getfattr --only-values -n user.color '\(mnt)/docs/hello.txt'").stdout == "blue")
        #expect(try sh("stat -c '%h %i' '\(mnt)/docs/hello.txt'").stdout.hasPrefix("2 "))
        #expect(
            try sh("stat -c %i '\(mnt)/docs/hello.txt'").stdout == sh("stat -c %i '\(mnt)/docs/hardlink.txt'").stdout)
        #expect(try sh("stat -c '%a %u %g' '\(mnt)/owned'").stdout == "2640 1234 5678\n")
        #expect(try sh("stat -c '%a' '\(mnt)/docs/deep/er/random.bin'").stdout == "4755\n")
        #expect(try sh("stat -c %F '\(mnt)/fifo'").stdout == "fifo\n")
        #expect(try sh("stat -c '%a %U' '\(mnt)/docs/deep'").stdout == "755 root\n")
        #expect(try sh("readlink '\(mnt)/longtarget' | wc -c").stdout == "3001\n")
        #expect(try sh("ls '\(mnt)' | awk 'length($0) == 200' | wc -l").stdout == "1\n")
        #expect(try sh("stat -c %s '\(mnt)/empty'").stdout == "0\n")
        // The sparse file stays sparse.
        #expect(
            try Int(sh("du -k '\(store)' | tail -1 | cut -f1").stdout.trimmingCharacters(in: .whitespacesAndNewlines))!
                < 4096)
        let again = try run(Env.elastic, ["migrate", store, "--unlock-keyfile", key])
        #expect(!again.ok)  // mounted (and current already)
    }
}
