import Glibc
import NIOCore

extension SocketAddress {
    /// The address a socket is bound to (`peer` false: `getsockname`, with the port the kernel
    /// chose for port 0) or connected to (`peer` true: `getpeername`); nil for anything but a
    /// TCP/IPv4 or TCP/IPv6 socket.
    public static func of(_ fd: Int32, peer: Bool) -> SocketAddress? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { peer ? getpeername(fd, $0, &length) : getsockname(fd, $0, &length) }
        }
        guard result == 0 else { return nil }
        switch Int32(storage.ss_family) {
        case AF_INET:
            let address = withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee } }
            return SocketAddress(address, host: "")
        case AF_INET6:
            let address = withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee } }
            return SocketAddress(address, host: "")
        default:
            return nil
        }
    }
}
