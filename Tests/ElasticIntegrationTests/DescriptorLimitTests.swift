import Foundation
import Testing

/// The daemon's descriptors stay bounded whatever the number of inodes the kernel holds: under
/// an open-file limit of 96 it creates, lists with attributes, reads, renames and removes many
/// times that many files and directories, and a filesystem stressor runs without EMFILE.
@Suite(.enabled(if: Env.canMount, "needs root and /dev/fuse"))
struct DescriptorLimitTests {
    static let limit = 96
    static let launcher = ["prlimit", "--nofile=\(limit):\(limit)"]

    @Test func manyTimesTheLimitOfFilesAndDirectories() throws {
        try MountedStore.with(launcher: Self.launcher, foregroundLog: true, base: "/dev/shm") { s in
            // 3,000 files (31 times the limit): a flat directory and a deep tree.
            let populate = try sh(
                """
                cd '\(s.mountpoint)'
                mkdir flat
                for i in $(seq 1 1500); do echo "flat $i" > flat/f$i; done
                for d in $(seq 1 30); do
                  mkdir -p tree/d$d/a/b/c
                  for i in $(seq 1 50); do echo "tree $d $i" > tree/d$d/a/b/c/f$i; done
                done
                p=deep; for i in $(seq 1 120); do p=$p/l$i; done; mkdir -p $p && echo bottom > $p/file
                """)
            expectOK(populate, "create")
            // The kernel holds thousands of inodes; the daemon holds few descriptors.
            let held = try s.daemonDescriptors()
            #expect(held < Self.limit, "daemon holds \(held) descriptors")

            let listing = try sh("cd '\(s.mountpoint)' && ls -lR . | grep -c '^-'")
            expectOK(listing, "ls -lR")
            #expect(listing.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "3001")
            // Every file's content, as a sorted multiset (names change below, contents do not).
            let contents = "cd '\(s.mountpoint)' && find . -type f -print0 | xargs -0 cat | sort | md5sum"
            let before = try sh(contents)
            expectOK(before, "read everything")

            // Rename every file and every directory (children are reached through moved parents).
            let renames = try sh(
                """
                cd '\(s.mountpoint)'
                for i in $(seq 1 1500); do mv flat/f$i flat/g$i; done
                for d in $(seq 1 30); do mv tree/d$d/a/b/c tree/d$d/a/b/c2; mv tree/d$d tree/e$d; done
                mv deep deeper
                cat deeper/$(seq -s / -f 'l%g' 1 120)/file
                """)
            expectOK(renames, "rename")
            #expect(renames.stdout == "bottom\n")
            #expect(try sh(contents).stdout == before.stdout)
            #expect(
                try sh("cat '\(s.mountpoint)'/flat/g777 '\(s.mountpoint)'/tree/e7/a/b/c2/f9").stdout
                    == "flat 777\ntree 7 9\n")

            // And everything survives a remount under the same limit, then goes away.
            try s.remount()
            let count = try sh("cd '\(s.mountpoint)' && ls -lR . | grep -c '^-'")
            #expect(count.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "3001")
            expectOK(
                try sh("cd '\(s.mountpoint)' && rm -rf flat tree deeper && test -z \"$(ls -A)\""), "remove everything")
            let log = (try? String(contentsOfFile: s.daemonLog!, encoding: .utf8)) ?? ""
            #expect(!log.contains("Too many open files") && !log.contains("descriptors"), "\(log)")
        }
    }

    /// stress-ng's filesystem stressors (creates, deep trees, renames, links, symlinks, xattrs,
    /// chmod, utime, random I/O) under the same limit: no operation fails for lack of descriptors.
    @Test func filesystemStressorsUnderALowLimit() throws {
        guard try sh("command -v stress-ng || true").stdout.contains("stress-ng") else {
            Issue.record("stress-ng is not installed (CI installs it)")
            return
        }
        try MountedStore.with(launcher: Self.launcher, foregroundLog: true, base: "/dev/shm") { s in
            let r = try sh(
                """
                cd '\(s.dir)'
                # The test runner starts children with signals blocked; stress-ng ends its run on SIGALRM.
                timeout -k 10 240 python3 -c 'import os, signal, sys; signal.pthread_sigmask(signal.SIG_SETMASK, []); os.execvp(sys.argv[1], sys.argv[1:])' \
                  stress-ng --temp-path '\(s.mountpoint)' --dir 1 --dir-dirs 1024 \
                  --dirdeep 1 --dirdeep-inodes 4000 --dentry 1 --dentries 1024 --filename 1 --rename 1 \
                  --link 1 --symlink 1 --touch 1 --chmod 1 --utime 1 --xattr 1 --hdd 1 --hdd-bytes 8M \
                  --seek 1 --seek-size 8M --timeout 20s --verify 2>&1
                """)
            let log = (try? String(contentsOfFile: s.daemonLog!, encoding: .utf8)) ?? ""
            if !r.ok { Issue.record("stress-ng did not finish; the daemon's threads:\n\(s.daemonStacks())") }
            expectOK(r, "stress-ng")
            #expect(r.stdout.contains("successful run completed"), "\(r.stdout)\ndaemon log:\n\(log.suffix(6000))")
            #expect(!r.stdout.contains("Too many open files"), "\(r.stdout)")
            #expect(!log.contains("Too many open files") && !log.contains("out of file descriptors"), "\(log)")
            #expect(try s.daemonDescriptors() < Self.limit)
        }
    }
}
