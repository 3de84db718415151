import CSystemd
import Glibc
import Logging

/// journald through libsystemd: where musterd's own log goes when systemd connected its stderr to
/// the journal, and the streams instances with `[logs] target = "journal"` write to.
public enum Journal {
    /// systemd sets JOURNAL_STREAM=<device>:<inode> for a service whose stderr goes to the
    /// journal; it counts only while fd 2 is still that stream (not redirected since).
    public static var isStandardErrorJournal: Bool {
        guard let value = getenv("JOURNAL_STREAM").map({ String(cString: $0) }) else { return false }
        let parts = value.split(separator: ":")
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return false }
        var status = stat()
        guard fstat(2, &status) == 0 else { return false }
        return UInt64(status.st_dev) == device && UInt64(status.st_ino) == inode
    }

    /// A stream socket into the journal (`sd_journal_stream_fd`): each line written to it becomes
    /// an entry with SYSLOG_IDENTIFIER `identifier` at `priority` (LOG_INFO for stdout,
    /// LOG_WARNING for stderr).
    /// - Returns: the descriptor, or the errno text when journald cannot be reached.
    public static func stream(identifier: String, priority: Int32) -> Result<Int32, JournalError> {
        let fd = sd_journal_stream_fd(identifier, priority, 0)
        guard fd >= 0 else { return .failure(JournalError(message: "journald: \(String(cString: strerror(-fd)))")) }
        return .success(fd)
    }

    /// Sends one entry with these fields (`MESSAGE=…`, `PRIORITY=…`, …) via `sd_journal_sendv`.
    public static func send(_ fields: [String]) {
        var storage = fields.map { Array($0.utf8) }
        var vectors: [iovec] = []
        vectors.reserveCapacity(storage.count)
        storage.withUnsafeMutableBufferPointer { buffers in
            for index in buffers.indices {
                buffers[index].withUnsafeMutableBytes { raw in
                    vectors.append(iovec(iov_base: raw.baseAddress, iov_len: raw.count))
                }
            }
            _ = sd_journal_sendv(vectors, Int32(vectors.count))
        }
    }
}

public struct JournalError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

/// swift-log to journald, with structured fields: MESSAGE, PRIORITY, SYSLOG_IDENTIFIER=musterd,
/// and each metadata key as MUSTER_<KEY> (MUSTER_SERVICE=web, MUSTER_INSTANCE=0, MUSTER_EVENT=…).
public struct JournalLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    private let label: String

    public init(label: String) {
        self.label = label
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var fields = [
            "MESSAGE=\(event.message)",
            "PRIORITY=\(Self.priority(event.level))",
            "SYSLOG_IDENTIFIER=musterd",
            "CODE_FILE=\(event.file)", "CODE_LINE=\(event.line)", "CODE_FUNC=\(event.function)",
        ]
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        for (key, value) in merged {
            let name = "MUSTER_" + key.uppercased().map { $0.isLetter || $0.isNumber ? String($0) : "_" }.joined()
            fields.append("\(name)=\(value)")
        }
        Journal.send(fields)
    }

    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }
}
