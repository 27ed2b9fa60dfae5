import ArgumentParser
import ElasticControlClient
import ElasticCrypto
import ElasticPlatform
import ElasticRuntime
import ElasticTLS
import Foundation

/// `elastic tls cert|csr|verify-cert`: attested certificates for keys of the key store.
struct TLSCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tls", abstract: "Attested TLS certificates (docs/tls.md).",
        subcommands: [
            TLSCertCommand.self, TLSCSRCommand.self, TLSVerifyCertCommand.self, TLSServeCommand.self,
            TLSConnectCommand.self,
        ])
}

/// What a certificate or request names besides its key.
struct CertificateSubjectOptions: ParsableArguments {
    @Option(name: .customLong("key"), help: "A key of your key store (EC P-256/P-384, Ed25519 or RSA).")
    var key: String
    @Option(name: .customLong("san"), help: "A DNS name or IP address the certificate is for (repeatable).")
    var sans: [String] = []
    @Option(name: .customLong("cn"), help: "The subject's common name (default: the first --san, else the key's name).")
    var commonName: String?
    @Option(name: .customLong("days"), help: "Validity in days (1-3650).")
    var days: Int = 30
    @Option(name: .customLong("nonce"), help: "A verifier's nonce to bind too (hex).")
    var nonce: String?
    @Option(name: .customLong("out"), help: "Write the PEM here (default: standard output).")
    var out: String?

    func subject() throws -> AttestedCertificate.Subject {
        var s = AttestedCertificate.Subject(commonName: commonName, sans: sans, fallbackName: key)
        s.days = days
        if let nonce {
            guard let bytes = Hex.decode(nonce), !bytes.isEmpty, bytes.count <= 64 else {
                throw CLIError("--nonce is 1 to 64 bytes in hex", .usage)
            }
            s.nonce = bytes
        }
        return s
    }

    /// Makes a certificate or request (`make`) for the key with fresh evidence, writes its PEM
    /// and says what the evidence is (`what`).
    func issue(
        _ mount: MountOption, _ what: String,
        _ make: (RemoteKey, AttestedCertificate.Subject, ControlClient) throws -> ([UInt8], CertificateEvidence)
    ) throws {
        do {
            let client = try mount.client()
            let (pem, evidence) = try make(try RemoteKey(client: client, name: key), try subject(), client)
            try write(pem)
            describe(evidence, what)
        } catch let e as CLIError { throw failure(e) } catch { throw controlFailure(error) }
    }

    func write(_ pem: [UInt8]) throws {
        if let out {
            guard FileManager.default.createFile(atPath: out, contents: Data(pem)) else {
                throw CLIError("cannot write \(out)")
            }
        } else {
            FileHandle.standardOutput.write(Data(pem))
        }
    }
}

/// Says on stderr what the evidence is (a simulator's is no evidence of hardware).
func describe(_ e: CertificateEvidence, _ what: String) {
    let report = SNPReport(bytes: e.report)
    printError(
        "\(what): SEV-SNP report v\(report.version), measurement \(Hex.encode(report.measurement).prefix(24))…, "
            + "\(e.certificates.isEmpty ? "no host certificates (verifiers need --vcek)" : "with the host's certificates")"
    )
    if e.platform == "sev-snp-simulator" {
        printError("\(what): WARNING: the report comes from the SEV-SNP SIMULATOR, not hardware: for tests only")
    }
}

/// `elastic tls cert --key NAME [--san ...] [--days N] [--out FILE]`
struct TLSCertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cert",
        abstract: "Issue a self-signed certificate for a key of the key store, carrying fresh evidence that binds it.")
    @OptionGroup var mount: MountOption
    @OptionGroup var options: CertificateSubjectOptions

    func run() throws {
        try options.issue(mount, "certificate") { key, subject, client in
            let (cert, evidence) = try AttestedCertificate.issue(key: key, subject: subject, client: client)
            return (try AttestedCertificate.pem(cert), evidence)
        }
    }
}

/// `elastic tls csr --key NAME [--san ...] [--out FILE]`
struct TLSCSRCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "csr",
        abstract: "A certificate request (PKCS #10) for a key of the key store, with the same evidence, for a CA.")
    @OptionGroup var mount: MountOption
    @OptionGroup var options: CertificateSubjectOptions

    func run() throws {
        try options.issue(mount, "request") { key, subject, client in
            try AttestedCertificate.request(key: key, subject: subject, client: client)
        }
    }
}

/// `elastic tls verify-cert CERT [--policy FILE] [--root FILE] [--vcek FILE] [--json]`
struct TLSVerifyCertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify-cert",
        abstract: "Check an attested certificate from anyone: binding, evidence, chain and policy.",
        discussion: "Exit 0 only when every check passes; 23 when one fails.")
    @Argument(help: "The certificate (PEM or DER).") var certificate: String
    @Option(name: .customLong("policy"), help: "A policy file (JSON, docs/attestation.md).") var policy: String?
    @Option(name: .customLong("root"), help: "Trust this root too (repeatable; a simulator's root only this way).")
    var roots: [String] = []
    @Option(name: .customLong("vcek"), help: "The VCEK or VLEK certificate, when the evidence carries none.")
    var vcek: String?
    @Option(name: .customLong("at"), help: "Check the validity at this time (seconds since the epoch; default: now).")
    var at: Int64?
    @Option(name: .customLong("nonce"), help: "The nonce the evidence must carry (hex).") var nonce: String?
    @Option(name: .customLong("ca"), help: "The CA that issued the certificate, when it is not self-signed.")
    var ca: String?
    @Flag(name: .customLong("json")) var json = false

    func run() throws {
        let cert: X509Certificate
        var verifier: AttestedCertificateVerifier
        var given: Set<String> = []
        do {
            cert = try certificates(at: certificate)[0]
            let roots = try roots.flatMap { try certificates(at: $0) }
            given = Set(roots.compactMap(\.subjectCommonName))
            verifier = try AttestedCertificateVerifier(givenRoots: roots, policy: try policy.map(readPolicy))
            if let vcek { verifier.endorsement = try certificates(at: vcek)[0] }
            if let at { verifier.now = Date(timeIntervalSince1970: TimeInterval(at)) }
            if let ca { verifier.authority = try certificates(at: ca)[0] }
            if let nonce {
                guard let bytes = Hex.decode(nonce), !bytes.isEmpty else { throw CLIError("--nonce is hex", .usage) }
                verifier.expectedNonce = bytes
            }
        } catch { throw failure(error) }
        let result = verifier.verify(cert)
        try printChecks(
            result.checks, json: json, report: result.report, root: result.root,
            rootIsGiven: result.root.map(given.contains) ?? false, policy: policy)
        if !result.passed { throw ExitCode(ElasticExitCode.evidenceRefused.rawValue) }
    }
}

/// The certificates in a PEM or DER file.
func certificates(at path: String) throws -> [X509Certificate] {
    guard let data = FileManager.default.contents(atPath: path) else { throw CLIError("cannot read \(path)") }
    do {
        if data.starts(with: Array("-----BEGIN".utf8)) { return try X509Certificate.pem(Array(data)) }
        return [try X509Certificate(der: Array(data))]
    } catch { throw CLIError("\(path): not a certificate (\(error))") }
}

/// A policy file.
func readPolicy(_ path: String) throws -> SNPPolicy {
    guard let data = FileManager.default.contents(atPath: path) else { throw CLIError("cannot read \(path)") }
    do { return try SNPPolicy(json: data) } catch { throw CLIError("\(path): \(error)") }
}

/// Prints each check with its verdict (or one JSON object), as `attest verify` and `tls
/// verify-cert` do.
func printChecks(
    _ checks: [SNPEvidenceVerifier.Check], json: Bool, report: SNPReport?, root: String?, rootIsGiven: Bool,
    policy: String?
) throws {
    let passed = !checks.isEmpty && checks.allSatisfy(\.passed)
    if json {
        var obj: [String: Any] = [
            "verdict": passed ? "pass" : "fail",
            "checks": checks.map { ["check": $0.name, "result": $0.passed ? "pass" : "fail", "detail": $0.detail] },
        ]
        if let report, report.bytes.count == SNPReport.size {
            obj["report"] = [
                "version": Int(report.version), "measurement": Hex.encode(report.measurement),
                "policy": String(format: "0x%llx", report.policy), "vmpl": Int(report.vmpl),
                "reported_tcb": "\(report.reportedTCB)", "chip_id": Hex.encode(report.chipID),
                "report_data": Hex.encode(report.reportData),
            ]
        }
        if let root { obj["root"] = ["name": root, "source": rootIsGiven ? "--root" : "AMD"] }
        obj["policy"] = policy ?? NSNull()
        print(try jsonLine(obj))
        return
    }
    for c in checks { print("\(c.passed ? "PASS" : "FAIL")  \(c.name): \(c.detail)") }
    if let root, rootIsGiven {
        print("note: the chain ends at \(root), a root given with --root, not one of AMD's")
    }
    if policy == nil {
        print(
            "note: no --policy: the measurement, guest policy bits, TCB minimum, VMPL and report data were not checked")
    }
    print(passed ? "verdict: all \(checks.count) checks pass" : "verdict: REFUSED")
}

/// Prints a line with the time on stderr (the proxy's log).
@Sendable func logLine(_ message: String) {
    let stamp = ISO8601DateFormatter().string(from: Date())
    printError("\(stamp) \(message)")
}

/// Which attested certificates a peer must present.
struct PeerOptions: ParsableArguments {
    @Option(name: .customLong("root"), help: "Trust this root too (repeatable; a simulator's root only this way).")
    var roots: [String] = []
    @Option(name: .customLong("vcek"), help: "The peer's VCEK or VLEK certificate, when its evidence carries none.")
    var vcek: String?
    @Option(
        name: .customLong("at"),
        help:
            "Check the peer's validity at this time (seconds since the epoch; default: now), e.g. to see that a peer will still pass tomorrow."
    )
    var at: Int64?

    func verifier(policy: String?) throws -> AttestedCertificateVerifier {
        var v = try AttestedCertificateVerifier(
            givenRoots: try roots.flatMap { try certificates(at: $0) }, policy: try policy.map(readPolicy))
        if let vcek { v.endorsement = try certificates(at: vcek)[0] }
        if let at { v.now = Date(timeIntervalSince1970: TimeInterval(at)) }
        return v
    }
}

/// `elastic tls serve --listen ADDR:PORT --to ADDR:PORT --key NAME [--client-policy FILE]`
struct TLSServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "A TLS 1.3 proxy that presents an attested certificate and forwards plaintext to a local service.",
        discussion: """
            The certificate is issued at start (or read from --cert) for a key of the key store; every handshake \
            signature is made through the control file. SIGHUP issues (or re-reads) the certificate again; a \
            certificate issued here is renewed when two thirds of its validity have passed. Connections in progress \
            keep theirs. With --client-policy, clients must present an attested certificate that satisfies it.
            """)
    @OptionGroup var mount: MountOption
    @Option(name: .customLong("listen"), help: "Where to accept TLS (HOST:PORT).") var listen: String
    @Option(name: .customLong("to"), help: "The plaintext service to forward to (HOST:PORT).") var backend: String
    @Option(name: .customLong("key"), help: "A key of your key store.") var key: String
    @Option(name: .customLong("cert"), help: "Present this certificate (PEM, for --key) instead of issuing one.")
    var cert: String?
    @Option(name: .customLong("san"), help: "A DNS name or IP address for the issued certificate (repeatable).")
    var sans: [String] = []
    @Option(name: .customLong("days"), help: "Validity of the issued certificate, in days.") var days: Int = 7
    @Option(
        name: .customLong("renew-after"),
        help: "Issue a new certificate every this many seconds (default: two thirds of --days).")
    var renewAfter: Double?
    @Option(name: .customLong("client-policy"), help: "Require attested clients that satisfy this policy.")
    var clientPolicy: String?
    @Option(name: .customLong("max-connections"), help: "Connections served at once (more are closed).")
    var maxConnections: Int = 1024
    @Option(
        name: .customLong("idle-timeout"),
        help: "Close a connection with no byte either way for this many seconds (default: 43200, as stunnel; 0: never)."
    )
    var idleTimeout: Double = 43200
    @OptionGroup(title: "Client attestation") var peer: PeerOptions

    func validate() throws {
        guard idleTimeout >= 0, idleTimeout.isFinite else {
            throw ValidationError("--idle-timeout takes seconds (0: never)")
        }
    }

    func run() throws {
        do {
            blockControlSignals()
            let client = try mount.client()
            let remote = try RemoteKey(client: client, name: key)
            let verifier = try clientPolicy.map { try peer.verifier(policy: $0) }
            let (context, validUntil) = try makeContext(remote, client: client)
            let server = try TLSServer(
                listen: try Endpoint(listen), backend: try Endpoint(backend), context: context,
                clientVerifier: verifier, maxConnections: maxConnections,
                idleTimeout: idleTimeout > 0 ? idleTimeout : nil, log: logLine)
            logLine(
                "serving TLS on \(server.listen) for \(backend) with \(context.certificate?.subjectCommonName ?? "?") "
                    + "(key \(key), valid until \(validUntil)\(verifier == nil ? "" : "; clients must be attested"))")
            let reload: @Sendable (String) -> Void = { why in
                do {
                    let (next, until) = try makeContext(remote, client: client)
                    server.replace(next)
                    logLine("certificate \(why): valid until \(until)")
                } catch { logLine("certificate not \(why): \(error); the previous one stays") }
            }
            startSignalThread(onReload: { reload("reloaded") }, onStop: { server.stop() })
            if cert == nil {
                Thread.detachNewThread {
                    // Renewed when two thirds of the validity have passed.
                    while true {
                        Thread.sleep(forTimeInterval: renewAfter ?? Double(days) * 86400 * 2 / 3)
                        reload("renewed")
                    }
                }
            }
            server.run()
            logLine("stopped accepting; \(server.active.load(ordering: .relaxed)) connections still open")
        } catch let e as CLIError { throw failure(e) } catch { throw controlFailure(error) }
    }

    /// A context with a fresh certificate (or the one of --cert), and until when it is valid.
    func makeContext(_ remote: RemoteKey, client: ControlClient) throws -> (TLSContext, String) {
        let certificate: X509Certificate
        if let cert {
            certificate = try certificates(at: cert)[0]
            guard try certificate.publicKey().publicKeyDER() == remote.publicKey.publicKeyDER() else {
                throw CLIError("\(cert) is not a certificate for the key \(key)")
            }
        } else {
            var subject = AttestedCertificate.Subject(commonName: nil, sans: sans, fallbackName: key)
            subject.days = days
            certificate = try AttestedCertificate.issue(key: remote, subject: subject, client: client).certificate
        }
        let context = try TLSContext.server(
            certificate: certificate, key: remote, requireClientCertificate: clientPolicy != nil)
        let until = certificate.notAfter.map {
            ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: TimeInterval($0)))
        }
        return (context, until ?? "?")
    }
}

/// `elastic tls connect HOST:PORT [--policy FILE] [--key NAME] [--listen ADDR:PORT]`
struct TLSConnectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "connect",
        abstract: "Connect to an attested TLS server, verify it before sending a byte, then pipe stdin/stdout.",
        discussion: """
            Prints the connection (protocol, cipher, the peer's measurement, TCB and chip, each check) on stderr, \
            or as one JSON object with --json. With --listen, forwards each local connection (curl, a database \
            client) over its own verified TLS connection instead. A refused server exits 23 and names the check.
            """)
    @OptionGroup var mount: MountOption
    @Argument(help: "The server (HOST:PORT).") var target: String
    @Option(name: .customLong("policy"), help: "The policy the server's evidence must satisfy.") var policy: String?
    @Option(name: .customLong("servername"), help: "The name the certificate must carry (default: HOST).")
    var serverName: String?
    @Option(name: .customLong("key"), help: "Present an attested certificate for this key (mutual attestation).")
    var key: String?
    @Option(name: .customLong("listen"), help: "Forward local connections from here (HOST:PORT).") var listen: String?
    @Flag(name: .customLong("json")) var json = false
    @OptionGroup(title: "Server attestation") var peer: PeerOptions

    func run() throws {
        let endpoint: Endpoint
        let verifier: AttestedCertificateVerifier
        let context: TLSContext
        do {
            endpoint = try Endpoint(target)
            verifier = try peer.verifier(policy: policy)
            if let key {
                let client = try mount.client()
                let remote = try RemoteKey(client: client, name: key)
                let cert = try AttestedCertificate.issue(
                    key: remote, subject: AttestedCertificate.Subject(commonName: key), client: client
                ).certificate
                context = try TLSContext.client(certificate: cert, key: remote)
            } else {
                context = try TLSContext.client()
            }
        } catch let e as CLIError { throw failure(e) } catch { throw controlFailure(error) }
        let name = serverName ?? endpoint.host
        if let listen {
            let local: Endpoint
            let fd: Int32
            do {
                local = try Endpoint(listen)
                fd = try local.listen()
            } catch { throw failure(CLIError("\(error)")) }
            blockControlSignals()
            startSignalThread(onReload: {}, onStop: { shutdown(fd, Int32(SHUT_RDWR)) })
            logLine(
                "forwarding \(local) to \(endpoint) (each connection verified\(policy == nil ? ", no --policy" : ""))")
            while let c = acceptConnection(fd) {
                Thread.detachNewThread {
                    defer { close(c) }
                    do {
                        let conn = try TLSClient.connect(
                            to: endpoint, serverName: name, context: context, verifier: verifier)
                        conn.relay(input: c, output: c)
                    } catch { logLine("\(error)") }
                }
            }
            return
        }
        let conn: TLSClient.Connection
        do {
            conn = try TLSClient.connect(to: endpoint, serverName: name, context: context, verifier: verifier)
        } catch let e as TLSClient.Refused {
            report(e.result, info: nil, refused: true)
            throw ExitCode(ElasticExitCode.evidenceRefused.rawValue)
        } catch { throw failure(CLIError("\(error)")) }
        report(conn.verification, info: conn.info, refused: false)
        signal(SIGPIPE, SIG_IGN)
        conn.relay(input: 0, output: 1)
    }

    /// The connection and every check, on stderr.
    func report(_ r: AttestedCertificateVerifier.Result, info: ConnectionInfo?, refused: Bool) {
        let report = r.report.flatMap { $0.bytes.count == SNPReport.size ? $0 : nil }
        if json {
            var obj: [String: Any] = [
                "verdict": refused ? "refused" : "pass", "server": target,
                "checks": r.checks.map {
                    ["check": $0.name, "result": $0.passed ? "pass" : "fail", "detail": $0.detail]
                },
            ]
            if let info {
                obj["protocol"] = info.version
                obj["cipher"] = info.cipher
            }
            if let report {
                obj["measurement"] = Hex.encode(report.measurement)
                obj["reported_tcb"] = "\(report.reportedTCB)"
                obj["chip_id"] = Hex.encode(report.chipID)
            }
            if let root = r.root { obj["root"] = root }
            printError((try? jsonLine(obj)) ?? "{}")
            return
        }
        if let info { printError("connected to \(target): \(info.version), \(info.cipher)") }
        if let report {
            printError(
                "peer: measurement \(Hex.encode(report.measurement)), reported TCB \(report.reportedTCB), chip \(Hex.encode(report.chipID).prefix(16))…"
            )
        }
        for c in r.checks { printError("\(c.passed ? "PASS" : "FAIL")  \(c.name): \(c.detail)") }
        printError(refused ? "verdict: REFUSED (nothing was sent)" : "verdict: all \(r.checks.count) checks pass")
    }
}

/// SIGHUP, SIGINT and SIGTERM go to the signal thread only (threads made later inherit the
/// mask); SIGPIPE is ignored (a peer that goes away mid-write is an error on that connection).
func blockControlSignals() {
    signal(SIGPIPE, SIG_IGN)
    var set = sigset_t()
    sigemptyset(&set)
    for s in [SIGHUP, SIGINT, SIGTERM] { sigaddset(&set, s) }
    pthread_sigmask(SIG_BLOCK, &set, nil)
}

/// A thread that waits for SIGHUP (`onReload`) and SIGINT or SIGTERM (`onStop`, once).
func startSignalThread(onReload: @escaping @Sendable () -> Void, onStop: @escaping @Sendable () -> Void) {
    Thread.detachNewThread {
        var set = sigset_t()
        sigemptyset(&set)
        for s in [SIGHUP, SIGINT, SIGTERM] { sigaddset(&set, s) }
        while true {
            var sig: Int32 = 0
            guard sigwait(&set, &sig) == 0 else { return }
            if sig == SIGHUP {
                onReload()
            } else {
                onStop()
                return
            }
        }
    }
}
