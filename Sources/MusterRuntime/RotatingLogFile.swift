import Glibc
import MusterCore
import Synchronization

/// One instance's log file: `<log_dir>/<service>/<index>.log`, rotated by size to `.1` … `.N`.
/// Appends whole lines only, so rotation never splits a line; the size is read from the file on
/// open, so rotation continues where it left off across a daemon restart.
final class RotatingLogFile: Sendable {
    let path: String
    private struct State {
        var fd: Int32 = -1
        var size: UInt64 = 0
        var maxBytes: UInt64
        var backups: Int
        var failing = false
    }
    private let state: Mutex<State>
    /// Called when writing starts failing (disk full, folder gone) and when it recovers, with
    /// whether it is failing now.
    private let report: @Sendable (_ failing: Bool, _ message: String) -> Void

    /// - Parameter failing: the path was failing when an earlier writer of it let go (an instance
    ///   restarted meanwhile), so the failure is not news and only the recovery will be reported.
    init(path: String, maxBytes: UInt64, backups: Int, failing: Bool = false,
         report: @escaping @Sendable (_ failing: Bool, _ message: String) -> Void) {
        self.path = path
        var initial = State(maxBytes: maxBytes, backups: backups)
        initial.failing = failing
        self.state = Mutex(initial)
        self.report = report
    }

    func update(maxBytes: UInt64, backups: Int) {
        state.withLock { $0.maxBytes = maxBytes; $0.backups = backups }
    }

    /// Appends complete lines (each ending in "\n"). A batch that does not fit is split at a line
    /// boundary, so no file grows past `max_bytes` (unless one line alone is longer).
    func append(_ lines: [UInt8]) {
        var message: String?
        let failingNow = state.withLock { s -> Bool in
            var start = 0
            while start < lines.count {
                if s.fd < 0 { open(&s) }
                guard s.fd >= 0 else {
                    if !s.failing { message = "cannot open \(path): \(FileSystem.errorText(errno)); lines are dropped until it works again" }
                    s.failing = true
                    return true
                }
                let room = s.maxBytes > s.size ? Int(s.maxBytes - s.size) : 0
                var end = lines.count
                if end - start > room {
                    // The last newline that still fits; none fits: rotate first (or write one
                    // over-long line into an empty file).
                    let limit = min(lines.count, start + room)
                    if let newline = lines[start..<limit].lastIndex(of: UInt8(ascii: "\n")) {
                        end = newline + 1
                    } else if s.size > 0 {
                        rotate(&s)
                        continue
                    } else {
                        end = (lines[start...].firstIndex(of: UInt8(ascii: "\n")) ?? lines.count - 1) + 1
                    }
                }
                if !write(lines[start..<end], &s, &message) { return true }
                start = end
            }
            if s.failing { message = "writing \(path) works again" }
            s.failing = false
            return false
        }
        if let message { report(failingNow, message) }
    }

    private func write(_ bytes: ArraySlice<UInt8>, _ s: inout State, _ message: inout String?) -> Bool {
        var offset = bytes.startIndex
        while offset < bytes.endIndex {
            let n = bytes[offset...].withUnsafeBytes { Glibc.write(s.fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                if !s.failing { message = "cannot write \(path): \(FileSystem.errorText(errno)); lines are dropped until it works again" }
                s.failing = true
                return false
            }
            offset += n
        }
        s.size += UInt64(bytes.count)
        return true
    }

    func close() {
        state.withLock { s in
            if s.fd >= 0 { Glibc.close(s.fd) }
            s.fd = -1
        }
    }

    private func open(_ s: inout State) {
        try? FileSystem.makeDirectories(PathText.directory(of: path))
        s.fd = Glibc.open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
        guard s.fd >= 0 else { return }
        var info = stat()
        s.size = fstat(s.fd, &info) == 0 ? UInt64(info.st_size) : 0
    }

    /// web/0.log → web/0.log.1 → … → web/0.log.N; the oldest falls off.
    private func rotate(_ s: inout State) {
        Glibc.close(s.fd)
        s.fd = -1
        if s.backups == 0 {
            _ = unlink(path)
        } else {
            _ = unlink("\(path).\(s.backups)")
            for n in stride(from: s.backups - 1, through: 1, by: -1) { _ = rename("\(path).\(n)", "\(path).\(n + 1)") }
            _ = rename(path, path + ".1")
        }
        open(&s)
    }
}

/// "2026-11-27T08:05:43.123Z", cheap enough for every line.
/// The stamp at the start of every log line: fixed width, UTC, so text order is time order.
public enum Timestamp {
    /// "2026-11-27T08:05:43.123Z".
    public static let width = 24

    public static func iso8601(_ seconds: Double) -> String {
        var whole = time_t(seconds)
        var parts = tm()
        gmtime_r(&whole, &parts)
        let millis = Int((seconds - Double(whole)) * 1000)
        func pad(_ value: Int32, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2)).\(pad(Int32(millis), 3))Z"
    }
}
