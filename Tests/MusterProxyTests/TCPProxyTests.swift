import Glibc
import MusterCore
import MusterProxy
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// tcp mode against real sockets: NIO backends on 127.0.0.1, the real `ServiceProxy`, and a
/// plain blocking/polling socket client so the test controls exactly when it reads, writes and
/// half-closes.
@Suite(.serialized, .timeLimit(.minutes(1)))
struct TCPProxyTests {
    @Test func eachConnectionGoesToTheNextInstanceInTurn() async throws {
        try await TCPTest.withProxy { harness in
            let backends = try await (0..<3).asyncMap { index in
                try await harness.backend(index: index) { IdentityHandler(identity: "\(index)") }
            }
            harness.proxy.backends.setReady(backends)
            var hits = [0, 0, 0]
            for _ in 0..<12 {
                let client = try TCPTestClient(port: harness.port)
                let reply = try client.readToEOF()
                let index = try #require(Int(String(decoding: reply, as: UTF8.self)))
                hits[index] += 1
            }
            #expect(hits == [4, 4, 4])
            try await harness.expectNothingInFlight()
            let responses = backends.map { $0.counters.responses[2].load(ordering: .relaxed) }
            let latencies = backends.map { $0.counters.latency.count }
            #expect(responses == [4, 4, 4])
            #expect(latencies == [4, 4, 4])
        }
    }

    @Test func largePayloadEchoesIntactWithBoundedMemory() async throws {
        try await TCPTest.withProxy { harness in
            let backend = try await harness.backend(index: 0) { EchoHandler() }
            harness.proxy.backends.setReady([backend])
            let client = try TCPTestClient(port: harness.port)
            let before = TCPTest.residentBytes()
            let total = 64 << 20
            let result = try client.pump(total: total)
            let grown = TCPTest.residentBytes() - before
            #expect(result.received == total)
            #expect(result.intact)
            #expect(grown < 16 << 20, "resident memory grew by \(grown >> 20) MiB for a 64 MiB echo")
            client.close()
            try await harness.expectNothingInFlight()
            // Counted in batches, complete once the connection is closed.
            try await TCPTest.eventually { backend.counters.bytesToInstance.load(ordering: .relaxed) == total }
            #expect(backend.counters.bytesToInstance.load(ordering: .relaxed) == total)
            #expect(backend.counters.bytesFromInstance.load(ordering: .relaxed) == total)
        }
    }

    @Test func instanceThatStopsReadingStopsReadsFromTheClient() async throws {
        var spec = TCPTest.spec()
        // The client's FIN is a half-close: the proxy keeps the bytes it holds for the instance
        // until they are written or the connection goes idle.
        spec.idleTimeout = .milliseconds(1500)
        try await TCPTest.withProxy(spec) { harness in
            let backend = try await harness.backend(index: 0, autoRead: false) { EchoHandler() }
            harness.proxy.backends.setReady([backend])
            let client = try TCPTestClient(port: harness.port)
            let before = TCPTest.residentBytes()
            // A proxy without backpressure would take all of it; the kernel's socket buffers plus
            // the proxy's water marks are a few MiB.
            let accepted = try client.writeUntilStalled(limit: 512 << 20, stall: .milliseconds(500), within: .seconds(5))
            let grown = TCPTest.residentBytes() - before
            #expect(accepted < 32 << 20, "the proxy took \(accepted >> 20) MiB from a client whose instance reads nothing")
            #expect(grown < 16 << 20, "resident memory grew by \(grown >> 20) MiB")
            client.close()
            try await harness.expectNothingInFlight()
        }
    }

    @Test func halfCloseReachesTheInstanceAndItsReplyStillArrives() async throws {
        try await TCPTest.withProxy { harness in
            let backend = try await harness.backend(index: 0) { ReplyAtEOFHandler() }
            harness.proxy.backends.setReady([backend])
            let client = try TCPTestClient(port: harness.port)
            try client.send(Array("hello, half-closed world".utf8))
            client.shutdownWrite()
            let reply = try client.readToEOF()
            #expect(String(decoding: reply, as: UTF8.self) == "received 24 bytes\n")
            client.close()
            try await harness.expectNothingInFlight()
        }
    }

    @Test func failedConnectIsRetriedOnTheNextInstance() async throws {
        try await TCPTest.withProxy { harness in
            let dead = try await TCPTest.deadAndTwoLive(harness)
            for _ in 0..<6 {
                let client = try TCPTestClient(port: harness.port)
                let reply = String(decoding: try client.readToEOF(), as: UTF8.self)
                #expect(reply == "1" || reply == "2")
            }
            #expect(dead.counters.connectFailures.load(ordering: .relaxed) >= 2)
            #expect(harness.proxy.counters.failedRequests.load(ordering: .relaxed) == 0)
            try await harness.expectNothingInFlight()
        }
    }

    @Test func failedConnectsInARowEjectAnInstance() async throws {
        var spec = TCPTest.spec()
        spec.ejectAfter = 3
        spec.ejectFor = .seconds(60)
        try await TCPTest.withProxy(spec) { harness in
            let dead = try await TCPTest.deadAndTwoLive(harness)
            var replies: [String] = []
            for _ in 0..<30 {
                let client = try TCPTestClient(port: harness.port)
                replies.append(String(decoding: try client.readToEOF(), as: UTF8.self))
            }
            let allServed = replies.allSatisfy { $0 == "1" || $0 == "2" }
            #expect(allServed, "\(replies)")
            // Three tries of the dead one (each retried elsewhere), then none while it is out.
            let failures = dead.counters.connectFailures.load(ordering: .relaxed)
            #expect(failures == 3)
            #expect(harness.proxy.backends.ejectedCount == 1)
            let ejection = harness.proxy.backends.ejection(of: dead)
            #expect(ejection?.count == 1)
            try await harness.expectNothingInFlight()
        }
    }

    @Test func connectionIsClosedWhenEveryTryFails() async throws {
        var spec = TCPTest.spec()
        spec.retries = 1
        try await TCPTest.withProxy(spec) { harness in
            let dead = try await (0..<3).asyncMap { index in
                Backend(
                    service: "web", index: index, generation: 1,
                    address: try SocketAddress(ipAddress: "127.0.0.1", port: try await TCPTest.unusedPort(harness.group)))
            }
            harness.proxy.backends.setReady(dead)
            let client = try TCPTestClient(port: harness.port)
            #expect(try client.readToEOF().isEmpty)
            let connectFailures = dead.map { $0.counters.connectFailures.load(ordering: .relaxed) }.reduce(0, +)
            #expect(connectFailures == 2)
            #expect(harness.proxy.counters.failedRequests.load(ordering: .relaxed) == 1)
        }
    }

    @Test func queuedConnectionProceedsWhenAnInstanceBecomesReady() async throws {
        var spec = TCPTest.spec()
        spec.queueTimeout = .seconds(5)
        try await TCPTest.withProxy(spec) { harness in
            let backend = try await harness.backend(index: 0) { EchoHandler() }
            let client = try TCPTestClient(port: harness.port)
            try client.send(Array("ping".utf8))
            try await Task.sleep(for: .milliseconds(300))
            #expect(harness.proxy.backends.queued.load(ordering: .relaxed) == 1)
            harness.proxy.backends.setReady([backend])
            #expect(try client.read(count: 4) == Array("ping".utf8))
            client.close()
            try await harness.expectNothingInFlight()
            #expect(harness.proxy.counters.queueTimeouts.load(ordering: .relaxed) == 0)
        }
    }

    @Test func queuedConnectionIsClosedAfterTheQueueTimeout() async throws {
        var spec = TCPTest.spec()
        spec.queueTimeout = .milliseconds(300)
        try await TCPTest.withProxy(spec) { harness in
            let client = try TCPTestClient(port: harness.port)
            let started = ContinuousClock.now
            #expect(try client.readToEOF().isEmpty)
            let waited = ContinuousClock.now - started
            #expect(waited >= .milliseconds(250) && waited < .seconds(3), "closed after \(waited)")
            #expect(harness.proxy.counters.queueTimeouts.load(ordering: .relaxed) == 1)
            #expect(harness.proxy.backends.queued.load(ordering: .relaxed) == 0)
        }
    }

    @Test func connectionsBeyondMaxConnectionsAreClosed() async throws {
        var spec = TCPTest.spec()
        spec.maxConnections = 2
        try await TCPTest.withProxy(spec) { harness in
            let backend = try await harness.backend(index: 0) { EchoHandler() }
            harness.proxy.backends.setReady([backend])
            let first = try TCPTestClient(port: harness.port)
            let second = try TCPTestClient(port: harness.port)
            for client in [first, second] {
                try client.send(Array("hi".utf8))
                #expect(try client.read(count: 2) == Array("hi".utf8))
            }
            let third = try TCPTestClient(port: harness.port)
            #expect(try third.readToEOF().isEmpty)
            #expect(harness.proxy.counters.rejectedConnections.load(ordering: .relaxed) == 1)
            #expect(backend.counters.inFlight.load(ordering: .relaxed) == 2)
            first.close()
            second.close()
            try await harness.expectNothingInFlight()
        }
    }

    @Test func idleConnectionIsClosedOnBothSides() async throws {
        var spec = TCPTest.spec()
        spec.idleTimeout = .milliseconds(300)
        try await TCPTest.withProxy(spec) { harness in
            let backend = try await harness.backend(index: 0) { EchoHandler() }
            harness.proxy.backends.setReady([backend])
            let client = try TCPTestClient(port: harness.port)
            try client.send(Array("hi".utf8))
            #expect(try client.read(count: 2) == Array("hi".utf8))
            let started = ContinuousClock.now
            #expect(try client.readToEOF().isEmpty)
            let waited = ContinuousClock.now - started
            #expect(waited >= .milliseconds(250) && waited < .seconds(2), "closed after \(waited)")
            try await harness.expectNothingInFlight()
        }
    }

    @Test func reloadToTCPModeKeepsTheListeningSocket() async throws {
        var http = TCPTest.spec()
        http.mode = .http
        try await TCPTest.withProxy(http) { harness in
            let backend = try await harness.backend(index: 0) { IdentityHandler(identity: "0") }
            harness.proxy.backends.setReady([backend])
            var tcp = http
            tcp.mode = .tcp
            try await harness.proxy.apply(tcp)
            #expect(harness.proxy.boundAddresses.values.first?.port == harness.port)
            let client = try TCPTestClient(port: harness.port)
            #expect(String(decoding: try client.readToEOF(), as: UTF8.self) == "0")
            client.close()
            try await harness.expectNothingInFlight()
        }
    }

    @Test func instanceHalfCloseReachesTheClientWhichMayStillSend() async throws {
        try await TCPTest.withProxy { harness in
            let backend = try await harness.backend(index: 0) { GreetThenHalfCloseHandler() }
            harness.proxy.backends.setReady([backend])
            let client = try TCPTestClient(port: harness.port)
            // The instance's FIN arrives as EOF after its greeting...
            #expect(String(decoding: try client.readToEOF(), as: UTF8.self) == "hello\n")
            // ...and the client's bytes still reach it through the open half.
            try client.send(Array("late".utf8))
            client.shutdownWrite()
            try await TCPTest.eventually { backend.counters.bytesToInstance.load(ordering: .relaxed) == 4 }
            client.close()
            try await harness.expectNothingInFlight()
        }
    }

    @Test func clientResetClosesTheInstanceSide() async throws {
        try await TCPTest.withProxy { harness in
            let closed = TCPTestCloseCounter()
            let backend = try await harness.backend(index: 0) { EchoHandler(closed: closed) }
            harness.proxy.backends.setReady([backend])
            let client = try TCPTestClient(port: harness.port)
            try client.send(Array("hi".utf8))
            #expect(try client.read(count: 2) == Array("hi".utf8))
            client.reset()
            try await harness.expectNothingInFlight()
            try await TCPTest.eventually { closed.count == 1 }
        }
    }
}

// MARK: - Harness

enum TCPTest {
    static func spec() -> ProxySpec {
        var spec = ProxySpec(listen: [ListenAddress(host: "127.0.0.1", port: 0)], mode: .tcp)
        spec.connectTimeout = .seconds(1)
        spec.queueTimeout = .seconds(2)
        spec.idleTimeout = .seconds(30)
        return spec
    }

    /// Runs `body` against a fresh proxy and always tears everything down, also when it throws.
    static func withProxy(_ spec: ProxySpec = spec(), _ body: (TCPTestHarness) async throws -> Void) async throws {
        let harness = try await TCPTestHarness(spec: spec)
        do {
            try await body(harness)
        } catch {
            await harness.shutdown()
            throw error
        }
        await harness.shutdown()
    }

    /// Puts in rotation instance 0 on a port nothing listens on, and instances 1 and 2 answering
    /// their index; returns the dead one.
    static func deadAndTwoLive(_ harness: TCPTestHarness) async throws -> Backend {
        let dead = Backend(
            service: "web", index: 0, generation: 1,
            address: try SocketAddress(ipAddress: "127.0.0.1", port: try await unusedPort(harness.group)))
        let live = try await (1...2).asyncMap { index in
            try await harness.backend(index: index) { IdentityHandler(identity: "\(index)") }
        }
        harness.proxy.backends.setReady([dead] + live)
        return dead
    }

    /// A loopback port nothing listens on (bound, then closed).
    static func unusedPort(_ group: any EventLoopGroup) async throws -> Int {
        let channel = try await ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
        let port = channel.localAddress!.port!
        try await channel.close()
        return port
    }

    static func residentBytes() -> Int {
        let fd = open("/proc/self/statm", O_RDONLY)
        guard fd >= 0 else { return 0 }
        defer { Glibc.close(fd) }
        var buffer = [UInt8](repeating: 0, count: 128)
        let count = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        guard count > 0 else { return 0 }
        // "size resident shared text lib data dt", in pages.
        let fields = String(decoding: buffer[..<count], as: UTF8.self).split(separator: " ")
        guard fields.count > 1, let resident = Int(fields[1]) else { return 0 }
        return resident * sysconf(Int32(_SC_PAGESIZE))
    }

    static func eventually(within limit: Duration = .seconds(5), _ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + limit
        while !condition() {
            guard ContinuousClock.now < deadline else {
                Issue.record("condition not met within \(limit)")
                return
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }
}

final class TCPTestHarness {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    let proxy: ServiceProxy
    let port: Int
    private var servers: [any Channel] = []

    init(spec: ProxySpec) async throws {
        proxy = ServiceProxy(service: "web", spec: spec, eventLoopGroup: group, logger: .init(label: "test"))
        do {
            try await proxy.apply(spec)
            port = try #require(proxy.boundAddresses.values.first?.port)
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
    }

    /// A backend on 127.0.0.1 port 0 whose connections each get a fresh `makeHandler()`.
    func backend(
        index: Int, autoRead: Bool = true, _ makeHandler: @escaping @Sendable () -> any ChannelHandler
    ) async throws -> Backend {
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelOption(.autoRead, value: autoRead)
            .childChannelInitializer { channel in
                do {
                    try channel.pipeline.syncOperations.addHandler(makeHandler())
                    return channel.eventLoop.makeSucceededVoidFuture()
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        servers.append(channel)
        return Backend(service: "web", index: index, generation: 1, address: channel.localAddress!)
    }

    func expectNothingInFlight(sourceLocation: SourceLocation = #_sourceLocation) async throws {
        try await TCPTest.eventually {
            proxy.backends.ready.allSatisfy { $0.counters.inFlight.load(ordering: .relaxed) == 0 }
        }
        for backend in proxy.backends.ready {
            #expect(backend.counters.inFlight.load(ordering: .relaxed) == 0, sourceLocation: sourceLocation)
        }
    }

    func shutdown() async {
        await proxy.close()
        for server in servers { try? await server.close() }
        try? await group.shutdownGracefully()
    }
}

extension Sequence {
    fileprivate func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var result: [T] = []
        for element in self { result.append(try await transform(element)) }
        return result
    }
}

// MARK: - Backends

/// Says hello, then shuts its output down and keeps reading until the client's EOF.
private final class GreetThenHalfCloseHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    func channelActive(context: ChannelHandlerContext) {
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: "hello\n")), promise: nil)
        context.close(mode: .output, promise: nil)
    }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed { context.close(promise: nil) }
    }
}

/// Writes its identity and closes.
private final class IdentityHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let identity: String
    init(identity: String) { self.identity = identity }

    func channelActive(context: ChannelHandlerContext) {
        context.writeAndFlush(NIOAny(ByteBuffer(string: identity))).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }
}

/// Echoes with backpressure: stops reading while its own writes are not drained.
private final class EchoHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    private var readHeld = false
    private let closed: TCPTestCloseCounter?
    init(closed: TCPTestCloseCounter? = nil) { self.closed = closed }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) { context.write(data, promise: nil) }
    func channelReadComplete(context: ChannelHandlerContext) { context.flush() }
    func read(context: ChannelHandlerContext) {
        if context.channel.isWritable { context.read() } else { readHeld = true }
    }
    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, readHeld {
            readHeld = false
            context.read()
        }
    }
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event as? ChannelEvent == .inputClosed { context.close(promise: nil) }
    }
    func channelInactive(context: ChannelHandlerContext) { closed?.increment() }
    func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }
}

/// Reads until EOF, then answers with the byte count and closes.
private final class ReplyAtEOFHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    private var received = 0

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        received += unwrapInboundIn(data).readableBytes
    }
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event as? ChannelEvent == .inputClosed else { return }
        context.writeAndFlush(NIOAny(ByteBuffer(string: "received \(received) bytes\n"))).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }
}

final class TCPTestCloseCounter: Sendable {
    private let value = Atomic<Int>(0)
    var count: Int { value.load(ordering: .relaxed) }
    func increment() { value.add(1, ordering: .relaxed) }
}

// MARK: - Client

/// A blocking loopback client (with poll-based timeouts) so a test decides byte by byte what
/// the proxy sees.
final class TCPTestClient {
    private var fd: CInt

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TCPTestError.syscall("socket", errno) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            let error = errno
            Glibc.close(fd)
            throw TCPTestError.syscall("connect", error)
        }
    }

    deinit { close() }

    func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    /// Closes with SO_LINGER 0: the peer gets a reset instead of a FIN.
    func reset() {
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        close()
    }

    func shutdownWrite() { shutdown(fd, Int32(SHUT_WR)) }

    func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            try waitFor(Int16(POLLOUT), timeout: .seconds(5))
            let written = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard written > 0 else { throw TCPTestError.syscall("send", errno) }
            offset += written
        }
    }

    /// Exactly `count` bytes, or fewer if the peer closes first.
    func read(count: Int, timeout: Duration = .seconds(5)) throws -> [UInt8] {
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while result.count < count {
            try waitFor(Int16(POLLIN), timeout: timeout)
            let got = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, min($0.count, count - result.count), 0) }
            if got == 0 { break }
            guard got > 0 else { throw TCPTestError.syscall("recv", errno) }
            result += chunk[..<got]
        }
        return result
    }

    /// Everything until the peer closes; a reset counts as a close.
    func readToEOF(timeout: Duration = .seconds(5)) throws -> [UInt8] {
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            try waitFor(Int16(POLLIN), timeout: timeout)
            let got = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if got == 0 || (got < 0 && errno == ECONNRESET) { return result }
            guard got > 0 else { throw TCPTestError.syscall("recv", errno) }
            result += chunk[..<got]
        }
    }

    /// Sends `total` bytes of a position-dependent pattern while reading the echo back, checking
    /// it without keeping it: the test's own memory stays flat.
    func pump(total: Int) throws -> (received: Int, intact: Bool) {
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        defer { _ = fcntl(fd, F_SETFL, flags) }
        var outgoing = [UInt8](repeating: 0, count: 256 << 10)
        var incoming = [UInt8](repeating: 0, count: 256 << 10)
        var sent = 0
        var received = 0
        var intact = true
        let deadline = ContinuousClock.now + .seconds(45)
        while received < total {
            guard ContinuousClock.now < deadline else { throw TCPTestError.timedOut }
            var poller = pollfd(fd: fd, events: Int16(POLLIN) | (sent < total ? Int16(POLLOUT) : 0), revents: 0)
            _ = poll(&poller, 1, 1000)
            if sent < total, poller.revents & Int16(POLLOUT) != 0 {
                let count = min(outgoing.count, total - sent)
                for i in 0..<count { outgoing[i] = Self.pattern(sent + i) }
                let written = outgoing.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, count, Int32(MSG_NOSIGNAL)) }
                if written > 0 { sent += written } else if errno != EAGAIN { throw TCPTestError.syscall("send", errno) }
            }
            if poller.revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 {
                let got = incoming.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if got == 0 { break }
                if got < 0 {
                    if errno == EAGAIN { continue }
                    throw TCPTestError.syscall("recv", errno)
                }
                for i in 0..<got where incoming[i] != Self.pattern(received + i) { intact = false }
                received += got
            }
        }
        return (received, intact)
    }

    /// Writes without reading until the socket takes nothing for `stall` (or `limit` bytes,
    /// or `within` is over); returns how much it took.
    func writeUntilStalled(limit: Int, stall: Duration, within: Duration) throws -> Int {
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        defer { _ = fcntl(fd, F_SETFL, flags) }
        let chunk = [UInt8](repeating: 0x61, count: 256 << 10)
        var accepted = 0
        var lastProgress = ContinuousClock.now
        let deadline = ContinuousClock.now + within
        while accepted < limit, ContinuousClock.now < deadline, ContinuousClock.now - lastProgress < stall {
            var poller = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            _ = poll(&poller, 1, 50)
            guard poller.revents & Int16(POLLOUT) != 0 else { continue }
            let written = chunk.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if written > 0 {
                accepted += written
                lastProgress = .now
            } else if errno != EAGAIN {
                throw TCPTestError.syscall("send", errno)
            }
        }
        return accepted
    }

    private static func pattern(_ offset: Int) -> UInt8 {
        UInt8(truncatingIfNeeded: offset &* 31 &+ (offset >> 16))
    }

    private func waitFor(_ events: Int16, timeout: Duration) throws {
        var poller = pollfd(fd: fd, events: events, revents: 0)
        let millis = Int32(timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        let ready = poll(&poller, 1, millis)
        guard ready > 0 else { throw TCPTestError.timedOut }
    }
}

enum TCPTestError: Error {
    case syscall(String, CInt)
    case timedOut
}
