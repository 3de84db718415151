import Glibc
import Hummingbird
import MusterCore
import MusterRuntime

/// `logs --all`: every instance's log file, interleaved by the time stamp the log pump puts at the
/// start of each line (fixed-width UTC, so comparing the text compares the times), each line
/// prefixed `service.index | `. Following polls every file; a poll's new lines are interleaved
/// among themselves, so lines written within one poll of each other still come in time order.
enum LogInterleave {
    /// One log line of one source, without its newline.
    struct Line: Equatable {
        var source: Int
        var text: [UInt8]
    }

    /// Sources' lines (each in file order) merged by time stamp. Stable: lines of one stamp keep
    /// the order of their sources, then their file order. A line without a stamp (a line cut at
    /// 16 KiB continues unstamped) sorts with the line before it in its file.
    static func interleave(_ sources: [[[UInt8]]], since cutoff: [UInt8]? = nil) -> [Line] {
        var keyed: [(key: ArraySlice<UInt8>, source: Int, order: Int, text: [UInt8])] = []
        for (source, lines) in sources.enumerated() {
            var key: ArraySlice<UInt8> = []
            for (order, text) in lines.enumerated() {
                if let stamp = stamp(of: text) { key = stamp }
                if let cutoff, key.lexicographicallyPrecedes(cutoff) { continue }
                keyed.append((key, source, order, text))
            }
        }
        keyed.sort { a, b in
            if a.key != b.key { return a.key.lexicographicallyPrecedes(b.key) }
            return a.source != b.source ? a.source < b.source : a.order < b.order
        }
        return keyed.map { Line(source: $0.source, text: $0.text) }
    }

    /// "2026-11-27T08:05:43.123Z" at the start of `line`, when it is there.
    static func stamp(of line: [UInt8]) -> ArraySlice<UInt8>? {
        let width = Timestamp.width
        guard line.count >= width, line[4] == UInt8(ascii: "-"), line[10] == UInt8(ascii: "T"), line[width - 1] == UInt8(ascii: "Z") else { return nil }
        return line[0..<width]
    }

    /// Complete lines of `bytes` and how many bytes they took: a last line without its newline
    /// is left for the next read.
    static func splitLines(_ bytes: ArraySlice<UInt8>) -> (lines: [[UInt8]], used: Int) {
        var lines: [[UInt8]] = []
        var start = bytes.startIndex
        for i in bytes.indices where bytes[i] == UInt8(ascii: "\n") {
            lines.append(Array(bytes[start..<i]))
            start = i + 1
        }
        return (lines, start - bytes.startIndex)
    }

    static func prefix(_ file: Supervisor.LogSources.File) -> [UInt8] { Array("\(file.service).\(file.index) | ".utf8) }

    /// The note that stands in for a journal service's lines.
    static func journalNote(_ service: String) -> String {
        "note: \(service) logs to the journal ([logs] target = \"journal\"), not shown here: journalctl -t \(LogSpec.journalIdentifier(service: service, index: 0)) (one -t per instance)\n"
    }

    /// - Parameters:
    ///   - lines: at most this many lines, the last of the interleaved whole.
    ///   - since: only lines stamped at or after this time (seconds since the epoch).
    ///   - isOver: checked between polls; following ends when it says so (daemon shutdown).
    static func response(sources: @escaping @Sendable () async -> Supervisor.LogSources, lines: Int, since: Double?, follow: Bool,
                         isOver: @escaping @Sendable () async -> Bool) async -> Response {
        let initial = await sources()
        let cutoff = since.map { Array(Timestamp.iso8601($0).utf8) }
        var contents: [[[UInt8]]] = []
        var positions: [String: LogTail.Position] = [:]
        for file in initial.files {
            // With a time bound, the whole current file (rotation keeps it to max_bytes); else
            // the last `lines` of each are enough to hold the last `lines` of all.
            let read = since == nil ? LogTail.lastLines(path: file.path, count: lines) : readAll(file.path)
            let split = splitLines(read.bytes[...])
            contents.append(split.lines)
            positions[file.path] = LogTail.Position(offset: read.end - UInt64(read.bytes.count - split.used), inode: read.inode)
        }
        var head = ByteBuffer()
        for service in initial.journal { head.writeString(journalNote(service)) }
        let merged = interleave(contents, since: cutoff).suffix(lines)
        head.writeBytes(render(merged, initial.files))
        let headers: HTTPFields = [.contentType: "text/plain; charset=utf-8"]
        guard follow else { return Response(status: .ok, headers: headers, body: .init(byteBuffer: head)) }
        let first = head, start = positions
        return Response(status: .ok, headers: headers, body: ResponseBody { writer in
            try await writer.write(first)
            var positions = start
            var noted = Set(initial.journal)
            while await !isOver() {
                try await Task.sleep(for: .milliseconds(200))
                let now = await sources()
                var out = ByteBuffer()
                for service in now.journal where noted.insert(service).inserted { out.writeString(journalNote(service)) }
                var fresh: [[[UInt8]]] = []
                for file in now.files {
                    // A file first seen while following is new: all of it is news.
                    let (lines, position) = readNew(file.path, from: positions[file.path] ?? LogTail.Position(offset: 0, inode: 0))
                    positions[file.path] = position
                    fresh.append(lines)
                }
                out.writeBytes(render(interleave(fresh)[...], now.files))
                if out.readableBytes > 0 { try await writer.write(out) }
            }
            try await writer.finish(nil)
        })
    }

    private static func render(_ lines: ArraySlice<Line>, _ files: [Supervisor.LogSources.File]) -> [UInt8] {
        let prefixes = files.map(prefix)
        var out: [UInt8] = []
        for line in lines {
            out += prefixes[line.source]
            out += line.text
            out.append(UInt8(ascii: "\n"))
        }
        return out
    }

    /// The complete lines appended since `position` (across rotation, as `LogTail` follows).
    private static func readNew(_ path: String, from position: LogTail.Position) -> ([[UInt8]], LogTail.Position) {
        var position = position
        guard let fd = position.openAppended(path) else { return ([], position) }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        var offset = position.offset
        // At most 4 MiB a poll, so one flooding service cannot hold the others back for long.
        while bytes.count < 4 << 20 {
            let n = chunk.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(offset)) }
            if n <= 0 { break }
            offset += UInt64(n)
            bytes += chunk[0..<n]
        }
        let split = splitLines(bytes[...])
        position.offset += UInt64(split.used)
        return (split.lines, position)
    }

    static func readAll(_ path: String) -> (bytes: [UInt8], end: UInt64, inode: UInt) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return ([], 0, 0) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { return ([], 0, 0) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(bytes.count)) }
            if n <= 0 { break }
            bytes += chunk[0..<n]
        }
        return (bytes, UInt64(bytes.count), info.st_ino)
    }
}
