import CSystemd
import Glibc

/// Sockets systemd passed at start (socket activation), by their `FileDescriptorName=`.
public enum ListenSockets {
    /// Takes the passed sockets (`sd_listen_fds_with_names`) and unsets LISTEN_FDS & co, so no
    /// instance inherits them by accident. Empty when not socket-activated. The descriptors are
    /// made close-on-exec: they belong to musterd, not to the services it starts.
    public static func take() -> [(name: String, fd: Int32)] {
        var names: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
        let count = sd_listen_fds_with_names(1, &names)
        guard count > 0 else { return [] }
        defer {
            for i in 0..<Int(count) { free(names?[i]) }
            free(names)
        }
        var sockets: [(String, Int32)] = []
        for i in 0..<Int(count) {
            let fd = SD_LISTEN_FDS_START + Int32(i)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            let name = names?[i].map { String(cString: $0) } ?? "unknown"
            sockets.append((name, fd))
        }
        return sockets
    }
}
