import Glibc
import MusterCore

/// The few file operations the runtime needs, as thin wrappers over system calls that report the
/// path and errno. cgroupfs and procfs files are small and read whole.
public enum FileSystem {
    public struct Failure: Error, CustomStringConvertible, Sendable {
        public var operation: String
        public var path: String
        public var errno: Int32
        public var description: String { "\(operation) \(path): \(FileSystem.errorText(errno))" }

        public init(operation: String, path: String, errno: Int32) {
            self.operation = operation
            self.path = path
            self.errno = errno
        }
    }

    public static func errorText(_ code: Int32) -> String { String(cString: strerror(code)) }

    public static func read(_ path: String, limit: Int = 1 << 20) throws(Failure) -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Failure(operation: "open", path: path, errno: errno) }
        defer { close(fd) }
        return try read(fd: fd, path: path, limit: limit)
    }

    /// The text of the open file `fd` (read up to `limit` bytes; `path` only names it in errors).
    public static func read(fd: Int32, path: String, limit: Int = 1 << 20) throws(Failure) -> String {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 8192)
        while bytes.count < limit {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw Failure(operation: "read", path: path, errno: errno)
            }
            if n == 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    public static func readIfPresent(_ path: String) -> String? { try? read(path) }

    /// One write(2) of the whole text: cgroupfs files take each write as one command.
    public static func write(_ text: String, to path: String) throws(Failure) {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Failure(operation: "open", path: path, errno: errno) }
        defer { close(fd) }
        let n = text.utf8CString.withUnsafeBufferPointer { Glibc.write(fd, $0.baseAddress, $0.count - 1) }
        if n < 0 { throw Failure(operation: "write \"\(text)\" to", path: path, errno: errno) }
    }

    /// Writes a file so that a reader sees either the old or the new content, even across a crash:
    /// temp file, fsync, rename, fsync of the folder.
    public static func writeAtomically(_ bytes: [UInt8], to path: String, mode: mode_t = 0o644) throws(Failure) {
        let temp = path + ".tmp"
        let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw Failure(operation: "create", path: temp, errno: errno) }
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 {
                if errno == EINTR { continue }
                let code = errno
                close(fd)
                throw Failure(operation: "write", path: temp, errno: code)
            }
            offset += n
        }
        if fsync(fd) < 0 { let code = errno; close(fd); throw Failure(operation: "fsync", path: temp, errno: code) }
        close(fd)
        if rename(temp, path) < 0 { throw Failure(operation: "rename to", path: path, errno: errno) }
        let folder = open(PathText.directory(of: path), O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if folder >= 0 { _ = fsync(folder); close(folder) }
    }

    /// mkdir -p.
    public static func makeDirectories(_ path: String, mode: mode_t = 0o755) throws(Failure) {
        var current = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            current += "/" + component
            if mkdir(current, mode) < 0 && errno != EEXIST {
                throw Failure(operation: "mkdir", path: current, errno: errno)
            }
        }
    }

    public static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    public static func isDirectory(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
    }

    public static func isExecutableFile(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG && access(path, X_OK) == 0
    }

    /// Names in a folder, without "." and "..", sorted.
    public static func list(_ path: String) -> [String] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }
}

/// Wall-clock time for stamps people read; the supervisor's timers use the monotonic clock.
public enum WallClock {
    public static func now() -> Double {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
    }
}
