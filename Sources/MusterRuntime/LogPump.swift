import CMusterShims
import Glibc
import Synchronization

/// Owns every instance's stdout and stderr pipes and writes what comes out of them, line by line
/// and stamped with time and stream, to rotating files. One thread; each ready pipe is read at most
/// 64 KiB at a time, so a service that floods its output gets its share and no more, and while the
/// thread is busy the flooder blocks on its own full pipe, not anyone else.
public final class LogPump: Sendable {
    private let loop = EpollLoop(name: "muster-logs")
    /// One read buffer for every pipe: reads happen only on the pump's thread, one at a time, so
    /// 200 instances cost 64 KiB, not 200 × 2 × 64 KiB.
    private let scratch = ReadBuffer()
    private let files = Mutex<[String: (file: RotatingLogFile, users: Int)]>([:])
    /// Paths whose writes are failing. Kept apart from `files`: an instance that restarts while
    /// the disk is full gets a fresh file object, and the failure must not be news again.
    private let failingPaths = Mutex<Set<String>>([])
    private let report: @Sendable (WriteTrouble) -> Void

    /// A log file's writes started failing (`failing`), or work again.
    public struct WriteTrouble: Sendable {
        public var path: String
        public var failing: Bool
        public var message: String
    }

    /// - Parameter report: how write failures are told: once per file while they last, and once
    ///   when they recover.
    public init(report: @escaping @Sendable (WriteTrouble) -> Void) {
        self.report = report
    }

    /// Pipes for one instance start. Pass `stdoutWrite` and `stderrWrite` to the child, then call
    /// `closeWriteEnds`: the pump sees EOF when every writer (grandchildren too) is gone.
    public struct Pipes: Sendable {
        public let stdoutWrite: Int32
        public let stderrWrite: Int32
        public func closeWriteEnds() {
            Glibc.close(stdoutWrite)
            Glibc.close(stderrWrite)
        }
    }

    public func attach(path: String, maxBytes: UInt64, backups: Int) throws(FileSystem.Failure) -> Pipes {
        let file = files.withLock { files -> RotatingLogFile in
            if let entry = files[path] {
                files[path]!.users += 1
                entry.file.update(maxBytes: maxBytes, backups: backups)
                return entry.file
            }
            let failing = failingPaths.withLock { $0.contains(path) }
            let file = RotatingLogFile(path: path, maxBytes: maxBytes, backups: backups, failing: failing) {
                [weak self] failing, message in
                guard let self else { return }
                let news = self.failingPaths.withLock { failing ? $0.insert(path).inserted : $0.remove(path) != nil }
                if news { self.report(WriteTrouble(path: path, failing: failing, message: message)) }
            }
            files[path] = (file, 1)
            return file
        }
        var out: [Int32] = [-1, -1], err: [Int32] = [-1, -1]
        guard muster_pipe_cloexec(&out) == 0 else { release(path); throw FileSystem.Failure(operation: "pipe", path: path, errno: errno) }
        guard muster_pipe_cloexec(&err) == 0 else {
            let code = errno
            Glibc.close(out[0]); Glibc.close(out[1]); release(path)
            throw FileSystem.Failure(operation: "pipe", path: path, errno: code)
        }
        files.withLock { $0[path]!.users += 1 }  // one use per pipe; the attach's own use is dropped below
        do {
            try watch(out[0], stream: "stdout", file: file, path: path)
            try watch(err[0], stream: "stderr", file: file, path: path)
        } catch {
            for fd in out + err { Glibc.close(fd) }
            release(path)
            release(path)
            throw error
        }
        return Pipes(stdoutWrite: out[1], stderrWrite: err[1])
    }

    private func watch(_ fd: Int32, stream: String, file: RotatingLogFile, path: String) throws(FileSystem.Failure) {
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        let reader = PipeReader(fd: fd, stream: stream, file: file, scratch: scratch)
        try loop.add(fd) { [self] _ in
            if reader.drain() == .closed {
                loop.remove(fd)
                Glibc.close(fd)
                release(path)
            }
        }
    }

    private func release(_ path: String) {
        let closing = files.withLock { files -> RotatingLogFile? in
            guard var entry = files[path] else { return nil }
            entry.users -= 1
            if entry.users <= 0 { files[path] = nil; return entry.file }
            files[path] = entry
            return nil
        }
        closing?.close()
    }
}

/// One pipe's read side: splits what arrives into lines and stamps each. Used only on the pump's
/// thread.
private final class PipeReader: @unchecked Sendable {
    enum Outcome { case open, closed }

    let fd: Int32
    let stream: String
    let file: RotatingLogFile
    private var partial: [UInt8] = []
    private let scratch: ReadBuffer
    /// A line longer than this is cut, so one endless line cannot grow memory without bound.
    static let longestLine = 16384

    init(fd: Int32, stream: String, file: RotatingLogFile, scratch: ReadBuffer) {
        self.scratch = scratch
        self.fd = fd
        self.stream = stream
        self.file = file
    }

    func drain() -> Outcome {
        let n = scratch.bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        if n < 0 { return errno == EAGAIN || errno == EINTR ? .open : .closed }
        if n == 0 {
            if !partial.isEmpty { file.append(stamp([partial])) }
            partial = []
            return .closed
        }
        var lines: [[UInt8]] = []
        var start = 0
        let buffer = scratch.bytes
        for i in 0..<n where buffer[i] == UInt8(ascii: "\n") {
            partial.append(contentsOf: buffer[start..<i])
            lines.append(partial)
            partial = []
            start = i + 1
        }
        partial.append(contentsOf: buffer[start..<n])
        while partial.count >= Self.longestLine {
            lines.append(Array(partial[..<Self.longestLine]))
            partial.removeFirst(Self.longestLine)
        }
        if !lines.isEmpty { file.append(stamp(lines)) }
        return .open
    }

    private func stamp(_ lines: [[UInt8]]) -> [UInt8] {
        let prefix = Array("\(Timestamp.iso8601(WallClock.now())) \(stream) ".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(lines.reduce(0) { $0 + $1.count + prefix.count + 1 })
        for line in lines {
            out += prefix
            out += line
            out.append(UInt8(ascii: "\n"))
        }
        return out
    }
}

/// The pump's read buffer, used only on its thread.
private final class ReadBuffer: @unchecked Sendable {
    var bytes = [UInt8](repeating: 0, count: 65536)
}
