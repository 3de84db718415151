import MusterCore
import MusterProxy
import NIOCore

/// The address a listening socket is bound to, as a manifest would write it.
public enum SocketAddressText {
    /// nil for a socket that is not a bound TCP/IPv4 or TCP/IPv6 socket.
    public static func localAddress(of fd: Int32) -> ListenAddress? {
        guard let address = SocketAddress.of(fd, peer: false), let host = address.ipAddress, let port = address.port else { return nil }
        return ListenAddress(host: host, port: port)
    }
}
