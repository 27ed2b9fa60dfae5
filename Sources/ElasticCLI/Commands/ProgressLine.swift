import Foundation
import Glibc

/// One line of progress on stderr for long commands, redrawn at most ten times a second, and
/// only on a terminal (nothing in pipes, logs or JSON output).
final class ProgressLine {
    let enabled: Bool
    private var last = 0.0

    init(enabled: Bool = true) { self.enabled = enabled && isatty(2) == 1 }

    func show(_ text: @autoclosure () -> String) {
        guard enabled else { return }
        let now = Date().timeIntervalSince1970
        guard now - last >= 0.1 else { return }
        last = now
        FileHandle.standardError.write(Data(("\r\u{1B}[K" + text()).utf8))
    }

    func clear() {
        if enabled { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
    }
}
