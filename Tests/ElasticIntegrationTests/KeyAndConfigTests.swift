import Foundation
import Testing

/// Keys, key slots and the store configuration, through the real binaries.
@Suite(.enabled(if: Env.canMount, "needs root and /dev/fuse"))
struct KeyAndConfigTests {
    @Test func wrongKeyIsAClearErrorAndNoMount() throws {
        try MountedStore.with { s in
            try s.unmount()
            try sh("head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n' > '\(s.dir)/wrong.key'")
            let r = try run(Env.mountElastic, [s.backing, s.mountpoint, "-o", "keyfile=\(s.dir)/wrong.key"])
            #expect(r.status == 12)
            #expect(r.stderr.contains("wrong key"))
            #expect(r.stderr.split(separator: "\n").count == 1)
            #expect(try !sh("grep -c ' \(s.mountpoint) ' /proc/mounts || true").stdout.hasPrefix("1"))
            let missing = try run(Env.mountElastic, [s.backing, s.mountpoint, "-o", "keyfile=\(s.dir)/missing.key"])
            #expect(missing.status != 0 && missing.stderr.contains("missing.key"))
        }
    }

    /// What mount-helpers/install.sh installs: completions generated from the argument
    /// definitions, which a shell can load and which know the subcommands and options.
    @Test func shellCompletionsComeFromTheArgumentDefinitions() throws {
        for shell in ["bash", "zsh", "fish"] {
            let r = try run(Env.elastic, ["--generate-completion-script", shell])
            expectOK(r, "\(shell) completion")
            #expect(
                r.stdout.contains("attest") && r.stdout.contains("unlock-keyfile"),
                "\(shell) completion knows the commands")
            let m = try run(Env.mountElastic, ["--generate-completion-script", shell])
            #expect(m.status == 0 && m.stdout.contains("notify-fd") == false, "hidden options stay hidden")
        }
        let file = try sh("mktemp").stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        defer { _ = try? sh("rm -f '\(file)'") }
        try sh("'\(Env.elastic)' --generate-completion-script bash > '\(file)'")
        let offered = try run(
            "/bin/bash",
            [
                "-c",
                "source '\(file)' && COMP_WORDS=(elastic sl) COMP_CWORD=1 COMP_LINE='elastic sl' COMP_POINT=10 && _elastic && echo \"${COMPREPLY[*]}\"",
            ])
        #expect(offered.status == 0 && offered.stdout.contains("slot"), "\(offered.stdout) \(offered.stderr)")
    }

    @Test func corruptedConfigIsAClearError() throws {
        try MountedStore.with { s in
            try s.unmount()
            let conf = s.backing + "/elastic.conf"
            try sh(
                "cp '\(conf)' '\(s.dir)/conf.orig' && chmod u+w '\(conf)' && printf '\\x03' | dd of='\(conf)' bs=1 seek=13 conv=notrunc status=none"
            )
            // Known flags, edited: the MAC refuses it (10, docs/cli-abi.md).
            let r = try run(Env.mountElastic, [s.backing, s.mountpoint, "-o", "keyfile=\(s.keyFile)"])
            #expect(
                r.status == 10 && r.stderr.contains("corrupt or edited store configuration"), "\(r.status) \(r.stderr)")
            // A slot's salt edited: no slot opens (12).
            try sh("cp '\(s.dir)/conf.orig' '\(conf)'")
            try flipByte(conf, at: 60)
            let r2 = try run(Env.mountElastic, [s.backing, s.mountpoint, "-o", "keyfile=\(s.keyFile)"])
            #expect(r2.status == 12 && r2.stderr.contains("wrong key"), "\(r2.status) \(r2.stderr)")
            // An unknown feature flag or format version: a newer ELASTIC's store (11).
            try sh(
                "cp '\(s.dir)/conf.orig' '\(conf)' && printf '\\x80' | dd of='\(conf)' bs=1 seek=10 conv=notrunc status=none"
            )
            let r3 = try run(Env.mountElastic, [s.backing, s.mountpoint, "-o", "keyfile=\(s.keyFile)"])
            #expect(r3.status == 11 && r3.stderr.contains("unknown feature flags"), "\(r3.status) \(r3.stderr)")
            try sh(
                "cp '\(s.dir)/conf.orig' '\(conf)' && printf '\\x09' | dd of='\(conf)' bs=1 seek=9 conv=notrunc status=none"
            )
            let r4 = try run(
                Env.elastic,
                ["slot", "add", s.backing, "--unlock-keyfile", s.keyFile, "--keyfile", s.dir + "/other.key"])
            #expect(
                r4.status == 11 && r4.stderr.contains("version 9"),
                "the CLI maps it the same: \(r4.status) \(r4.stderr)")
            #expect(
                try sh("grep -c ' \(s.mountpoint) ' /proc/mounts || true").stdout.hasPrefix("0"), "nothing was mounted")
            try sh("cp '\(s.dir)/conf.orig' '\(conf)'")
            try s.mount()
        }
    }

    /// One mount per store: a second mount of the same BACKING is refused, naming the first;
    /// once that one is gone (unmounted or killed) the store mounts again.
    @Test func aStoreIsMountedOnceAtATime() throws {
        try MountedStore.with { s in
            try sh("mkdir -p '\(s.dir)/second'")
            let second = try run(Env.mountElastic, [s.backing, s.dir + "/second", "-o", "keyfile=\(s.keyFile)"])
            #expect(
                second.status == 33 && second.stderr.contains("already in use"), "\(second.status) \(second.stderr)")
            #expect(second.stderr.contains("by process "), "\(second.stderr)")
            #expect(try sh("grep -c ' \(s.dir)/second ' /proc/mounts || true").stdout.hasPrefix("0"))
            #expect(!(try sh("ls -a '\(s.mountpoint)'").stdout.contains("elastic.lock")), "the lock file is internal")
            // A daemon killed with SIGKILL leaves no stale lock.
            guard let pid = try s.daemonPID() else { throw TestFailure("no daemon") }
            kill(pid, SIGKILL)
            try sh(
                "for i in $(seq 50); do grep -q ' \(s.mountpoint) ' /proc/mounts || exit 0; sleep 0.1; done; fusermount3 -u '\(s.mountpoint)' || true"
            )
            s.markUnmounted()
            try s.mount()
            #expect(try sh("ls '\(s.mountpoint)'").status == 0)
        }
    }

    /// `elastic slot add` run by several processes at once: every slot lands (the configuration
    /// is rewritten under an flock of BACKING, starting from what is on disk).
    @Test func concurrentSlotChangesLoseNothing() throws {
        try MountedStore.with { s in
            try s.unmount()
            let adds = (0..<6).map {
                "'\(Env.elastic)' slot add '\(s.backing)' --unlock-keyfile '\(s.keyFile)' --keyfile '\(s.dir)/k\($0)' >/dev/null 2>&1 &"
            }.joined(separator: "\n")
            try expectOK(sh(adds + "\nwait"), "six concurrent slot adds")
            let list = try run(Env.elastic, ["slot", "list", s.backing])
            #expect(list.stdout.split(separator: "\n").filter { $0.contains("keyfile") }.count == 7, "\(list.stdout)")
            // Each new key opens the store (a slot change that was lost would not).
            for i in 0..<6 {
                let r = try run(
                    Env.elastic,
                    ["slot", "add", s.backing, "--unlock-keyfile", "\(s.dir)/k\(i)", "--keyfile", s.dir + "/probe\(i)"])
                expectOK(r, "key \(i) opens the store")
            }
            try s.mount()
        }
    }

    @Test func passphraseSlotAddListRemove() throws {
        try MountedStore.with { s in
            try sh("echo hello > '\(s.path("f"))'")
            try s.unmount()
            try sh("echo 'correct horse battery staple' > '\(s.dir)/pass'")
            let add = try run(
                Env.elastic,
                [
                    "slot", "add", s.backing, "--unlock-keyfile", s.keyFile, "--passphrase-file", s.dir + "/pass",
                    "--scrypt-logn", "12",
                ])
            expectOK(add, "slot add")
            let list = try run(Env.elastic, ["slot", "list", s.backing])
            #expect(list.stdout.contains("keyfile") && list.stdout.contains("passphrase  scrypt N=2^12"))
            let mount = try run(Env.mountElastic, [s.backing, s.mountpoint, "-o", "passfile=\(s.dir)/pass"])
            expectOK(mount, "mount with passphrase")
            #expect(try sh("cat '\(s.path("f"))'").stdout == "hello\n")
            try expectOK(run("/bin/fusermount3", ["-u", s.mountpoint]), "unmount")
            try waitForDaemonExit(backing: s.backing)
            let keySlot = String(list.stdout.split(separator: "\n").first { $0.contains("keyfile") }!.prefix(16))
            expectOK(
                try run(
                    Env.elastic, ["slot", "remove", s.backing, keySlot, "--unlock-passphrase-file", s.dir + "/pass"]),
                "slot remove")
            let refused = try run(Env.mountElastic, [s.backing, s.mountpoint, "-o", "keyfile=\(s.keyFile)"])
            #expect(refused.status != 0 && refused.stderr.contains("no key slot"))
        }
    }

    @Test func initRefusesANonEmptyDirectoryAndKeepsItsData() throws {
        let dir = try sh("mktemp -d").stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        defer { _ = try? run("/bin/rm", ["-rf", dir]) }
        try sh("echo precious > '\(dir)/file'")
        let r = try run(Env.elastic, ["init", "--keyfile", dir + "-key", dir])
        #expect(r.status != 0 && r.stderr.contains("not empty"))
        #expect(try sh("cat '\(dir)/file'").stdout == "precious\n")
        _ = try? run("/bin/rm", ["-f", dir + "-key"])
    }

    @Test func foregroundDaemonExitsCleanlyOnSIGTERM() throws {
        try MountedStore.with { s in
            try s.unmount()
            let p = Process()
            p.executableURL = URL(fileURLWithPath: Env.mountElastic)
            p.arguments = [s.backing, s.mountpoint, "-f", "-o", "keyfile=\(s.keyFile)"]
            p.standardError = FileHandle.nullDevice
            try p.run()
            var mounted = false
            for _ in 0..<1200 where !mounted {  // (up to a minute on a loaded machine)
                usleep(50_000)
                mounted = try sh("grep -q ' \(s.mountpoint) ' /proc/mounts && echo yes || true").stdout.contains("yes")
            }
            #expect(mounted)
            try sh("head -c 2000000 /dev/urandom > '\(s.path("f"))'")
            p.terminate()
            p.waitUntilExit()
            #expect(p.terminationStatus == 0)
            #expect(try sh("grep -q ' \(s.mountpoint) ' /proc/mounts && echo still || true").stdout.isEmpty)
            try s.mount()
            #expect(try sh("stat -c %s '\(s.path("f"))'").stdout == "2000000\n")
        }
    }
}
