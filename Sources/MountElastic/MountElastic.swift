import ArgumentParser
import CElasticLinux
import ElasticControl
import ElasticFUSE
import ElasticFormat
import ElasticRuntime
import ElasticSystem
import Foundation
import Glibc
import Logging

/// `mount.elastic BACKING MOUNTPOINT [-sfnv] [-o OPTIONS]`: the mount(8) helper.
@main
struct MountElastic: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mount.elastic",
        abstract: "Mount an ELASTIC encrypted store.",
        discussion: """
            Follows the mount(8) helper convention. Returns once the filesystem is mounted (exit 0) \
            or mounting failed (non-zero, one line on stderr; exit codes as for elastic(1): 10 bad \
            store, 11 newer format, 12 wrong key, 13 key source unreadable, 14 store integrity (rolled back, replaced or missing pieces), 32 mount failed).

            Without keyfile= or passfile=, a store with a sealed slot is opened by the platform \
            (SEV-SNP), and any other store asks for its passphrase on the terminal.

            ELASTIC options: keyfile=PATH (a key file made by `elastic init --keyfile`); \
            passfile=PATH (the passphrase is the file's first line); platform=snp|snp-simulator and \
            simulator_state=FILE (the SNP simulator, for tests and demos only); \
            witness=file:PATH or witness=tpm:NV-INDEX (storage the host cannot roll back that holds the \
            store's freshness counter: a rollback of the whole store is refused with exit code 14), \
            tpm_tcti=CONF (how to reach that TPM, default $ELASTIC_TPM_TCTI or device:/dev/tpmrm0); \
            checkpoint=SECONDS (how often the version of every changed object is recorded while mounted, \
            default 30; 0: only at unmount; after a crash nothing older than the checkpoint before last \
            is accepted); ctl_group=GROUP (that \
            group may use the control file .elastic too); cache_timeout=SECONDS (how long the kernel \
            may cache names and attributes, default 1); threads=N (FUSE worker threads, 1 to 64, \
            default 8); spin=MICROSECONDS (how long the thread that reads FUSE requests polls for the next \
            one before it sleeps, default 50: a busy caller's requests are taken without a wake-up; \
            0: it sleeps at once); single_crypto_thread; debug. \
            ro and other FUSE options (allow_other, ...) go to FUSE; fstab's defaults, auto, noauto, \
            nofail, _netdev, user and x-* are accepted and ignored. default_permissions and \
            auto_unmount are always set.
            """)

    @Argument(help: "The backing directory holding the encrypted store.")
    var backing: String

    @Argument(help: "Where to mount the decrypted view.")
    var mountpoint: String

    @Option(name: .customShort("o"), help: "Comma-separated mount options.")
    var options: [String] = []

    @Flag(name: .customShort("f"), help: "Stay in the foreground.")
    var foreground = false

    @Flag(name: .customShort("d"), help: "Debug: log every operation (implies -f).")
    var debug = false

    @Flag(name: .customShort("s"), help: "Sloppy: accepted for mount(8), ignored.")
    var sloppy = false

    @Flag(name: .customShort("n"), help: "No mtab: accepted for mount(8), ignored.")
    var noMtab = false

    @Flag(name: .customShort("v"), help: "Verbose.")
    var verbose = false

    @Option(name: .customLong("notify-fd"), help: .hidden)
    var notifyFD: Int32?

    mutating func run() throws {
        let code = execute()
        if code != .success { throw ExitCode(code.rawValue) }
    }

    /// Reports a failure in one line: on stderr, or (in the background daemon) through the
    /// notify pipe for the waiting parent to print.
    func fail(_ message: String, _ code: ElasticExitCode) -> ElasticExitCode {
        let s = "mount.elastic: error: \(message)\n"
        _ = s.withCString { Glibc.write(notifyFD ?? 2, $0, strlen($0)) }
        return code
    }

    func execute() -> ElasticExitCode {
        let opts: MountOptions
        do { opts = try MountOptions(options, backing: backing) } catch let e as MountError {
            return fail(e.description, e.exitCode)
        } catch { return fail("\(error)", .usage) }
        let debugging = debug || opts.debug
        if opts.platformChoice.isSimulator && notifyFD == nil {
            let w =
                "mount.elastic: WARNING: using the SEV-SNP SIMULATOR: keys are NOT sealed by hardware; for tests and demos only\n"
            _ = w.withCString { Glibc.write(2, $0, strlen($0)) }
        }
        if !(foreground || debugging) && notifyFD == nil {
            return Daemon.spawnAndWait()
        }
        return serve(opts, debugging: debugging)
    }

    /// Tells the user something before the mount is ready: on stderr, or through the notify
    /// pipe for the waiting parent to print.
    func warn(_ message: String) {
        let s = notifyFD == nil ? "mount.elastic: warning: \(message)\n" : "w\(message)\n"
        _ = s.withCString { Glibc.write(notifyFD ?? 2, $0, strlen($0)) }
    }

    /// The store's root against its freshness witness (binding it to `witness=` the first time).
    /// Says once when nothing detects a rollback of the whole store.
    func checkFreshness(_ store: UnlockedStore, _ opts: MountOptions, logger: Logger) throws {
        let opener = Witnesses.opener(tcti: opts.tpmTCTI)
        StoreRootKeeper.defaultOpener.withLock { $0 = opener }
        let state = try store.root.bindWitness(
            requested: opts.witness, opener: opener, readOnly: opts.readOnly)
        switch state {
        case .none:
            warn(
                "no freshness witness: a rollback of the whole store to an older copy is not detected "
                    + "(mount with -o witness=file:PATH or -o witness=tpm:NV-INDEX)")
        case .bound(let spec, let value):
            logger.notice("store bound to freshness witness", metadata: ["witness": "\(spec)", "value": "\(value)"])
        case .verified(let spec, let value):
            logger.info("freshness witness agrees", metadata: ["witness": "\(spec)", "value": "\(value)"])
        }
    }

    func serve(_ opts: MountOptions, debugging: Bool) -> ElasticExitCode {
        ProcessHardening.unblockSignals()
        umask(0)  // modes arrive already masked by the kernel; create them exactly
        _ = ProcessHardening.setNonDumpable()
        ProcessHardening.raiseFileLimit()
        let memoryLocked = ProcessHardening.lockMemory()
        if notifyFD != nil {
            CElasticLinux_openlog("mount.elastic")
            DaemonLogHandler.useSyslog.store(true, ordering: .relaxed)
        }
        LoggingSystem.bootstrap { label in
            var h = DaemonLogHandler(label: label)
            h.logLevel = debugging ? .debug : (verbose ? .info : .notice)
            return h
        }
        let logger = Logger(label: "elastic.fuse")
        if !memoryLocked {
            logger.warning(
                "cannot lock the daemon's memory (mlockall): key schedules and plaintext buffers may be swapped out")
        }

        var st = stat()
        guard stat(mountpoint, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else {
            return fail("mount point \(mountpoint) is not a directory", .mountFailed)
        }
        let store: UnlockedStore
        let lock: StoreLock
        do {
            let source = try StoreOpener.defaultSource(
                backing: backing, keyFile: opts.keyFile, passFile: opts.passFile, platform: opts.platformChoice)
            store = try StoreOpener.unlock(backing: backing, source: source)
        } catch {
            return fail("\(error)", ElasticExitCode.forStoreError(error))
        }
        // One mount per store: held until this daemon ends.
        do { lock = try StoreLock(directory: store.directory) } catch {
            return fail("\(error)", ElasticExitCode.forStoreError(error))
        }
        defer { withExtendedLifetime(lock) {} }
        do {
            try checkFreshness(store, opts, logger: logger)
        } catch {
            return fail("\(error)", ElasticExitCode.forStoreError(error))
        }
        do {
            let control = try StoreOpener.controlDispatcher(
                for: store, readOnly: opts.readOnly, platform: opts.platformChoice)
            // A read-write mount is a session: its records are stamped with its number, and its
            // end writes the versions map (`VersionMap`) that the next mount checks against.
            let session = opts.readOnly ? nil : try store.root.beginSession()
            if let crashed = session?.crashed {
                logger.notice(
                    "the last read-write mount did not end cleanly: every object's version is read now",
                    metadata: ["session": "\(crashed)"])
            }
            let fs = try ElasticFilesystem(
                store: store, control: control, logger: logger, debug: debugging, readOnly: opts.readOnly,
                cacheTimeout: opts.cacheTimeout, parallelCrypto: opts.parallelCrypto,
                controlGroup: opts.controlGroup, versions: try session?.versions ?? store.root.readVersions(),
                session: session?.number ?? 0)
            store.forgetMaster()  // everything the daemon needs is derived now
            if session != nil, opts.checkpointInterval > 0 {
                // Checkpoints bound what a crash (or a host that kills the VM) lets come back.
                Thread.detachNewThread {
                    while true {
                        Thread.sleep(forTimeInterval: opts.checkpointInterval)
                        do { try fs.checkpoint() } catch {
                            logger.error("checkpoint of the versions map failed", metadata: ["why": "\(error)"])
                        }
                    }
                }
            }
            try FUSESession.run(
                fs, mountpoint: mountpoint, options: opts.fuse, debug: debugging && debug, maxThreads: opts.threads,
                spinMicroseconds: opts.spinMicroseconds
            ) {
                if let fd = notifyFD { Daemon.detach(notifyFD: fd) }
                logger.info("mounted", metadata: ["backing": "\(backing)", "mountpoint": "\(mountpoint)"])
            }
            if session != nil {
                do { try fs.endSession() } catch {
                    logger.error(
                        "could not record this session's versions: the next mount reads every object's version",
                        metadata: ["why": "\(error)"])
                }
            }
            logger.info("unmounted", metadata: ["mountpoint": "\(mountpoint)"])
            return .success
        } catch let error as FormatError {
            return fail("\(error)", ElasticExitCode.forStoreError(error))  // the key store, checked against the root
        } catch {
            return fail("\(error)", .mountFailed)
        }
    }
}
