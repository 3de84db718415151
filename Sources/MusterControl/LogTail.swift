import Glibc
import Hummingbird
import MusterRuntime

/// `logs [-f] [-n N] [--since D]`: the last lines of an instance's log file, then, when following,
/// what is appended to it, across rotation (a new inode or a shorter file starts over from its top).
enum LogTail {
    /// - Parameters:
    ///   - since: only lines stamped at or after this time (seconds since the epoch).
    ///   - isOver: checked between polls; following ends when it says so (daemon shutdown), so an
    ///     open `logs -f` never holds up a graceful shutdown.
    static func response(path: String, lines: Int, since: Double? = nil, follow: Bool, isOver: @escaping @Sendable () async -> Bool) -> Response {
        let initial = since.map { linesSince(path: path, since: $0, count: lines) } ?? lastLines(path: path, count: lines)
        return response(initial: initial, path: path, follow: follow, isOver: isOver)
    }

    /// The last `count` lines stamped at or after `since`, and where the file ended.
    static func linesSince(path: String, since: Double, count: Int) -> (bytes: [UInt8], end: UInt64, inode: UInt) {
        let whole = LogInterleave.readAll(path)
        let split = LogInterleave.splitLines(whole.bytes[...])
        let cutoff = Array(Timestamp.iso8601(since).utf8)
        var bytes: [UInt8] = []
        for line in LogInterleave.interleave([split.lines], since: cutoff).suffix(count) { bytes += line.text + [UInt8(ascii: "\n")] }
        return (bytes, whole.end - UInt64(whole.bytes.count - split.used), whole.inode)
    }

    private static func response(initial: (bytes: [UInt8], end: UInt64, inode: UInt), path: String, follow: Bool,
                                 isOver: @escaping @Sendable () async -> Bool) -> Response {
        guard follow else {
            var buffer = ByteBuffer()
            buffer.writeBytes(initial.bytes)
            return Response(status: .ok, headers: [.contentType: "text/plain; charset=utf-8"], body: .init(byteBuffer: buffer))
        }
        return Response(status: .ok, headers: [.contentType: "text/plain; charset=utf-8"], body: ResponseBody { writer in
            var buffer = ByteBuffer()
            buffer.writeBytes(initial.bytes)
            try await writer.write(buffer)
            var position = Position(offset: initial.end, inode: initial.inode)
            var chunk = [UInt8](repeating: 0, count: 65536)
            while await !isOver() {
                try await Task.sleep(for: .milliseconds(200))
                guard let fd = position.openAppended(path) else { continue }
                defer { close(fd) }
                while true {
                    let n = chunk.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(position.offset)) }
                    if n <= 0 { break }
                    position.offset += UInt64(n)
                    var out = ByteBuffer()
                    out.writeBytes(chunk[0..<n])
                    try await writer.write(out)
                }
            }
            try await writer.finish(nil)
        })
    }

    /// Where following a log file reads next.
    struct Position {
        var offset: UInt64
        var inode: UInt

        /// Opens `path` to read what was appended since this position; a new inode or a shorter
        /// file (rotation) starts over from its top. Nil when there is nothing new (or no file).
        mutating func openAppended(_ path: String) -> Int32? {
            var info = stat()
            guard stat(path, &info) == 0 else { return nil }
            if info.st_ino != inode || UInt64(info.st_size) < offset {
                self = Position(offset: 0, inode: info.st_ino)
            }
            guard UInt64(info.st_size) > offset else { return nil }
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            return fd >= 0 ? fd : nil
        }
    }

    /// The last `count` lines of the file (reading backwards from its end), and where it ended.
    static func lastLines(path: String, count: Int) -> (bytes: [UInt8], end: UInt64, inode: UInt) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return ([], 0, 0) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { return ([], 0, 0) }
        let size = UInt64(info.st_size)
        guard count > 0, size > 0 else { return ([], size, info.st_ino) }
        var collected: [UInt8] = []
        var offset = size
        var newlines = 0
        let step: UInt64 = 65536
        while offset > 0 {
            let start = offset > step ? offset - step : 0
            var chunk = [UInt8](repeating: 0, count: Int(offset - start))
            let n = chunk.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(start)) }
            guard n > 0 else { break }
            collected = Array(chunk[0..<n]) + collected
            offset = start
            // A trailing newline ends the last line; it does not start another.
            newlines = collected.dropLast().filter { $0 == UInt8(ascii: "\n") }.count
            if newlines >= count { break }
        }
        var cut = collected.startIndex
        var seen = 0
        for i in stride(from: collected.count - 2, through: 0, by: -1) where collected[i] == UInt8(ascii: "\n") {
            seen += 1
            if seen == count { cut = i + 1; break }
        }
        return (Array(collected[cut...]), size, info.st_ino)
    }
}
