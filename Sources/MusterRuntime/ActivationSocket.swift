import Glibc

/// The listening socket of a container with a private network: bound by musterd on the host's
/// loopback at the instance's port, and passed in as descriptor 3 (socket activation), so the
/// proxy and the health checks reach an instance whose own network holds only loopback.
enum ActivationSocket {
    static func listen(port: Int) throws(SpawnError) -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SpawnError("socket for 127.0.0.1:\(port): \(FileSystem.errorText(errno))") }
        var on: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = in_addr_t(0x7f00_0001).bigEndian
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        // SOMAXCONN: the kernel caps it at net.core.somaxconn, as for any listener.
        guard bound == 0, Glibc.listen(fd, SOMAXCONN) == 0 else {
            let code = errno
            close(fd)
            throw SpawnError("listen on 127.0.0.1:\(port) for the container: \(FileSystem.errorText(code))")
        }
        return fd
    }
}
