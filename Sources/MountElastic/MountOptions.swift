import ElasticFormat
import ElasticRuntime
import Glibc

/// `-o` options split into ELASTIC's own and those passed through to FUSE.
struct MountOptions {
    var keyFile: String?
    var passFile: String?
    var platform: String?
    var simulatorState: String?
    /// The platform named by `platform=` and `simulator_state=` (nil name: the one detected).
    var platformChoice: PlatformChoice { PlatformChoice(name: platform, simulatorState: simulatorState) }
    var debug = false
    var readOnly = false
    var threads = 8
    /// `spin=MICROSECONDS`: how long the thread that reads /dev/fuse polls it before it sleeps.
    var spinMicroseconds = 50
    var cacheTimeout = 1.0
    var parallelCrypto = true
    /// `ctl_group=GROUP`: the control file's group, which may then use it too (mode 0660).
    var controlGroup: gid_t?
    /// `witness=file:PATH` or `witness=tpm:NV-INDEX`: where the store's freshness counter lives.
    var witness: String?
    /// Seconds between checkpoints of the versions map (0: only at unmount).
    var checkpointInterval: Double = 30
    /// `tpm_tcti=CONF`: how to reach the TPM of a `tpm:` witness (default: $ELASTIC_TPM_TCTI, or
    /// the kernel's /dev/tpmrm0).
    var tpmTCTI: String?
    var fuse: [String] = []

    /// Options that mount(8) and fstab use and that mean nothing to a FUSE filesystem.
    static let ignored: Set<String> = [
        "defaults", "auto", "noauto", "nofail", "_netdev", "user", "users", "nouser", "owner", "group", "rw",
    ]
    /// Options ELASTIC always sets: permission checks in the kernel (so allow_other cannot expose
    /// root's files) and auto_unmount (a crashed daemon leaves no dead mount).
    static let mandatory = ["default_permissions", "auto_unmount"]

    init(_ groups: [String], backing: String) throws {
        for group in groups {
            for opt in group.split(separator: ",", omittingEmptySubsequences: true).map(String.init) {
                let (key, value) = Self.split(opt)
                switch key {
                case "keyfile": keyFile = try Self.need(value, key)
                case "passfile": passFile = try Self.need(value, key)
                case "platform": platform = try Self.need(value, key)
                case "simulator_state": simulatorState = try Self.need(value, key)
                case "debug": debug = true
                case "threads":
                    guard let v = value.flatMap({ Int($0) }), (1...64).contains(v) else {
                        throw MountError.usage("threads takes a number from 1 to 64")
                    }
                    threads = v
                case "spin":
                    guard let v = value.flatMap({ Int($0) }), (0...10000).contains(v) else {
                        throw MountError.usage("spin takes microseconds from 0 to 10000")
                    }
                    spinMicroseconds = v
                case "cache_timeout":
                    guard let v = value.flatMap({ Double($0) }), v >= 0, v <= 3600 else {
                        throw MountError.usage("cache_timeout takes seconds from 0 to 3600")
                    }
                    cacheTimeout = v
                case "ctl_group":
                    controlGroup = try Self.group(try Self.need(value, key))
                case "witness":
                    let w = try Self.need(value, key)
                    guard w.hasPrefix("file:/") || w.hasPrefix("tpm:") else {
                        throw MountError.usage("witness takes file:/ABSOLUTE/PATH or tpm:NV-INDEX")
                    }
                    witness = w
                case "tpm_tcti": tpmTCTI = try Self.need(value, key)
                case "checkpoint":
                    guard let v = Double(try Self.need(value, key)), v >= 0, v <= 86400 else {
                        throw MountError.usage("checkpoint= takes seconds, 0 to 86400")
                    }
                    checkpointInterval = v
                case "single_crypto_thread":
                    parallelCrypto = false
                case "ro":
                    readOnly = true
                    fuse.append(opt)
                case "fsname", "subtype":
                    break  // set by ELASTIC
                case _ where Self.ignored.contains(key) || key.hasPrefix("x-") || key == "comment":
                    break
                default:
                    fuse.append(opt)
                }
            }
        }
        for m in Self.mandatory where !fuse.contains(m) { fuse.append(m) }
        fuse.append(
            "fsname=" + backing.split(separator: ",", omittingEmptySubsequences: false).joined(separator: "\\,"))
        fuse.append("subtype=elastic")
    }

    /// A group by name or number.
    static func group(_ name: String) throws -> gid_t {
        if let gid = gid_t(name) { return gid }
        guard let g = getgrnam(name) else { throw MountError.usage("ctl_group: no group \(name)") }
        return g.pointee.gr_gid
    }

    static func split(_ opt: String) -> (String, String?) {
        guard let eq = opt.firstIndex(of: "=") else { return (opt, nil) }
        return (String(opt[..<eq]), String(opt[opt.index(after: eq)...]))
    }

    static func need(_ v: String?, _ key: String) throws -> String {
        guard let v, !v.isEmpty else { throw MountError.usage("option \(key) needs a value (\(key)=PATH)") }
        return v
    }
}

/// Errors of the mount helper, each with its exit code.
enum MountError: Error, CustomStringConvertible {
    case usage(String)
    case mount(String)
    var description: String {
        switch self {
        case .usage(let s), .mount(let s): return s
        }
    }
    var exitCode: ElasticExitCode {
        switch self {
        case .usage: return .usage
        case .mount: return .mountFailed
        }
    }
}
