import Foundation
import Testing

/// The key store and keyed operations through the real mount and the `elastic` CLI, checked
/// against independent implementations (openssl, Python's cryptography).
@Suite(.enabled(if: Env.canMount, "needs root and /dev/fuse"))
struct KeyStoreTests {
    /// A user's session: make keys, sign and have openssl verify, encrypt and decrypt, remount.
    @Test func signaturesVerifyWithOpenSSLAndKeysSurviveARemount() throws {
        try MountedStore.with { s in
            let env = ["E": Env.elastic, "MNT": s.mountpoint, "W": s.dir]
            expectOK(
                try sh(
                    """
                    cd "$MNT"
                    "$E" key create rsa --type rsa --bits 3072
                    "$E" key create p256 --type ec-p256
                    "$E" key create p384 --type ec-p384
                    "$E" key create ed --type ed25519
                    head -c 300000 /dev/urandom > "$W/doc"
                    for k in rsa p256 p384 ed; do "$E" key public $k --out "$W/$k.pub"; done
                    "$E" sign --key rsa --in "$W/doc" --out "$W/rsa-pss.sig"
                    openssl dgst -sha256 -verify "$W/rsa.pub" -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:-1 -signature "$W/rsa-pss.sig" "$W/doc"
                    "$E" sign --key rsa --scheme pkcs1 --hash sha512 --in "$W/doc" --out "$W/rsa-pkcs1.sig"
                    openssl dgst -sha512 -verify "$W/rsa.pub" -signature "$W/rsa-pkcs1.sig" "$W/doc"
                    "$E" sign --key p256 --in "$W/doc" > "$W/p256.sig"
                    openssl dgst -sha256 -verify "$W/p256.pub" -signature "$W/p256.sig" "$W/doc"
                    "$E" sign --key p384 --in "$W/doc" > "$W/p384.sig"
                    openssl dgst -sha384 -verify "$W/p384.pub" -signature "$W/p384.sig" "$W/doc"
                    "$E" sign --key ed --in "$W/doc" > "$W/ed.sig"
                    openssl pkeyutl -verify -pubin -inkey "$W/ed.pub" -rawin -in "$W/doc" -sigfile "$W/ed.sig"
                    "$E" verify --key ed --signature "$W/ed.sig" --in "$W/doc"
                    """, env: env), "sign and verify with openssl")
            // A signature over other data, or a changed signature, is refused with exit 22.
            try sh("cp '\(s.dir)/doc' '\(s.dir)/doc2' && printf x >> '\(s.dir)/doc2'")
            let bad = try run(
                Env.elastic,
                [
                    "verify", "--key", "p256", "--signature", s.dir + "/p256.sig", "--in", s.dir + "/doc2", "--mount",
                    s.mountpoint,
                ])
            #expect(bad.status == 22 && bad.stderr.contains("does not verify"), "\(bad.status) \(bad.stderr)")
            // The key store is in no file of the mount and holds no key in the clear.
            let listing = try sh("ls -a '\(s.mountpoint)'").stdout
            #expect(
                !listing.contains("elastic.keys") && FileManager.default.fileExists(atPath: s.backing + "/elastic.keys")
            )
            let before = try run(Env.elastic, ["key", "list", "--mount", s.mountpoint]).stdout
            let pub = try sh("cat '\(s.dir)/ed.pub'").stdout
            try s.remount()
            #expect(
                try run(Env.elastic, ["key", "list", "--mount", s.mountpoint]).stdout == before
                    && before.split(separator: "\n").count == 4)
            #expect(
                try run(Env.elastic, ["key", "public", "ed", "--mount", s.mountpoint]).stdout == pub,
                "the same key after a remount")
            expectOK(
                try run(
                    Env.elastic,
                    [
                        "verify", "--key", "ed", "--signature", s.dir + "/ed.sig", "--in", s.dir + "/doc", "--mount",
                        s.mountpoint,
                    ]), "verify after remount")
            expectOK(try run(Env.elastic, ["key", "delete", "ed", "--mount", s.mountpoint]), "delete")
            try s.remount()
            let gone = try run(Env.elastic, ["sign", "--key", "ed", "--in", s.dir + "/doc", "--mount", s.mountpoint])
            #expect(gone.status == 20 && gone.stderr.contains("no such key"))
        }
    }

    /// Keys imported from openssl give byte-identical deterministic signatures and MACs.
    /// More slow requests than a uid may have queued (4): the daemon answers EAGAIN and the CLI
    /// sends the same request again until it is taken, so every key is made under its own name.
    @Test func theCLIRetriesSlowRequestsTheQueueTurnsAway() throws {
        try MountedStore.with { s in
            let creates = (1...8).map {
                "'\(Env.elastic)' key create r\($0) --type rsa --bits 2048 --mount '\(s.mountpoint)' || echo FAILED r\($0) &"
            }.joined(separator: "\n")
            let r = try sh(creates + "\nwait")
            #expect(!r.stdout.contains("FAILED"), "\(r.stdout) \(r.stderr)")
            let names = try run(Env.elastic, ["key", "list", "--mount", s.mountpoint]).stdout.split(separator: "\n")
                .map { String($0.split(separator: "\t").first ?? "") }.sorted()
            #expect(names == (1...8).map { "r\($0)" }.sorted(), "\(names)")
        }
    }

    @Test func importedKeysAgreeWithOpenSSL() throws {
        try MountedStore.with { s in
            let env = ["E": Env.elastic, "MNT": s.mountpoint, "W": s.dir]
            expectOK(
                try sh(
                    """
                    cd "$W"
                    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.pem 2>/dev/null
                    openssl genpkey -algorithm ED25519 -outform DER -out ed.der
                    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ec.pem
                    head -c 10000 /dev/urandom > msg
                    "$E" key import rsa --type rsa --in rsa.pem --mount "$MNT"
                    "$E" key import ed --type ed25519 --in ed.der --mount "$MNT"
                    "$E" key import ec --type ec-p256 --in ec.pem --mount "$MNT"
                    "$E" sign --key rsa --scheme pkcs1 --in msg --mount "$MNT" > ours.sig
                    openssl dgst -sha256 -sign rsa.pem -out theirs.sig msg
                    cmp ours.sig theirs.sig
                    "$E" sign --key ed --in msg --mount "$MNT" > ours-ed.sig
                    openssl pkeyutl -sign -keyform DER -inkey ed.der -rawin -in msg -out theirs-ed.sig
                    cmp ours-ed.sig theirs-ed.sig
                    openssl dgst -sha256 -sign ec.pem -out theirs-ec.sig msg
                    "$E" verify --key ec --signature theirs-ec.sig --in msg --mount "$MNT"
                    head -c 32 /dev/urandom > mac.key
                    "$E" key import mac --type hmac-sha256 --in mac.key --mount "$MNT"
                    ours=$("$E" hmac --key mac --hex --in msg --mount "$MNT")
                    theirs=$(openssl dgst -sha256 -mac HMAC -macopt hexkey:$(od -An -tx1 -v mac.key | tr -d ' \\n') -r msg | cut -d' ' -f1)
                    test "$ours" = "$theirs"
                    """, env: env), "imports agree with openssl")
            let wrongType = try run(
                Env.elastic,
                ["key", "import", "x", "--type", "ec-p384", "--in", s.dir + "/ec.pem", "--mount", s.mountpoint])
            #expect(wrongType.status == 20, "a P-256 key is not imported as P-384")
            let badName = try run(Env.elastic, ["key", "create", "a/b", "--type", "aes256", "--mount", s.mountpoint])
            #expect(badName.status == 1 && badName.stderr.contains("invalid key name"), "\(badName.stderr)")
            let json = try run(Env.elastic, ["hash", "--json", s.dir + "/msg", "--mount", s.mountpoint]).stdout
            #expect(
                json.hasPrefix("{\"algorithm\":\"sha256\",\"digest\":\"") && json.contains("\"file\":\"\(s.dir)/msg\""),
                "\(json)")
            let notExportable = try run(Env.elastic, ["key", "export", "rsa", "--mount", s.mountpoint])
            #expect(
                notExportable.status == 20 && notExportable.stdout.isEmpty
                    && notExportable.stderr.contains("exportable"))
        }
    }

    /// Encryption in segments: round trip, refusal of tampering and truncation (no output file
    /// left behind), and an independent decryption with Python's cryptography.
    @Test func encryptedFilesRoundTripAndRefuseTampering() throws {
        try MountedStore.with { s in
            let env = ["E": Env.elastic, "MNT": s.mountpoint, "W": s.dir, "SCRIPTS": Env.scripts]
            expectOK(
                try sh(
                    """
                    cd "$MNT"
                    "$E" key create vault --type aes256 --exportable
                    head -c 1000000 /dev/urandom > "$W/plain"
                    "$E" encrypt --key vault --aad invoice-7 --in "$W/plain" --out "$W/sealed"
                    test $(stat -c %s "$W/sealed") -eq $((1000000 + 6 + 5 + 32 + 245 * 16))
                    "$E" decrypt --aad invoice-7 --in "$W/sealed" --out "$W/back"
                    cmp "$W/plain" "$W/back"
                    : | "$E" encrypt --key vault | "$E" decrypt | cmp - /dev/null
                    head -c 4096 /dev/urandom > "$W/one"; "$E" encrypt --key vault --in "$W/one" | "$E" decrypt | cmp - "$W/one"
                    "$E" key export vault --out "$W/vault.key"
                    test $(stat -c %a "$W/vault.key") = 600
                    PY=""
                    for p in /usr/bin/python3 python3; do if $p -c 'import cryptography' 2>/dev/null; then PY=$p; break; fi; done
                    test -n "$PY"
                    $PY "$SCRIPTS/aead_stream_decrypt.py" "$W/vault.key" "$W/sealed" invoice-7 | cmp - "$W/plain"
                    """, env: env), "encrypt/decrypt")
            func refused(_ edit: String, _ what: String, aad: String = "invoice-7") throws {
                try sh("cp '\(s.dir)/sealed' '\(s.dir)/edited' && \(edit)")
                let r = try run(
                    Env.elastic,
                    [
                        "decrypt", "--aad", aad, "--in", s.dir + "/edited", "--out", s.dir + "/out", "--mount",
                        s.mountpoint,
                    ])
                #expect(r.status == 22, "\(what): \(r.status) \(r.stderr)")
                #expect(
                    !FileManager.default.fileExists(atPath: s.dir + "/out")
                        && !FileManager.default.fileExists(atPath: s.dir + "/out.elastic-tmp"), "\(what): no output")
            }
            try refused(
                "python3 -c 'import sys; f = open(sys.argv[1], \"r+b\"); f.seek(500000); b = f.read(1); f.seek(500000); f.write(bytes([b[0] ^ 0xFF]))' '\(s.dir)/edited'",
                "a flipped byte")
            try refused("truncate -s $((6 + 5 + 32 + 200 * 4112)) '\(s.dir)/edited'", "cut at a segment boundary")
            try refused("truncate -s -1 '\(s.dir)/edited'", "one byte short")
            try refused("true", "other AAD", aad: "invoice-8")
            try refused(
                "head -c 43 '\(s.dir)/sealed' > '\(s.dir)/edited' && tail -c +$((43 + 4112 + 1)) '\(s.dir)/sealed' >> '\(s.dir)/edited'",
                "a segment dropped")
        }
    }

    /// Access: the control file is the mounting user's unless ctl_group widens it; every uid
    /// has its own key names; root reaches another uid's key only as UID:NAME; input never
    /// chooses whose key is used.
    @Test func otherUsersAreRefusedWhatTheyMayNotDo() throws {
        try MountedStore.with(options: ["allow_other", "ctl_group=4321"]) { s in
            try sh("chmod 755 '\(s.dir)' '\(s.mountpoint)'")
            func user(_ uid: Int, gid: Int = 4321, _ args: [String], stdin: String? = nil) throws -> CommandResult {
                try run(
                    "/usr/bin/setpriv",
                    ["--reuid=\(uid)", "--regid=\(gid)", "--clear-groups", Env.elastic] + args + [
                        "--mount", s.mountpoint,
                    ], stdin: stdin)
            }
            func root(_ args: [String], stdin: String? = nil) throws -> CommandResult {
                try run(Env.elastic, args + ["--mount", s.mountpoint], stdin: stdin)
            }
            #expect(try sh("stat -c '%a %g' '\(s.mountpoint)/.elastic'").stdout == "660 4321\n")
            expectOK(try user(1234, ["key", "create", "alice", "--type", "ed25519"]), "alice creates a key")
            expectOK(try user(1234, ["sign", "--key", "alice"], stdin: "hello"), "alice signs")
            expectOK(try root(["key", "create", "roots", "--type", "aes256"]), "root creates a key")
            #expect(try user(1234, ["key", "list"]).stdout.hasPrefix("alice\t"))
            #expect(try user(1235, ["key", "list"]).stdout.isEmpty, "bob sees none of alice's keys")
            // Bob's plain names are his own: alice's key does not exist for him (same answer as
            // for a name nobody has), and UID:NAME of another uid is refused whether it exists or not.
            for args in [
                ["sign", "--key", "alice"], ["key", "delete", "alice"], ["key", "public", "alice"],
                ["encrypt", "--key", "roots"], ["key", "info", "nosuch"],
            ] {
                let r = try user(1235, args, stdin: "x")
                #expect(r.status == 20 && r.stderr.contains("no such key"), "bob: \(args) -> \(r.status) \(r.stderr)")
            }
            for args in [
                ["key", "info", "1234:alice"], ["key", "info", "1234:nosuch"], ["sign", "--key", "1234:alice"],
                ["key", "export", "0:roots"],
            ] {
                let r = try user(1235, args, stdin: "x")
                #expect(
                    r.status == 20 && r.stderr.contains("permission denied"), "bob: \(args) -> \(r.status) \(r.stderr)")
            }
            expectOK(
                try user(1235, ["key", "create", "alice", "--type", "aes256"]), "bob may have an 'alice' of his own")

            // The reported case: nobody makes an exportable 'vault'; root's 'vault' is root's own.
            expectOK(try user(65534, ["key", "create", "vault", "--type", "aes256", "--exportable"]), "nobody's vault")
            let rootEncrypts = try root(["encrypt", "--key", "vault"], stdin: "root's secret")
            #expect(
                rootEncrypts.status == 20 && rootEncrypts.stderr.contains("no such key"),
                "root never falls into nobody's key: \(rootEncrypts.stderr)")
            // A file nobody sealed: root's decrypt without --key does not use nobody's key...
            try sh(
                "printf 'nobody only' | setpriv --reuid=65534 --regid=4321 --clear-groups '\(Env.elastic)' encrypt --key vault --mount '\(s.mountpoint)' > '\(s.dir)/nobody.elae'"
            )
            let implicit = try root(["decrypt", "--in", s.dir + "/nobody.elae"])
            #expect(implicit.status == 20 && implicit.stdout.isEmpty, "\(implicit.status) \(implicit.stderr)")
            // ...but naming the owner does, and says whose key it was.
            let explicit = try root(["decrypt", "--key", "65534:vault", "--in", s.dir + "/nobody.elae"])
            #expect(
                explicit.ok && explicit.stdout == "nobody only" && explicit.stderr.contains("owner uid 65534"),
                "\(explicit.stderr)")
            // A file naming another uid's key in its header is refused without --key.
            expectOK(
                try root(["encrypt", "--key", "65534:vault", "--out", s.dir + "/qualified.elae"], stdin: "x"),
                "root seals with 65534:vault")
            let fromHeader = try root(["decrypt", "--in", s.dir + "/qualified.elae"])
            #expect(
                fromHeader.status != 0 && fromHeader.stderr.contains("pass --key explicitly"), "\(fromHeader.stderr)")

            expectOK(try root(["sign", "--key", "1234:alice"], stdin: "hi"), "root may use alice's key by naming her")
            #expect(try root(["key", "list"]).stdout.split(separator: "\n").count == 1, "root's own keys")
            #expect(try root(["key", "list", "--all"]).stdout.split(separator: "\n").count == 4, "every uid's keys")
            #expect(try user(1234, ["key", "list", "--all"]).status == 20)
            let outsider = try user(1236, gid: 999, ["key", "list"])
            #expect(
                outsider.status != 0 && outsider.stderr.contains("Permission denied"),
                "not in ctl_group: \(outsider.stderr)")
            // Derived keys are bound to the uid.
            #expect(
                try user(1234, ["key", "derive", "x", "--hex"]).stdout
                    != (try user(1235, ["key", "derive", "x", "--hex"]).stdout))
        }
    }

    /// Handles of processes that exit without closing them are reclaimed: thousands of short
    /// processes each leave handles behind, and the daemon's memory does not grow with them.
    @Test func handlesOfShortProcessesDoNotAccumulate() throws {
        try MountedStore.with { s in
            let script = Env.scripts + "/short_processes.py"
            let warm = try run("/usr/bin/env", ["python3", script, s.mountpoint, "200"])
            expectOK(warm, "warm-up")
            guard let pid = try s.daemonPID() else { throw TestFailure("no daemon") }
            func rss() throws -> Int {
                Int(
                    try sh("awk '/VmRSS/ {print $2}' /proc/\(pid)/status").stdout.trimmingCharacters(
                        in: .whitespacesAndNewlines)) ?? 0
            }
            let before = try rss()
            let r = try run("/usr/bin/env", ["python3", script, s.mountpoint, "2000"])
            expectOK(r, "2000 processes, 64 handles each, none closed")
            let after = try rss()
            #expect(after - before < 20_000, "daemon RSS \(before) -> \(after) KiB")
        }
    }
}
