import ElasticCrypto
import Foundation
import Testing

/// `elastic tls serve` and `elastic tls connect` through the built binaries, on a mount of the
/// SEV-SNP simulator, in front of a plain web server: a session a user would run (connect,
/// curl through `connect --listen`, `openssl s_client`), every refusal naming its check,
/// mutual attestation, and the proxy's life: a client vanishing mid-stream, 200 connections at
/// once, a certificate reloaded with SIGHUP while a connection stays open, a dead backend.
@Suite(.enabled(if: Env.canMount, "needs root and /dev/fuse"))
struct TLSProxyTests {
    /// A simulator mount with a key, a web server and the processes a test started.
    final class Rig {
        let s: MountedStore
        let ark: String
        let www: String
        let backendPort: Int
        var pids: [String] = []
        init(_ s: MountedStore) throws {
            self.s = s
            ark = s.dir + "/ark.der"
            www = s.dir + "/www"
            backendPort = try Rig.freePort()
        }

        static func freePort() throws -> Int {
            let r = try sh(
                "python3 -c 'import socket; s = socket.socket(); s.bind((\"127.0.0.1\", 0)); print(s.getsockname()[1])'"
            )
            return Int(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines))!
        }

        /// Starts `elastic tls serve` on a free port; returns the port once it listens.
        func serve(_ extra: [String], log name: String = "serve") throws -> (port: Int, log: String) {
            let port = try Rig.freePort()
            let log = "\(s.dir)/\(name).log"
            let args =
                ([
                    "tls", "serve", "--mount", s.mountpoint, "--listen", "127.0.0.1:\(port)", "--to",
                    "127.0.0.1:\(backendPort)",
                ] + extra).map { "'\($0)'" }.joined(separator: " ")
            let pid = try sh(
                "'\(Env.scripts)/detach.sh' '\(Env.elastic)' \(args) </dev/null 2>'\(log)' >/dev/null & echo $!"
            ).stdout
                .trimmingCharacters(in: .whitespacesAndNewlines)
            pids.append(pid)
            expectOK(
                try sh(
                    "for i in $(seq 100); do grep -q 'serving TLS on' '\(log)' && exit 0; sleep 0.1; done; cat '\(log)'; exit 1"
                ),
                "serve listens")
            return (port, log)
        }

        func stopAll() {
            // SIGKILL: processes started here inherit the test runner's blocked signals.
            for pid in pids { _ = try? sh("kill -9 \(pid) 2>/dev/null; true") }
            _ = try? sh("pkill -9 -f 'http[.]server \(backendPort)'; true")
        }
    }

    func withRig(launchPolicy: String? = nil, _ body: (Rig) throws -> Void) throws {
        try MountedStore.with { s in
            let rig = try Rig(s)
            defer { rig.stopAll() }
            let state = s.dir + "/sim.json"
            expectOK(try run(Env.elastic, ["simulator", "init", "--state", state]), "simulator")
            var set = ["simulator", "set", "--state", state, "--install-certificates", rig.ark]
            if let launchPolicy { set += ["--policy", launchPolicy] }
            expectOK(try run(Env.elastic, set), "certificates")
            try s.remount(options: ["platform=snp-simulator", "simulator_state=\(state)"])
            for (name, type) in [("web", "ec-p256"), ("client", "ed25519")] {
                expectOK(try run(Env.elastic, ["key", "create", "--mount", s.mountpoint, name, "--type", type]), name)
            }
            expectOK(
                try sh(
                    """
                    mkdir -p '\(rig.www)' && echo hello-attested > '\(rig.www)/index.html' && \
                    head -c 8388608 /dev/urandom > '\(rig.www)/big' && \
                    ('\(Env.scripts)/detach.sh' python3 -m http.server \(rig.backendPort) --bind 127.0.0.1 --directory '\(rig.www)' </dev/null >/dev/null 2>&1 &) && \
                    for i in $(seq 100); do (echo > /dev/tcp/127.0.0.1/\(rig.backendPort)) 2>/dev/null && exit 0; sleep 0.1; done; exit 1
                    """), "backend")
            try body(rig)
        }
    }

    /// `elastic tls connect` with `stdin` as the request.
    func connect(_ port: Int, _ extra: [String], stdin: String = "GET / HTTP/1.0\r\n\r\n") throws -> CommandResult {
        try run(Env.elastic, ["tls", "connect", "127.0.0.1:\(port)"] + extra, stdin: stdin)
    }

    @Test func aSessionThroughTheProxyWithOrdinaryTools() throws {
        try withRig { rig in
            let (port, _) = try rig.serve(["--key", "web", "--san", "127.0.0.1"])
            let root = ["--root", rig.ark]
            let c = try connect(port, root)
            #expect(c.status == 0 && c.stdout.contains("hello-attested"), "\(c.stdout) \(c.stderr)")
            #expect(c.stderr.contains("TLSv1.3") && c.stderr.contains("PASS  key binding"), "\(c.stderr)")
            #expect(c.stderr.contains("peer: measurement ") && c.stderr.contains("verdict: all"), "\(c.stderr)")
            let json = try connect(port, root + ["--json"])
            #expect(
                json.stderr.contains(#""verdict":"pass""#) && json.stderr.contains(#""protocol":"TLSv1.3""#),
                "\(json.stderr)")
            // openssl s_client talks to it (the certificate is self-signed: verify code 18).
            let s = try sh(
                "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | openssl s_client -connect 127.0.0.1:\(port) -quiet 2>&1")
            #expect(s.stdout.contains("hello-attested"), "\(s.stdout)")
            // curl through a local port that connect forwards (each connection verified).
            let local = try Rig.freePort()
            let fwd = try sh(
                "'\(Env.scripts)/detach.sh' '\(Env.elastic)' tls connect 127.0.0.1:\(port) --root '\(rig.ark)' --listen 127.0.0.1:\(local) </dev/null 2>'\(rig.s.dir)/fwd.log' >/dev/null & echo $!"
            ).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            rig.pids.append(fwd)
            let curl = try sh(
                "for i in $(seq 50); do curl -sf http://127.0.0.1:\(local)/ && exit 0; sleep 0.1; done; cat '\(rig.s.dir)/fwd.log'; exit 1"
            )
            #expect(curl.stdout == "hello-attested\n", "\(curl.stdout)")
        }
    }

    /// Each refusal names the check that failed (a wrong measurement, a TCB below the minimum, a
    /// debug policy, an untrusted root, another name, an expired certificate, evidence re-used
    /// for another key), and nothing is sent.
    @Test func aServerThatFailsACheckIsRefusedBeforeAByteIsSent() throws {
        try withRig(launchPolicy: "b0000") { rig in
            let (port, _) = try rig.serve(["--key", "web", "--san", "127.0.0.1"])
            let root = ["--root", rig.ark]
            try #"{"measurements": ["\#(String(repeating: "00", count: 48))"]}"#.write(
                toFile: rig.s.dir + "/m.json", atomically: true, encoding: .utf8)
            try #"{"minimum_tcb": {"snp": 255}}"#.write(
                toFile: rig.s.dir + "/tcb.json", atomically: true, encoding: .utf8)
            try #"{"debug": false}"#.write(toFile: rig.s.dir + "/debug.json", atomically: true, encoding: .utf8)
            let cases: [([String], String)] = [
                ([], "FAIL  certificate chain"),
                (root + ["--policy", rig.s.dir + "/m.json"], "FAIL  measurement"),
                (root + ["--policy", rig.s.dir + "/tcb.json"], "FAIL  minimum TCB"),
                (root + ["--policy", rig.s.dir + "/debug.json"], "FAIL  policy: debug"),
                (root + ["--servername", "other.example"], "FAIL  name"),
                // The proxy's certificate (7 days) as it will verify in 8 days: expired.
                (root + ["--at", "\(Int(Date().timeIntervalSince1970) + 8 * 86400)"], "FAIL  validity"),
            ]
            for (args, line) in cases {
                let r = try connect(port, args)
                #expect(r.status == 23 && r.stderr.contains(line), "\(args): \(r.stderr)")
                #expect(r.stderr.contains("nothing was sent") && r.stdout.isEmpty, "\(r.stdout)")
            }
            // Evidence re-used for another key: a certificate made with openssl around a genuine
            // extension, served with that key (imported into the key store).
            let legit = rig.s.dir + "/legit.pem"
            expectOK(
                try run(Env.elastic, ["tls", "cert", "--mount", rig.s.mountpoint, "--key", "web", "--out", legit]),
                "cert")
            let value = try #require(
                try X509Certificate.pem(Array(try Data(contentsOf: URL(fileURLWithPath: legit))))[0]
                    .extensionValue(oid: "2.23.133.5.4.9"))
            expectOK(
                try sh(
                    "cd '\(rig.s.dir)' && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout other.key -subj /CN=127.0.0.1 -days 1 -addext 'subjectAltName=IP:127.0.0.1' -addext '2.23.133.5.4.9=DER:\(Hex.encode(value))' -out reused.pem 2>&1"
                ), "forge")
            expectOK(
                try run(
                    Env.elastic,
                    [
                        "key", "import", "--mount", rig.s.mountpoint, "other", "--type", "ec-p256", "--in",
                        rig.s.dir + "/other.key",
                    ]),
                "import")
            let (forged, _) = try rig.serve(["--key", "other", "--cert", rig.s.dir + "/reused.pem"], log: "forged")
            let r = try connect(forged, root)
            #expect(r.status == 23 && r.stderr.contains("FAIL  key binding"), "\(r.stderr)")
        }
    }

    /// With --client-policy the server serves only clients whose own attested certificate
    /// satisfies it.
    @Test func mutualAttestation() throws {
        try withRig { rig in
            try #"{"debug": false}"#.write(toFile: rig.s.dir + "/p.json", atomically: true, encoding: .utf8)
            try #"{"minimum_tcb": {"snp": 255}}"#.write(
                toFile: rig.s.dir + "/strict.json", atomically: true, encoding: .utf8)
            let base = ["--key", "web", "--san", "127.0.0.1", "--root", rig.ark]
            let (port, log) = try rig.serve(base + ["--client-policy", rig.s.dir + "/p.json"])
            let root = ["--root", rig.ark, "--mount", rig.s.mountpoint]
            // A client certificate issued seconds after the server started is valid now.
            _ = try sh("sleep 2")
            let ok = try connect(port, root + ["--key", "client"])
            let okLog = try sh("cat '\(log)'").stdout
            #expect(ok.status == 0 && ok.stdout.contains("hello-attested"), "\(ok.stdout) \(ok.stderr) \(okLog)")
            let anonymous = try connect(port, root)
            #expect(!anonymous.stdout.contains("hello-attested"), "\(anonymous.stdout)")
            expectOK(
                try sh(
                    "for i in $(seq 100); do grep -Eq 'did not return a certificate|client refused' '\(log)' && exit 0; sleep 0.1; done; exit 1"
                ),
                "the server says why")
            let (strict, strictLog) = try rig.serve(
                base + ["--client-policy", rig.s.dir + "/strict.json"], log: "strict")
            let refused = try connect(strict, root + ["--key", "client"])
            #expect(!refused.stdout.contains("hello-attested"), "\(refused.stdout)")
            expectOK(
                try sh(
                    "for i in $(seq 100); do grep -q 'client refused: minimum TCB' '\(strictLog)' && exit 0; sleep 0.1; done; exit 1"
                ),
                "minimum TCB named")
        }
    }

    /// A connection with no byte either way for --idle-timeout seconds is closed (the server
    /// logs it); one that keeps talking is not.
    @Test func anIdleConnectionIsClosed() throws {
        try withRig { rig in
            let (port, log) = try rig.serve(["--key", "web", "--san", "127.0.0.1", "--idle-timeout", "1"])
            // Standard input stays open without a byte (a FIFO this shell holds): the proxy ends
            // the connection after 1 s and says so.
            expectOK(
                try sh(
                    """
                    mkfifo '\(rig.s.dir)/idle-in' && exec 3<>'\(rig.s.dir)/idle-in'
                    '\(Env.elastic)' tls connect 127.0.0.1:\(port) --root '\(rig.ark)' <'\(rig.s.dir)/idle-in' >/dev/null 2>&1 &
                    client=$!
                    for i in $(seq 150); do grep -q 'connection closed: idle' '\(log)' && break; sleep 0.1; done
                    kill -9 $client 2>/dev/null || true
                    exec 3>&-
                    grep 'connection closed: idle' '\(log)' || { cat '\(log)'; exit 1; }
                    """), "the proxy closes the idle connection")
            // A connection that talks within the timeout is served.
            let c = try connect(port, ["--root", rig.ark])
            #expect(c.status == 0 && c.stdout.contains("hello-attested"), "\(c.stdout) \(c.stderr)")
        }
    }

    @Test func theProxySurvivesVanishingClientsReloadsAndManyConnections() throws {
        try withRig { rig in
            let (port, log) = try rig.serve(["--key", "web", "--san", "127.0.0.1"])
            let py = "python3 '\(Env.scripts)/tls_clients.py'"
            // A client that resets mid-download: the next ones are served.
            #expect(try sh("\(py) vanish 127.0.0.1 \(port) /big").stdout == "vanished\n")
            let many = try sh("\(py) concurrent 127.0.0.1 \(port) 200 / hello-attested 2>&1")
            let serveLog = try sh("tail -5 '\(log)'").stdout
            #expect(many.stdout.hasSuffix("ok=200\n"), "\(many.stdout.suffix(2000)) \(serveLog)")
            // SIGHUP: new connections get a new certificate; one open before keeps working.
            let go = rig.s.dir + "/go"
            let hold = try sh(
                "'\(Env.scripts)/detach.sh' \(py) hold 127.0.0.1 \(port) / '\(go)' </dev/null > '\(rig.s.dir)/hold.out' 2>&1 & echo $!"
            ).stdout
                .trimmingCharacters(in: .whitespacesAndNewlines)
            expectOK(
                try sh("for i in $(seq 100); do [ -s '\(rig.s.dir)/hold.out' ] && exit 0; sleep 0.1; done; exit 1"),
                "hold")
            let before = try sh("head -1 '\(rig.s.dir)/hold.out'").stdout
            expectOK(
                try sh(
                    "kill -HUP \(rig.pids[0]) && for i in $(seq 100); do grep -q 'certificate reloaded' '\(log)' && exit 0; sleep 0.1; done; exit 1"
                ), "reload")
            let after = try sh("\(py) fingerprint 127.0.0.1 \(port)").stdout
            #expect(before != after && after.count == 65, "\(before) \(after)")
            expectOK(
                try sh(
                    "touch '\(go)'; for i in $(seq 100); do kill -0 \(hold) 2>/dev/null || exit 0; sleep 0.1; done; exit 1"
                ), "held connection ends")
            #expect(try sh("cat '\(rig.s.dir)/hold.out'").stdout.contains("hello-attested"))
            // Renewal: a proxy that renews every second presents a new certificate soon after.
            let (renewing, renewLog) = try rig.serve(["--key", "web", "--renew-after", "1"], log: "renew")
            // (Renewals counted after the first look: of two more, the second replaced the
            // certificate after that look's handshake.)
            let first = try sh("\(py) fingerprint 127.0.0.1 \(renewing)").stdout
            let seen = try sh("grep -c 'certificate renewed' '\(renewLog)' || true").stdout
                .trimmingCharacters(in: .whitespacesAndNewlines)
            expectOK(
                try sh(
                    "for i in $(seq 200); do [ $(grep -c 'certificate renewed' '\(renewLog)') -gt $(( \(seen) + 1 )) ] && exit 0; sleep 0.1; done; exit 1"
                ), "renewed twice after the first look")
            #expect(try sh("\(py) fingerprint 127.0.0.1 \(renewing)").stdout != first)
            // A dead backend: the client's connection closes and the server says why.
            expectOK(
                try sh(
                    "pkill -9 -f 'http[.]server \(rig.backendPort)'; for i in $(seq 100); do (echo > /dev/tcp/127.0.0.1/\(rig.backendPort)) 2>/dev/null || exit 0; sleep 0.1; done; exit 1"
                ), "the backend is gone")
            let dead = try connect(port, ["--root", rig.ark])
            #expect(!dead.stdout.contains("hello"), "\(dead.stdout)")
            expectOK(
                try sh(
                    "for i in $(seq 100); do grep -q 'backend unreachable' '\(log)' && exit 0; sleep 0.1; done; exit 1"),
                "the server says why")
            // The port is in use: a second proxy there says so.
            expectOK(try sh("kill -0 \(rig.pids[0])"), "the proxy is still up")
            let second = try run(
                "/usr/bin/timeout",
                [
                    "20", Env.elastic, "tls", "serve", "--mount", rig.s.mountpoint, "--listen", "127.0.0.1:\(port)",
                    "--to",
                    "127.0.0.1:1", "--key", "web",
                ])
            #expect(second.status != 0 && second.stderr.contains("the port is in use"), "\(second.stderr)")
        }
    }
}
