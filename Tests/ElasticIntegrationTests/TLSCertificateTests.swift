import ElasticCrypto
import Foundation
import Testing

/// `elastic tls cert|csr|verify-cert` through the built binaries, on a mount of the SEV-SNP
/// simulator whose host serves a certificate table: certificates for every key type, signed
/// through the control file and accepted by `openssl verify`; and each way a certificate can be
/// wrong, refused by the check that names it.
@Suite(.enabled(if: Env.canMount, "needs root and /dev/fuse"))
struct TLSCertificateTests {
    /// A mount on the simulator (certificate table installed) with keys of every type.
    func withAttestedMount(policy: String? = nil, _ body: (MountedStore, String) throws -> Void) throws {
        try MountedStore.with { s in
            let state = s.dir + "/sim.json", ark = s.dir + "/ark.der"
            expectOK(try run(Env.elastic, ["simulator", "init", "--state", state]), "simulator")
            var set = ["simulator", "set", "--state", state, "--install-certificates", ark]
            if let policy { set += ["--policy", policy] }
            expectOK(try run(Env.elastic, set), "install certificates")
            try s.remount(options: ["platform=snp-simulator", "simulator_state=\(state)"])
            for type in ["ec-p256", "ec-p384", "ed25519", "rsa"] {
                expectOK(
                    try run(Env.elastic, ["key", "create", "--mount", s.mountpoint, "k-\(type)", "--type", type]), type)
            }
            try body(s, ark)
        }
    }

    func cert(_ s: MountedStore, _ key: String, _ extra: [String] = []) throws -> String {
        let out = "\(s.dir)/\(key).pem"
        let r = try run(
            Env.elastic,
            ["tls", "cert", "--mount", s.mountpoint, "--key", key, "--san", "svc.test", "--out", out] + extra)
        expectOK(r, "tls cert \(key)")
        #expect(r.stderr.contains("SIMULATOR"), "a simulator's report says so: \(r.stderr)")
        return out
    }

    func verify(_ cert: String, _ extra: [String]) throws -> CommandResult {
        try run(Env.elastic, ["tls", "verify-cert", cert] + extra)
    }

    @Test func everyKeyTypeGetsACertificateThatVerifies() throws {
        try withAttestedMount { s, ark in
            for type in ["ec-p256", "ec-p384", "ed25519", "rsa"] {
                let c = try cert(s, "k-\(type)")
                expectOK(
                    try sh("openssl verify -CAfile '\(c)' '\(c)'"), "openssl verifies the self-signature (\(type))")
                let text = try sh("openssl x509 -in '\(c)' -noout -text").stdout
                #expect(text.contains("2.23.133.5.4.9") && text.contains("DNS:svc.test"), "\(text)")
                let ok = try verify(c, ["--root", ark])
                #expect(ok.status == 0 && ok.stdout.contains("PASS  key binding"), "\(type): \(ok.stdout)")
                #expect(ok.stdout.contains("PASS  report data") && ok.stdout.contains("PASS  chip ID"), "\(ok.stdout)")
            }
            // The simulator's root is never trusted unless given.
            let untrusted = try verify("\(s.dir)/k-ec-p256.pem", [])
            #expect(
                untrusted.status == 23 && untrusted.stdout.contains("FAIL  certificate chain"), "\(untrusted.stdout)")
            let json = try verify("\(s.dir)/k-ec-p256.pem", ["--root", ark, "--json"])
            #expect(json.status == 0 && json.stdout.contains(#""verdict":"pass""#), "\(json.stdout)")
        }
    }

    /// The evidence of one key put into a certificate for another; the report tampered with;
    /// an expired certificate; a measurement, TCB or debug policy the verifier does not accept.
    @Test func eachWrongCertificateIsRefusedByTheCheckThatNamesIt() throws {
        try withAttestedMount(policy: "b0000") { s, ark in
            let c = try cert(s, "k-ec-p256", ["--days", "2"])
            let root = ["--root", ark]
            // Evidence re-used for another key: the binding fails (the report itself is fine).
            let value = try #require(
                try X509Certificate.pem(Array(try Data(contentsOf: URL(fileURLWithPath: c))))[0]
                    .extensionValue(oid: "2.23.133.5.4.9"))
            expectOK(
                try sh(
                    "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout '\(s.dir)/other.key' -subj /CN=svc.test -days 1 -addext '2.23.133.5.4.9=DER:\(Hex.encode(value))' -out '\(s.dir)/reused.pem' 2>&1"
                ), "forge")
            let reused = try verify("\(s.dir)/reused.pem", root)
            #expect(reused.status == 23 && reused.stdout.contains("FAIL  key binding"), "\(reused.stdout)")
            #expect(reused.stdout.contains("PASS  signature"), "the report is genuine: \(reused.stdout)")
            // A byte of the report's measurement flipped inside the certificate.
            var der = try #require(try X509Certificate.pem(Array(try Data(contentsOf: URL(fileURLWithPath: c))))[0].der)
            let at = try #require(Self.index(of: Array(value.prefix(32)), in: der)) + 16 + 0x90
            der[at] ^= 1
            try Data(der).write(to: URL(fileURLWithPath: "\(s.dir)/tampered.der"))
            let tampered = try verify("\(s.dir)/tampered.der", root)
            #expect(tampered.stdout.contains("FAIL  certificate signature"), "\(tampered.stdout)")
            #expect(tampered.stdout.contains("FAIL  signature: "), "the report's own signature: \(tampered.stdout)")
            // Expired: checked three days on.
            let later = String(Int(Date().timeIntervalSince1970) + 3 * 86400)
            let expired = try verify(c, root + ["--at", later])
            #expect(
                expired.status == 23 && expired.stdout.contains("FAIL  validity: svc.test: expired"),
                "\(expired.stdout)")
            // Policies: the launch was made with the debug bit set (policy 0xb0000).
            let refusals: [(String, String)] = [
                (#"{"measurements": ["\#(String(repeating: "00", count: 48))"]}"#, "FAIL  measurement: "),
                (#"{"minimum_tcb": {"snp": 255}}"#, "FAIL  minimum TCB: "),
                (#"{"debug": false}"#, "FAIL  policy: debug: "),
            ]
            for (policy, line) in refusals {
                try policy.write(toFile: s.dir + "/policy.json", atomically: true, encoding: .utf8)
                let r = try verify(c, root + ["--policy", s.dir + "/policy.json"])
                #expect(r.status == 23 && r.stdout.contains(line), "\(policy): \(r.stdout)")
            }
        }
    }

    /// A request for a CA: it verifies, carries the evidence, and the certificate a CA issues
    /// from it (extensions copied, the same key) passes every binding check.
    @Test func aRequestCarriesTheEvidenceToACertificateAuthority() throws {
        try withAttestedMount { s, ark in
            let req = s.dir + "/req.pem"
            let r = try run(
                Env.elastic,
                ["tls", "csr", "--mount", s.mountpoint, "--key", "k-ed25519", "--san", "api.test", "--out", req])
            expectOK(r, "tls csr")
            expectOK(try sh("openssl req -in '\(req)' -noout -verify 2>&1 | grep -q 'verify OK'"), "request signature")
            expectOK(
                try sh(
                    """
                    cd '\(s.dir)' && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
                      -subj /CN=Test-CA -days 2 -out ca.pem 2>&1 && \
                    openssl x509 -req -in req.pem -CA ca.pem -CAkey ca.key -days 1 -copy_extensions copy -out issued.pem 2>&1
                    """), "a CA issues it")
            let issued = try verify(s.dir + "/issued.pem", ["--root", ark, "--ca", s.dir + "/ca.pem"])
            #expect(
                issued.status == 0 && issued.stdout.contains("PASS  certificate signature: issued by Test-CA"),
                "\(issued.stdout)")
            // Without its CA, a certificate that is not self-issued is not taken on trust.
            let noCA = try verify(s.dir + "/issued.pem", ["--root", ark])
            #expect(
                noCA.status == 23 && noCA.stdout.contains("FAIL  certificate signature: issued by Test-CA"),
                "\(noCA.stdout)")
            // A nonce bound at issue time, and checked.
            let n = s.dir + "/nonce.pem"
            expectOK(
                try run(
                    Env.elastic,
                    ["tls", "cert", "--mount", s.mountpoint, "--key", "k-ec-p384", "--nonce", "c0ffee", "--out", n]),
                "nonce")
            #expect(try verify(n, ["--root", ark, "--nonce", "c0ffee"]).stdout.contains("PASS  nonce"))
            let stale = try verify(n, ["--root", ark, "--nonce", "beef"])
            #expect(stale.status == 23 && stale.stdout.contains("FAIL  nonce"), "\(stale.stdout)")
        }
    }

    static func index(of needle: [UInt8], in hay: [UInt8]) -> Int? {
        guard needle.count <= hay.count else { return nil }
        return (0...(hay.count - needle.count)).first { hay[$0..<($0 + needle.count)].elementsEqual(needle) }
    }
}
