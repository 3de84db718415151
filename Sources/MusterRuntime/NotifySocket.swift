import Glibc
import MusterCore
import Synchronization

/// One datagram on a notify socket: `KEY=VALUE` lines, as sd_notify(3) and systemd-notify send.
public struct NotifyMessage: Sendable, Equatable {
    /// The sending process (SCM_CREDENTIALS): the instance, or a child of it such as
    /// `systemd-notify` run from a shell script.
    public var senderPID: Int32?
    public var senderUID: UInt32?
    /// Every assignment in the datagram; a key given twice keeps its last value.
    public var fields: [String: String]

    public init(senderPID: Int32? = nil, senderUID: UInt32? = nil, fields: [String: String]) {
        self.senderPID = senderPID
        self.senderUID = senderUID
        self.fields = fields
    }

    public var isReady: Bool { fields["READY"] == "1" }
    public var isStopping: Bool { fields["STOPPING"] == "1" }
    public var isReloading: Bool { fields["RELOADING"] == "1" }
    /// A watchdog keep-alive (`WATCHDOG=1`).
    public var isWatchdogPing: Bool { fields["WATCHDOG"] == "1" }
    /// Free-form status for `musterctl status`.
    public var status: String? { fields["STATUS"] }
    /// The service says its main process is another one (after a double fork).
    public var mainPID: Int32? { fields["MAINPID"].flatMap { Int32($0) }.flatMap { $0 > 0 ? $0 : nil } }

    /// The datagram's fields; nil when it holds none. Lines without '=' or with an empty key are
    /// skipped, as systemd skips them.
    public static func parse(_ payload: some Collection<UInt8>, senderPID: Int32? = nil, senderUID: UInt32? = nil) -> NotifyMessage? {
        var fields: [String: String] = [:]
        for line in payload.split(separator: UInt8(ascii: "\n")) {
            guard let equals = line.firstIndex(of: UInt8(ascii: "=")), equals != line.startIndex else { continue }
            let key = String(decoding: line[..<equals], as: UTF8.self)
            fields[key] = String(decoding: line[line.index(after: equals)...], as: UTF8.self)
        }
        return fields.isEmpty ? nil : NotifyMessage(senderPID: senderPID, senderUID: senderUID, fields: fields)
    }
}

/// The systemd notify protocol served to one instance: a datagram Unix socket whose path the
/// instance gets as `NOTIFY_SOCKET`, so `sd_notify("READY=1")` and `systemd-notify --ready` work
/// as they do under systemd.
///
/// One socket per instance rather than one shared socket routed by sender pid: a message on an
/// instance's own socket is that instance's, whichever process sent it (a shell script's
/// `systemd-notify` child, a worker forked before the service was ready), with no lookup of a pid
/// that may already have exited. Costs one descriptor per instance on the shared epoll thread.
///
/// Descriptors passed with a message (`BARRIER=1`'s pipe, `FDSTORE=1`) are closed once the
/// message is read: closing the barrier pipe is what releases a waiting `systemd-notify`, and the
/// fd store is not supported.
public final class NotifySocket: Sendable {
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public var description: String
    }

    public let path: String
    /// Messages in the order they arrived; finishes when the socket is closed. Keeps the newest
    /// 256 when nobody reads.
    public let messages: AsyncStream<NotifyMessage>

    private struct State {
        var fd: Int32
        /// The socket file's identity: `close` removes the file only while it is still this one.
        let file: (device: UInt, inode: UInt)
        let continuation: AsyncStream<NotifyMessage>.Continuation
        let payload: UnsafeMutableRawBufferPointer
        let control: UnsafeMutableRawBufferPointer
    }

    private let state: Mutex<State>
    private let loop: EpollLoop

    /// The largest datagram systemd reads (NOTIFY_BUFFER_MAX); longer ones are dropped, as it does.
    private static let payloadLimit = 4096
    /// SCM_CREDENTIALS, which glibc declares only under _GNU_SOURCE (Linux ABI: 2).
    private static let credentialsMessage: Int32 = 2
    /// sun_path holds 108 bytes with the terminating NUL.
    public static let maxPathLength = MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1

    /// Creates and binds the socket (a stale socket file at `path` is replaced) and starts
    /// delivering messages.
    /// - Parameters:
    ///   - path: where the socket lives; at most `maxPathLength` bytes.
    ///   - owner: the instance's account, which must be able to write to the socket; nil leaves
    ///     it to the daemon's own user. Folders above must let that account through (x bit).
    ///   - loop: the epoll thread that reads it (shared with the health probes).
    /// - Throws: `Failure` naming the path and the reason.
    public init(path: String, owner: Credentials? = nil, loop: EpollLoop) throws(Failure) {
        let length = path.utf8.count
        guard length <= Self.maxPathLength else {
            throw Failure(description: "notify socket \(path): \(length) bytes long, but a Unix socket path holds at most " +
                          "\(Self.maxPathLength) (use a shorter state_dir)")
        }
        guard length > 0, !path.utf8.contains(0) else { throw Failure(description: "notify socket: empty or invalid path") }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "notify socket \(path): socket: \(FileSystem.errorText(errno))") }
        func fail(_ operation: String, _ code: Int32) -> Failure {
            Glibc.close(fd)
            return Failure(description: "notify socket \(path): \(operation): \(FileSystem.errorText(code))")
        }
        var one: Int32 = 1
        if setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, socklen_t(MemoryLayout<Int32>.size)) < 0 { throw fail("SO_PASSCRED", errno) }

        var status = stat()
        if lstat(path, &status) == 0 {
            // Left by a daemon that did not shut down cleanly; anything else at the path is not ours.
            guard status.st_mode & S_IFMT == S_IFSOCK else {
                Glibc.close(fd)
                throw Failure(description: "notify socket \(path): something other than a socket is in the way (remove it)")
            }
            unlink(path)
        }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in path.utf8.enumerated() { raw[i] = byte }
        }
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        if rc < 0 { throw fail("bind", errno) }
        // Only the instance's account (and root) may send: writing to a socket file needs write
        // permission on it.
        if let owner, chown(path, owner.uid, owner.gid) < 0 { let code = errno; unlink(path); throw fail("chown", code) }
        if chmod(path, 0o600) < 0 { let code = errno; unlink(path); throw fail("chmod", code) }
        guard lstat(path, &status) == 0 else { let code = errno; unlink(path); throw fail("stat", code) }

        self.path = path
        self.loop = loop
        let (stream, continuation) = AsyncStream.makeStream(of: NotifyMessage.self, bufferingPolicy: .bufferingNewest(256))
        messages = stream
        state = Mutex(State(
            fd: fd, file: (UInt(status.st_dev), UInt(status.st_ino)), continuation: continuation,
            payload: .allocate(byteCount: Self.payloadLimit, alignment: 8),
            // Credentials plus the most descriptors one message can carry (SCM_MAX_FD = 253).
            control: .allocate(byteCount: 2048, alignment: MemoryLayout<Int>.alignment)))
        do {
            try loop.add(fd) { [weak self] _ in self?.drain() }
        } catch {
            close()
            throw Failure(description: "notify socket \(path): \(error)")
        }
    }

    /// Stops reading, closes the socket, removes its file (unless another socket has since taken the
    /// path) and finishes `messages`. Idempotent.
    public func close() {
        state.withLock { s in
            guard s.fd >= 0 else { return }
            loop.remove(s.fd)
            Glibc.close(s.fd)
            s.fd = -1
            var status = stat()
            if lstat(path, &status) == 0, UInt(status.st_dev) == s.file.device, UInt(status.st_ino) == s.file.inode {
                unlink(path)
            }
            s.continuation.finish()
        }
    }

    deinit {
        close()
        state.withLock { s in
            s.payload.deallocate()
            s.control.deallocate()
        }
    }

    /// Reads what is queued (up to a bound, so one chatty instance cannot hold the thread; epoll is
    /// level-triggered and calls again). Runs on the loop's thread; under the lock so that `close`
    /// cannot pull the descriptor away mid-read.
    private func drain() {
        state.withLock { s in
            for _ in 0..<64 {
                guard s.fd >= 0, let message = Self.receive(&s) else { return }
                if let message { s.continuation.yield(message) }
            }
        }
    }

    /// One datagram: nil when nothing is queued; .some(nil) for one that carries no message.
    private static func receive(_ s: inout State) -> NotifyMessage?? {
        var vector = iovec(iov_base: s.payload.baseAddress, iov_len: s.payload.count)
        return withUnsafeMutablePointer(to: &vector) { vectorPointer -> NotifyMessage?? in
            var header = msghdr()
            header.msg_iov = vectorPointer
            header.msg_iovlen = 1
            header.msg_control = s.control.baseAddress
            header.msg_controllen = s.control.count
            let n = recvmsg(s.fd, &header, Int32(MSG_DONTWAIT) | Int32(MSG_CMSG_CLOEXEC))
            if n < 0 { return errno == EINTR ? .some(nil) : nil }
            let sender = closePassedDescriptors(s.control, length: Int(header.msg_controllen))
            if header.msg_flags & Int32(MSG_TRUNC) != 0 { return .some(nil) }
            return .some(NotifyMessage.parse(UnsafeRawBufferPointer(rebasing: s.payload[0..<n]),
                                             senderPID: sender?.pid, senderUID: sender?.uid))
        }
    }

    /// Walks the control messages: returns the sender's credentials and closes every descriptor
    /// that came along (they are already CLOEXEC).
    private static func closePassedDescriptors(_ control: UnsafeMutableRawBufferPointer, length: Int) -> (pid: Int32, uid: UInt32)? {
        let headerSize = MemoryLayout<cmsghdr>.size
        let align = MemoryLayout<Int>.size
        var sender: (pid: Int32, uid: UInt32)?
        var offset = 0
        while offset + headerSize <= min(length, control.count) {
            let header = control.load(fromByteOffset: offset, as: cmsghdr.self)
            let total = Int(header.cmsg_len)
            guard total >= headerSize, offset + total <= length else { break }
            let data = offset + ((headerSize + align - 1) & ~(align - 1))
            let dataLength = offset + total - data
            if header.cmsg_level == SOL_SOCKET {
                if header.cmsg_type == Self.credentialsMessage, dataLength >= 12 {
                    sender = (control.loadUnaligned(fromByteOffset: data, as: Int32.self),
                              control.loadUnaligned(fromByteOffset: data + 4, as: UInt32.self))
                } else if header.cmsg_type == Int32(SCM_RIGHTS) {
                    for i in 0..<(dataLength / 4) {
                        Glibc.close(control.loadUnaligned(fromByteOffset: data + 4 * i, as: Int32.self))
                    }
                }
            }
            offset += (total + align - 1) & ~(align - 1)
        }
        return sender
    }
}
