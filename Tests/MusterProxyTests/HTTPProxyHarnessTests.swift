// The harness the http mode tests drive: real backend servers, a real ServiceProxy, real clients,
// all on loopback sockets. No tests in this file.
import Atomics
import Foundation
import Logging
import MusterCore
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import Testing

@testable import MusterProxy

// MARK: Proxy

/// A proxy in http mode in front of `servers`, with groups of its own, torn down by `shutdown`.
struct HTTPProxyHarness {
    let proxyGroup: MultiThreadedEventLoopGroup
    let testGroup: MultiThreadedEventLoopGroup
    let proxy: ServiceProxy
    let port: Int
    let servers: [HTTPTestBackend]
    /// What the proxy balances over, one per server, in the same order.
    let instances: [Backend]

    static func start(servers count: Int, spec configure: (inout ProxySpec) -> Void) async throws -> HTTPProxyHarness {
        let proxyGroup = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let testGroup = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        var servers: [HTTPTestBackend] = []
        do {
            for index in 0..<count {
                servers.append(try await HTTPTestBackend.start(index: index, group: testGroup))
            }
            var spec = ProxySpec(listen: [ListenAddress(host: "127.0.0.1", port: 0)], mode: .http)
            configure(&spec)
            let proxy = ServiceProxy(service: "web", spec: spec, eventLoopGroup: proxyGroup, logger: Logger(label: "test"))
            try await proxy.apply(spec)
            let port = try #require(proxy.boundAddresses.values.first?.port)
            let instances = try servers.map { server in
                Backend(service: "web", index: server.index, generation: 1, address: try SocketAddress(ipAddress: "127.0.0.1", port: server.port))
            }
            return HTTPProxyHarness(
                proxyGroup: proxyGroup, testGroup: testGroup, proxy: proxy, port: port, servers: servers, instances: instances)
        } catch {
            for server in servers { try? await server.channel.close() }
            try? await proxyGroup.shutdownGracefully()
            try? await testGroup.shutdownGracefully()
            throw error
        }
    }

    func shutdown() async {
        await proxy.close()
        for server in servers { try? await server.channel.close() }
        try? await proxyGroup.shutdownGracefully()
        try? await testGroup.shutdownGracefully()
    }

    func client() async throws -> HTTPTestClient {
        try await HTTPTestClient.connect(port: port, group: testGroup)
    }

    func rawClient() async throws -> HTTPRawClient {
        try await HTTPRawClient.connect(port: port, group: testGroup)
    }

    /// Requests in flight on every instance, polled until zero or `timeout`.
    func inFlightSettles(within timeout: Duration = .seconds(3)) async throws -> Int {
        let clock = ContinuousClock()
        let end = clock.now + timeout
        while true {
            let total = instances.reduce(0) { $0 + $1.counters.inFlight.load(ordering: .relaxed) }
            if total == 0 || clock.now > end { return total }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Client connections the proxy holds, polled until zero or `timeout`.
    func openConnectionsSettle(within timeout: Duration = .seconds(3)) async throws -> Int {
        let clock = ContinuousClock()
        let end = clock.now + timeout
        while true {
            let open = proxy.counters.openConnections.load(ordering: .relaxed)
            if open == 0 || clock.now > end { return open }
            try await Task.sleep(for: .milliseconds(10))
        }
    }
}

/// Runs `body` against a fresh proxy with `servers` ready backends, tearing everything down even
/// when `body` throws.
func withHTTPProxy(
    servers: Int = 3, ready: Bool = true, spec: (inout ProxySpec) -> Void = { _ in },
    _ body: (HTTPProxyHarness) async throws -> Void
) async throws {
    let harness = try await HTTPProxyHarness.start(servers: servers, spec: spec)
    if ready { harness.proxy.backends.setReady(harness.instances) }
    do {
        try await body(harness)
    } catch {
        await harness.shutdown()
        throw error
    }
    await harness.shutdown()
}

/// A port nothing listens on: bound by the kernel, then closed again.
func closedLoopbackPort(group: any EventLoopGroup) async throws -> Int {
    let channel = try await ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
    let port = channel.localAddress!.port!
    try await channel.close()
    return port
}

/// This process's resident set, from /proc/self/statm.
func residentBytes() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let fields = text.split(separator: " ")
    guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}

// MARK: Backend servers

/// An HTTP/1.1 server that answers with its own identity. Paths:
/// `/id` its name; `/headers` the request headers it got; `/upload` the body length;
/// `/upload-stalled` the same after not reading for 500 ms; `/echo` the body back, chunked; `/chunked` a chunked body in three parts;
/// `/download/N` N bytes, streamed with backpressure; `/close-second` answers the first request
/// on a connection and closes on the second without a word; `/hang-up` closes without a word,
/// `/hang-up-on-0` too on instance 0 only; `/fail-on-0` is a 500 from instance 0 and `/id` from
/// the others. Anything with `Upgrade: echo`
/// gets a 101 and then an echo of the raw bytes.
final class HTTPTestBackend: Sendable {
    let index: Int
    let channel: any Channel
    /// Connections accepted so far, and those still open.
    let connections: ManagedAtomic<Int>
    let openConnections: ManagedAtomic<Int>
    let requests: ManagedAtomic<Int>
    var port: Int { channel.localAddress!.port! }

    private init(index: Int, channel: any Channel, connections: ManagedAtomic<Int>, openConnections: ManagedAtomic<Int>, requests: ManagedAtomic<Int>) {
        self.index = index
        self.channel = channel
        self.connections = connections
        self.openConnections = openConnections
        self.requests = requests
    }

    static func start(index: Int, group: any EventLoopGroup) async throws -> HTTPTestBackend {
        let connections = ManagedAtomic<Int>(0)
        let openConnections = ManagedAtomic<Int>(0)
        let requests = ManagedAtomic<Int>(0)
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                connections.wrappingIncrement(ordering: .relaxed)
                openConnections.wrappingIncrement(ordering: .relaxed)
                channel.closeFuture.whenComplete { _ in openConnections.wrappingDecrement(ordering: .relaxed) }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        HTTPTestUpgradeSniffer(index: index, requests: requests))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return HTTPTestBackend(index: index, channel: channel, connections: connections, openConnections: openConnections, requests: requests)
    }
}

/// Looks at the first request of a connection: an `Upgrade: echo` request gets a raw 101 and an
/// echo; anything else gets the HTTP pipeline and `HTTPTestBackendHandler`.
final class HTTPTestUpgradeSniffer: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let index: Int
    private let requests: ManagedAtomic<Int>
    private var buffered = ByteBuffer()
    private var mode = Mode.sniffing

    private enum Mode { case sniffing, echo }

    init(index: Int, requests: ManagedAtomic<Int>) {
        self.index = index
        self.requests = requests
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = Self.unwrapInboundIn(data)
        if mode == .echo {
            context.writeAndFlush(Self.wrapOutboundOut(bytes), promise: nil)
            return
        }
        buffered.writeBuffer(&bytes)
        let text = String(buffer: buffered)
        guard let headerEnd = text.range(of: "\r\n\r\n") else {
            if !text.isEmpty && !text.lowercased().hasPrefix("g") { switchToHTTP(context: context) }
            return
        }
        if text[..<headerEnd.lowerBound].lowercased().contains("upgrade: echo") {
            requests.wrappingIncrement(ordering: .relaxed)
            mode = .echo
            let headerBytes = text.utf8.distance(from: text.startIndex, to: headerEnd.upperBound)
            buffered.moveReaderIndex(forwardBy: headerBytes)
            let answer = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"
            context.write(Self.wrapOutboundOut(context.channel.allocator.buffer(string: answer)), promise: nil)
            if buffered.readableBytes > 0 { context.write(Self.wrapOutboundOut(buffered), promise: nil) }
            buffered.clear()
            context.flush()
        } else {
            switchToHTTP(context: context)
        }
    }

    private func switchToHTTP(context: ChannelHandlerContext) {
        let pipeline = context.pipeline.syncOperations
        do {
            try pipeline.configureHTTPServerPipeline(position: .after(self), withPipeliningAssistance: false, withErrorHandling: true)
            try pipeline.addHandler(HTTPTestBackendHandler(index: index, requests: requests))
        } catch {
            context.close(promise: nil)
            return
        }
        let bytes = buffered
        buffered = ByteBuffer()
        mode = .echo  // unused: this handler leaves now
        context.fireChannelRead(Self.wrapInboundOut(bytes))
        pipeline.removeHandler(context: context, promise: nil)
    }
}

extension HTTPTestUpgradeSniffer {
    typealias InboundOut = ByteBuffer
}

final class HTTPTestBackendHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let index: Int
    private let requests: ManagedAtomic<Int>
    private var stalled = false
    private var readPending = false
    private var head: HTTPRequestHead?
    private var bodyBytes = 0
    private var echo: [ByteBuffer] = []
    private var requestsOnConnection = 0
    private var downloadRemaining = 0
    private var block: ByteBuffer?

    init(index: Int, requests: ManagedAtomic<Int>) {
        self.index = index
        self.requests = requests
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch Self.unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            bodyBytes = 0
            echo = []
            requestsOnConnection += 1
            requests.wrappingIncrement(ordering: .relaxed)
            if head.uri == "/upload-stalled" {
                stalled = true
                context.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(500)) {
                    self.stalled = false
                    if self.readPending {
                        self.readPending = false
                        context.read()
                    }
                }
            }
            if head.headers["expect"].first?.lowercased() == "100-continue" {
                context.writeAndFlush(Self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .continue))), promise: nil)
            }
        case .body(let buffer):
            bodyBytes += buffer.readableBytes
            if head?.uri == "/echo" { echo.append(buffer) }
        case .end:
            respond(context: context)
        }
    }

    func read(context: ChannelHandlerContext) {
        if stalled {
            readPending = true
        } else {
            context.read()
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable && downloadRemaining > 0 { pump(context: context) }
        context.fireChannelWritabilityChanged()
    }

    private func respond(context: ChannelHandlerContext) {
        guard let head else { return }
        let path = head.uri
        switch path {
        case "/hang-up", "/hang-up-on-0" where index == 0:
            context.close(promise: nil)
        case "/close-second" where requestsOnConnection >= 2:
            context.close(promise: nil)
        case "/fail-on-0" where index == 0:
            text("broken", status: .internalServerError, context: context)
        case "/id", "/close-second", "/hang-up-on-0", "/fail-on-0":
            text("backend-\(index)", context: context)
        case "/headers":
            text(head.headers.map { "\($0.name.lowercased()): \($0.value)" }.joined(separator: "\n"), context: context)
        case "/upload", "/upload-stalled":
            text("\(bodyBytes)", context: context)
        case "/echo", "/chunked":
            var headers = HTTPHeaders()
            headers.add(name: "transfer-encoding", value: "chunked")
            context.write(Self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
            let parts = path == "/echo" ? echo : ["alpha-", "beta-", "gamma"].map { ByteBuffer(string: $0) }
            for part in parts {
                context.write(Self.wrapOutboundOut(.body(.byteBuffer(part))), promise: nil)
            }
            context.writeAndFlush(Self.wrapOutboundOut(.end(nil)), promise: nil)
        case _ where path.hasPrefix("/download/"):
            let size = Int(path.dropFirst("/download/".count)) ?? 0
            var headers = HTTPHeaders()
            headers.add(name: "content-length", value: "\(size)")
            context.write(Self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
            downloadRemaining = size
            pump(context: context)
        default:
            var headers = HTTPHeaders()
            headers.add(name: "content-length", value: "0")
            context.writeAndFlush(Self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .notFound, headers: headers))), promise: nil)
            context.writeAndFlush(Self.wrapOutboundOut(.end(nil)), promise: nil)
        }
    }

    private func text(_ body: String, status: HTTPResponseStatus = .ok, context: ChannelHandlerContext) {
        var headers = HTTPHeaders()
        headers.add(name: "content-length", value: "\(body.utf8.count)")
        headers.add(name: "x-backend", value: "\(index)")
        context.write(Self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(Self.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: body)))), promise: nil)
        context.writeAndFlush(Self.wrapOutboundOut(.end(nil)), promise: nil)
    }

    /// Writes while the connection is writable; the rest when it drains.
    private func pump(context: ChannelHandlerContext) {
        let block = self.block ?? context.channel.allocator.buffer(repeating: UInt8(ascii: "d"), count: 64 * 1024)
        self.block = block
        while downloadRemaining > 0 && context.channel.isWritable {
            let count = min(downloadRemaining, block.readableBytes)
            downloadRemaining -= count
            context.write(Self.wrapOutboundOut(.body(.byteBuffer(block.getSlice(at: block.readerIndex, length: count)!))), promise: nil)
        }
        if downloadRemaining == 0 {
            context.write(Self.wrapOutboundOut(.end(nil)), promise: nil)
        }
        context.flush()
    }
}

// MARK: Clients

struct HTTPTestResponse: Sendable {
    var head: HTTPResponseHead
    var body: String
    var bodyBytes: Int
    var status: Int { Int(head.status.code) }
}

/// A keep-alive HTTP/1.1 client: one request at a time, whole responses back.
final class HTTPTestClient: Sendable {
    let channel: any Channel
    private let collector: NIOLoopBound<HTTPTestResponseCollector>

    private init(channel: any Channel, collector: NIOLoopBound<HTTPTestResponseCollector>) {
        self.channel = channel
        self.collector = collector
    }

    static func connect(port: Int, group: any EventLoopGroup) async throws -> HTTPTestClient {
        let channel = try await ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(HTTPTestResponseCollector())
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        let collector = try await channel.eventLoop.submit {
            NIOLoopBound(try channel.pipeline.syncOperations.handler(type: HTTPTestResponseCollector.self), eventLoop: channel.eventLoop)
        }.get()
        return HTTPTestClient(channel: channel, collector: collector)
    }

    /// Sends a request; `body` goes with a content-length unless `headers` say chunked.
    func request(_ uri: String, headers: [(String, String)] = [], keepBody: Bool = true) async throws -> HTTPTestResponse {
        try await request(.GET, uri, headers: headers, keepBody: keepBody)
    }

    func request(
        _ method: HTTPMethod, _ uri: String, headers: [(String, String)] = [], body: [String] = [],
        keepBody: Bool = true
    ) async throws -> HTTPTestResponse {
        var head = HTTPRequestHead(version: .http1_1, method: method, uri: uri)
        head.headers.add(name: "host", value: "test")
        for (name, value) in headers { head.headers.add(name: name, value: value) }
        if !body.isEmpty && !head.headers.contains(name: "transfer-encoding") {
            head.headers.add(name: "content-length", value: "\(body.reduce(0) { $0 + $1.utf8.count })")
        }
        let response = try await expectResponse(keepBody: keepBody)
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        for part in body {
            channel.write(HTTPClientRequestPart.body(.byteBuffer(ByteBuffer(string: part))), promise: nil)
        }
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        return try await response.get()
    }

    /// Uploads `total` bytes, waiting for the socket every MiB so the client never runs ahead.
    func upload(_ uri: String, total: Int) async throws -> HTTPTestResponse {
        var head = HTTPRequestHead(version: .http1_1, method: .POST, uri: uri)
        head.headers.add(name: "host", value: "test")
        head.headers.add(name: "content-length", value: "\(total)")
        let response = try await expectResponse(keepBody: true)
        let block = ByteBuffer(repeating: UInt8(ascii: "u"), count: 64 * 1024)
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        var sent = 0
        var blocks = 0
        while sent < total {
            let part = HTTPClientRequestPart.body(.byteBuffer(block.getSlice(at: 0, length: min(block.readableBytes, total - sent))!))
            sent += min(block.readableBytes, total - sent)
            blocks += 1
            if blocks % 16 == 0 {
                try await channel.writeAndFlush(part).get()
            } else {
                channel.write(part, promise: nil)
            }
        }
        try await channel.writeAndFlush(HTTPClientRequestPart.end(nil)).get()
        return try await response.get()
    }

    /// Stops reading responses for `duration`, starting now.
    func stallReads(for duration: TimeAmount) async throws {
        let collector = self.collector
        try await channel.eventLoop.submit { collector.value.stall(for: duration) }.get()
    }

    private func expectResponse(keepBody: Bool) async throws -> EventLoopFuture<HTTPTestResponse> {
        let collector = self.collector
        return try await channel.eventLoop.submit {
            collector.value.expect(keepBody: keepBody, on: collector.value.eventLoop!)
        }.get()
    }

    func close() async {
        try? await channel.close()
    }
}

final class HTTPTestResponseCollector: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = HTTPClientRequestPart

    /// While true the client reads nothing, as a slow client would.
    private var stalled = false
    private var readPending = false
    private var context: ChannelHandlerContext?

    func read(context: ChannelHandlerContext) {
        if stalled {
            readPending = true
        } else {
            context.read()
        }
    }

    func stall(for duration: TimeAmount) {
        guard let context else { return }
        stalled = true
        context.eventLoop.assumeIsolated().scheduleTask(in: duration) {
            self.stalled = false
            if self.readPending {
                self.readPending = false
                context.read()
            }
        }
    }

    private var waiting: [(promise: EventLoopPromise<HTTPTestResponse>, keepBody: Bool)] = []
    private var head: HTTPResponseHead?
    private var body = ByteBuffer()
    private var bodyBytes = 0
    private(set) var eventLoop: (any EventLoop)?

    func handlerAdded(context: ChannelHandlerContext) {
        eventLoop = context.eventLoop
        self.context = context
    }

    func expect(keepBody: Bool, on eventLoop: any EventLoop) -> EventLoopFuture<HTTPTestResponse> {
        let promise = eventLoop.makePromise(of: HTTPTestResponse.self)
        waiting.append((promise, keepBody))
        return promise.futureResult
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch Self.unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            body.clear()
            bodyBytes = 0
        case .body(var buffer):
            bodyBytes += buffer.readableBytes
            if waiting.first?.keepBody ?? true { body.writeBuffer(&buffer) }
        case .end:
            guard let head, !waiting.isEmpty else { return }
            let next = waiting.removeFirst()
            next.promise.succeed(HTTPTestResponse(head: head, body: String(buffer: body), bodyBytes: bodyBytes))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        for next in waiting { next.promise.fail(ChannelError.eof) }
        waiting = []
        context.fireChannelInactive()
    }
}

/// Bytes in, bytes out: for what a well-behaved HTTP client would never send.
final class HTTPRawClient: Sendable {
    let channel: any Channel
    private let received: NIOLockedValueBox<(bytes: [UInt8], closed: Bool)>

    private init(channel: any Channel, received: NIOLockedValueBox<(bytes: [UInt8], closed: Bool)>) {
        self.channel = channel
        self.received = received
    }

    static func connect(port: Int, group: any EventLoopGroup) async throws -> HTTPRawClient {
        let received = NIOLockedValueBox<(bytes: [UInt8], closed: Bool)>(([], false))
        let channel = try await ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(HTTPRawCollector(received: received))
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return HTTPRawClient(channel: channel, received: received)
    }

    func send(_ text: String) async throws {
        try await channel.writeAndFlush(ByteBuffer(string: text)).get()
    }

    func send(bytes: [UInt8]) async throws {
        try await channel.writeAndFlush(ByteBuffer(bytes: bytes)).get()
    }

    var text: String { received.withLockedValue { String(decoding: $0.bytes, as: UTF8.self) } }
    var isClosed: Bool { received.withLockedValue { $0.closed } }

    /// Waits until `condition` holds for (text so far, closed), or `timeout`.
    @discardableResult
    func wait(timeout: Duration = .seconds(5), until condition: (String, Bool) -> Bool) async throws -> String {
        let clock = ContinuousClock()
        let end = clock.now + timeout
        while true {
            let (text, closed) = received.withLockedValue { (String(decoding: $0.bytes, as: UTF8.self), $0.closed) }
            if condition(text, closed) || clock.now > end { return text }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    func close() async {
        try? await channel.close()
    }
}

final class HTTPRawCollector: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    private let received: NIOLockedValueBox<(bytes: [UInt8], closed: Bool)>

    init(received: NIOLockedValueBox<(bytes: [UInt8], closed: Bool)>) {
        self.received = received
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = Self.unwrapInboundIn(data)
        received.withLockedValue { $0.bytes.append(contentsOf: buffer.readableBytesView) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        received.withLockedValue { $0.closed = true }
        context.fireChannelInactive()
    }
}
