import CElasticLinux
import Glibc
import Logging
import Synchronization

/// Log output of the daemon: stderr while it has a terminal (or runs with -f), syslog once it
/// has detached. Messages never carry key material (nothing secret is ever logged).
struct DaemonLogHandler: LogHandler {
    static let useSyslog = Atomic<Bool>(false)
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var extra = event.metadata ?? [:]
        if let error = event.error { extra["error"] = "\(error)" }
        log(
            level: event.level, message: event.message, metadata: extra, source: event.source, file: event.file,
            function: event.function, line: event.line)
    }

    func log(
        level: Logger.Level, message: Logger.Message, metadata extra: Logger.Metadata?, source: String, file: String,
        function: String, line: UInt
    ) {
        let all = metadata.merging(extra ?? [:]) { $1 }
        let meta =
            all.isEmpty
            ? "" : " " + all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        let text = "\(level): \(message)\(meta)"
        if Self.useSyslog.load(ordering: .relaxed) {
            let prio: Int32 =
                switch level {
                case .critical: 2
                case .error: 3
                case .warning: 4
                case .notice: 5
                case .info: 6
                default: 7
                }
            CElasticLinux_syslog(prio, text)
        } else {
            let s = "mount.elastic: \(text)\n"
            _ = s.withCString { Glibc.write(2, $0, strlen($0)) }
        }
    }
}
