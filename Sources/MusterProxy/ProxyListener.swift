import Atomics
import Glibc
import MusterCore
import NIOCore

/// One listening socket of a service's proxy, bound here or inherited from systemd. The relay
/// workers accept on it (`TCPRelay`); each accepted connection is counted against
/// `max_connections` and goes to the mode's data path on the worker serving the fewest clients
/// (`RelayConnection` for tcp, `HTTPRelayConnection` for http).
/// The mode and settings are read per connection, so a reload that changes them keeps the socket.
final class ProxyListener: Sendable {
    private static let ids = ManagedAtomic<UInt64>(1)

    /// Tells the worker's epoll tags apart.
    let id: UInt64
    let fd: Int32
    let context: ProxyContext
    /// Where the socket is bound, with the port the kernel chose for port 0.
    let localAddress: SocketAddress?

    private init(fd: Int32, context: ProxyContext) {
        id = Self.ids.loadThenWrappingIncrement(ordering: .relaxed)
        self.fd = fd
        self.context = context
        localAddress = SocketAddress.of(fd, peer: false)
    }

    /// Binds and listens on `address` (names are resolved), or adopts `inheritedSocket`, which
    /// systemd has bound and put in listening state already.
    static func open(_ address: ListenAddress, inheritedSocket: Int32?, context: ProxyContext) throws(ProxyBindError) -> ProxyListener {
        func failure(_ what: String, _ code: Int32) -> ProxyBindError {
            ProxyBindError(service: context.service, address: address, underlying: "\(what): \(String(cString: strerror(code))) (errno \(code))")
        }
        if let inheritedSocket {
            let flags = fcntl(inheritedSocket, F_GETFL)
            guard flags >= 0, fcntl(inheritedSocket, F_SETFL, flags | O_NONBLOCK) == 0 else { throw failure("fcntl", errno) }
            return ProxyListener(fd: inheritedSocket, context: context)
        }
        let resolved: SocketAddress
        do {
            resolved = try SocketAddress.makeAddressResolvingHost(address.host, port: address.port)
        } catch {
            throw ProxyBindError(service: context.service, address: address, underlying: "\(error)")
        }
        let fd = socket(Int32(resolved.protocol.rawValue), Int32(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw failure("socket", errno) }
        var on: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, socklen_t(MemoryLayout<Int32>.size))
        let bound = resolved.withSockAddr { pointer, length in bind(fd, pointer, socklen_t(length)) }
        guard bound == 0 else {
            let code = errno
            Glibc.close(fd)
            throw failure("bind", code)
        }
        guard listen(fd, 4096) == 0 else {
            let code = errno
            Glibc.close(fd)
            throw failure("listen", code)
        }
        return ProxyListener(fd: fd, context: context)
    }

    /// A connection the relay worker `worker` accepted on this socket.
    func admit(_ fd: Int32, worker: RelayWorker) {
        var on: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
        let settings = context.settings
        let open = context.counters.openConnections.wrappingIncrementThenLoad(ordering: .relaxed)
        let rejected = open > settings.maxConnections
        if rejected {
            context.counters.rejectedConnections.wrappingIncrement(ordering: .relaxed)
        } else {
            context.counters.acceptedConnections.wrappingIncrement(ordering: .relaxed)
        }
        // A tcp connection over the limit is only closed: no need to move it.
        let closesAtOnce = rejected && settings.mode == .tcp
        let target = closesAtOnce ? worker : TCPRelay.shared.leastLoaded(preferring: worker)
        // Counted here, before the hand-over: counted when the other worker drains its mailbox,
        // a batch of accepts saw its count stale and sent it every connection of the batch.
        if !closesAtOnce { target.clientCount.wrappingIncrement(ordering: .relaxed) }
        if target === worker {
            worker.serve(client: fd, listener: self, settings: settings, reject: rejected)
        } else {
            target.post(.serve(client: fd, self, settings, reject: rejected))
        }
    }

    func close() {
        Glibc.close(fd)
    }
}
