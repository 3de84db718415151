import Atomics
import MusterCore
import NIOCore
import NIOHTTP1
import NIOPosix
import Testing

@testable import MusterProxy

/// http mode end to end: real backend servers, the real proxy, real sockets.
@Suite(.serialized) struct HTTPProxyTests {
    @Test func roundRobinPerRequestOverOneKeepAliveConnection() async throws {
        try await withHTTPProxy(servers: 3) { harness in
            let client = try await harness.client()
            var hits = [0, 0, 0]
            for _ in 0..<12 {
                let response = try await client.request("/id")
                #expect(response.status == 200)
                if let index = Int(response.body.dropFirst("backend-".count)) { hits[index] += 1 }
            }
            #expect(hits == [4, 4, 4])
            await client.close()
            #expect(try await harness.inFlightSettles() == 0)
            let twoXX = harness.instances.map { $0.counters.responses[2].load(ordering: .relaxed) }
            #expect(twoXX == [4, 4, 4])
            let latencies = harness.instances.map { $0.counters.latency.count }
            let everyResponseTimed = latencies.allSatisfy { $0 == 4 }
            #expect(everyResponseTimed, "\(latencies)")
        }
    }

    @Test func connectionsToInstancesAreReused() async throws {
        try await withHTTPProxy(servers: 2) { harness in
            let client = try await harness.client()
            for _ in 0..<20 {
                #expect(try await client.request("/id").status == 200)
            }
            await client.close()
            let connections = harness.servers.map { $0.connections.load(ordering: .relaxed) }
            let requests = harness.servers.map { $0.requests.load(ordering: .relaxed) }
            #expect(requests == [10, 10])
            // One client connection lives on one proxy event loop, which keeps one connection per
            // instance warm.
            #expect(connections == [1, 1])
        }
    }

    @Test func largeBodiesStreamBothWaysWithoutBuffering() async throws {
        try await withHTTPProxy(servers: 1) { harness in
            let size = 256 * 1024 * 1024
            let client = try await harness.client()
            _ = try await client.request("/id")  // warm up buffers and the pool first
            let baseline = residentBytes()
            let peak = ManagedAtomic<Int>(baseline)
            let sampler = Task {
                while !Task.isCancelled {
                    let now = residentBytes()
                    if now > peak.load(ordering: .relaxed) { peak.store(now, ordering: .relaxed) }
                    try? await Task.sleep(for: .milliseconds(20))
                }
            }
            defer { sampler.cancel() }

            // Each receiver stops reading for a while: a proxy that kept reading from the sender
            // meanwhile would have to hold the body in memory.
            let upload = try await client.upload("/upload-stalled", total: size)
            #expect(upload.status == 200)
            #expect(upload.body == "\(size)")

            try await client.stallReads(for: .milliseconds(500))
            let download = try await client.request("/download/\(size)", keepBody: false)
            #expect(download.status == 200)
            #expect(download.bodyBytes == size)

            sampler.cancel()
            let growth = peak.load(ordering: .relaxed) - baseline
            #expect(growth < 64 * 1024 * 1024, "resident set grew by \(growth / 1024 / 1024) MiB")
            let counters = harness.instances[0].counters
            #expect(counters.bytesToInstance.load(ordering: .relaxed) >= size)
            #expect(counters.bytesFromInstance.load(ordering: .relaxed) >= size)
            await client.close()
            #expect(try await harness.inFlightSettles() == 0)
        }
    }

    @Test func chunkedRequestAndResponseRoundTrip() async throws {
        try await withHTTPProxy(servers: 1) { harness in
            let client = try await harness.client()
            let echoed = try await client.request(
                .POST, "/echo", headers: [("transfer-encoding", "chunked")], body: ["one,", "two,", "three"])
            #expect(echoed.status == 200)
            #expect(echoed.body == "one,two,three")
            #expect(echoed.head.headers.first(name: "transfer-encoding") == "chunked")

            let chunked = try await client.request("/chunked")
            #expect(chunked.body == "alpha-beta-gamma")
            // HEAD of a chunked resource: no body, no terminator, and the connection still works.
            let head = try await client.request(.HEAD, "/chunked")
            #expect(head.status == 200)
            #expect(head.bodyBytes == 0)
            #expect(try await client.request("/id").body == "backend-0")
            await client.close()
        }
    }

    @Test func expectContinuePassesTheInstancesHundredThrough() async throws {
        try await withHTTPProxy(servers: 1) { harness in
            let client = try await harness.rawClient()
            try await client.send("POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
            let interim = try await client.wait { text, _ in text.contains("\r\n\r\n") }
            #expect(interim.hasPrefix("HTTP/1.1 100 Continue\r\n"))
            try await client.send("hello")
            let full = try await client.wait { text, _ in text.hasSuffix("\r\n\r\n5") }
            #expect(full.contains("HTTP/1.1 200 OK"))
            await client.close()
            #expect(try await harness.inFlightSettles() == 0)
        }
    }

    @Test func upgradeBecomesARawTunnel() async throws {
        try await withHTTPProxy(servers: 1) { harness in
            let client = try await harness.rawClient()
            try await client.send("GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
            let switched = try await client.wait { text, _ in text.contains("\r\n\r\n") }
            #expect(switched.hasPrefix("HTTP/1.1 101 Switching Protocols\r\n"))
            #expect(switched.lowercased().contains("upgrade: echo"))
            #expect(harness.instances[0].counters.inFlight.load(ordering: .relaxed) == 1)

            try await client.send("\u{1}raw bytes, not HTTP\r\n\r\n")
            let echoed = try await client.wait { text, _ in text.hasSuffix("raw bytes, not HTTP\r\n\r\n") }
            #expect(echoed.hasSuffix("\u{1}raw bytes, not HTTP\r\n\r\n"))
            await client.close()
            #expect(try await harness.inFlightSettles() == 0)
            #expect(harness.instances[0].counters.responses[1].load(ordering: .relaxed) == 1)
        }
    }

    @Test func forwardingHeadersReachTheInstance() async throws {
        try await withHTTPProxy(servers: 1) { harness in
            let client = try await harness.client()
            let plain = try await client.request("/headers", headers: [("connection", "keep-alive, x-secret"), ("x-secret", "hop")])
            let lines = Set(plain.body.split(separator: "\n").map(String.init))
            #expect(lines.contains("x-forwarded-for: 127.0.0.1"))
            #expect(lines.contains("x-forwarded-proto: http"))
            #expect(lines.contains("forwarded: for=127.0.0.1;proto=http"))
            let hopByHopLeaked = lines.contains { $0.hasPrefix("x-secret") || $0.hasPrefix("connection") }
            #expect(!hopByHopLeaked, "\(lines.sorted())")

            let chained = try await client.request("/headers", headers: [("x-forwarded-for", "203.0.113.7"), ("forwarded", "for=203.0.113.7")])
            let chainedLines = Set(chained.body.split(separator: "\n").map(String.init))
            #expect(chainedLines.contains("x-forwarded-for: 203.0.113.7, 127.0.0.1"))
            #expect(chainedLines.contains("forwarded: for=203.0.113.7, for=127.0.0.1;proto=http"))
            await client.close()
        }
    }

    @Test func ipv6ClientsAreQuotedInForwarded() throws {
        let identity = HTTPClientIdentity(try SocketAddress(ipAddress: "2001:db8::1", port: 1234))
        #expect(identity.address == "2001:db8::1")
        #expect(identity.forwardedElement == "for=\"[2001:db8::1]\";proto=http")
    }

    @Test func failedConnectMovesToTheNextInstance() async throws {
        try await withHTTPProxy(servers: 2, ready: false) { harness in
            let deadPort = try await closedLoopbackPort(group: harness.testGroup)
            let dead = Backend(service: "web", index: 2, generation: 1, address: try SocketAddress(ipAddress: "127.0.0.1", port: deadPort))
            harness.proxy.backends.setReady(harness.instances + [dead])
            let client = try await harness.client()
            var statuses: [Int] = []
            for _ in 0..<9 {
                statuses.append(try await client.request("/id").status)
            }
            #expect(statuses == Array(repeating: 200, count: 9))
            #expect(dead.counters.connectFailures.load(ordering: .relaxed) >= 3)
            #expect(harness.proxy.counters.failedRequests.load(ordering: .relaxed) == 0)
            await client.close()
            #expect(try await harness.inFlightSettles() == 0)
            #expect(dead.counters.inFlight.load(ordering: .relaxed) == 0)
        }
    }

    @Test func fiveFiveHundredsInARowEjectAnInstance() async throws {
        try await withHTTPProxy(servers: 3, spec: { $0.ejectFor = .seconds(60) }) { harness in
            let client = try await harness.client()
            var statuses: [Int] = []
            var answeredBy = [0, 0, 0]
            for _ in 0..<30 {
                let response = try await client.request("/fail-on-0")
                statuses.append(response.status)
                if let index = Int(response.body.dropFirst("backend-".count)) { answeredBy[index] += 1 }
            }
            await client.close()
            // Round robin until instance 0's fifth 500 (the first 15 requests), then the other two.
            let fiveHundreds = statuses.filter { $0 == 500 }.count
            #expect(fiveHundreds == 5, "\(statuses)")
            let lastFiveHundred = statuses.lastIndex(of: 500) ?? -1
            #expect(lastFiveHundred < 15, "\(statuses)")
            #expect(answeredBy[1] + answeredBy[2] == 25)
            #expect(abs(answeredBy[1] - answeredBy[2]) <= 1, "\(answeredBy)")
            let ejection = harness.proxy.backends.ejection(of: harness.instances[0])
            #expect(ejection?.duration == .seconds(60))
            let ejections = harness.instances[0].counters.ejections.load(ordering: .relaxed)
            #expect(ejections == 1)
            let counted = harness.instances[0].counters.responses[5].load(ordering: .relaxed)
            #expect(counted == 5, "the 500s clients saw are counted on the instance")
        }
    }

    @Test func ejectAfterZeroKeepsAFailingInstanceInTheRotation() async throws {
        try await withHTTPProxy(servers: 2, spec: { $0.ejectAfter = 0 }) { harness in
            let client = try await harness.client()
            var statuses: [Int] = []
            for _ in 0..<20 { statuses.append(try await client.request("/fail-on-0").status) }
            await client.close()
            let fiveHundreds = statuses.filter { $0 == 500 }.count
            #expect(fiveHundreds == 10, "\(statuses)")
            #expect(harness.proxy.backends.ejectedCount == 0)
        }
    }

    @Test func staleKeptAliveConnectionIsRetried() async throws {
        try await withHTTPProxy(servers: 1) { harness in
            let client = try await harness.client()
            // The instance answers the first request on each connection and drops the second:
            // the second request finds a dead pooled connection and must be sent again.
            for _ in 0..<4 {
                let response = try await client.request("/close-second")
                #expect(response.status == 200)
            }
            #expect(harness.proxy.counters.failedRequests.load(ordering: .relaxed) == 0)
            await client.close()
            #expect(try await harness.inFlightSettles() == 0)
        }
    }

    @Test func requestWaitsForAnInstanceThatBecomesReady() async throws {
        try await withHTTPProxy(servers: 1, ready: false, spec: { $0.queueTimeout = .seconds(5) }) { harness in
            let client = try await harness.client()
            let instances = harness.instances
            let backends = harness.proxy.backends
            let readyLater = Task {
                try await Task.sleep(for: .milliseconds(200))
                backends.setReady(instances)
            }
            let response = try await client.request("/id")
            #expect(response.status == 200)
            #expect(response.body == "backend-0")
            try await readyLater.value
            await client.close()
        }
    }

    @Test func noReadyInstanceWithinQueueTimeoutIs503() async throws {
        try await withHTTPProxy(servers: 1, ready: false, spec: { $0.queueTimeout = .milliseconds(300) }) { harness in
            let client = try await harness.client()
            let started = ContinuousClock.now
            let response = try await client.request("/id")
            #expect(response.status == 503)
            #expect(response.body.contains("no instance of web is ready"))
            #expect(ContinuousClock.now - started >= .milliseconds(250))
            #expect(harness.proxy.counters.queueTimeouts.load(ordering: .relaxed) == 1)
            // A bodiless request was answered in full, so the connection stays usable.
            harness.proxy.backends.setReady(harness.instances)
            #expect(try await client.request("/id").status == 200)
            await client.close()
        }
    }

    @Test func malformedRequestIs400AndClosed() async throws {
        try await withHTTPProxy(servers: 1) { harness in
            let client = try await harness.rawClient()
            try await client.send("THIS IS NOT HTTP\r\n\r\n")
            let text = try await client.wait { _, closed in closed }
            #expect(text.hasPrefix("HTTP/1.1 400 Bad Request\r\n"))
            #expect(client.isClosed)
            #expect(harness.proxy.counters.badRequests.load(ordering: .relaxed) == 1)
        }
    }

    @Test func oversizedHeaderBlockIs431() async throws {
        try await withHTTPProxy(servers: 1) { harness in
            let client = try await harness.rawClient()
            let big = String(repeating: "a", count: 70 * 1024)
            try? await client.send("GET /id HTTP/1.1\r\nHost: t\r\nX-Big: \(big)\r\n\r\n")
            let text = try await client.wait { _, closed in closed }
            #expect(text.hasPrefix("HTTP/1.1 431 Request Header Fields Too Large\r\n"))
            #expect(harness.proxy.counters.badRequests.load(ordering: .relaxed) == 1)
            #expect(harness.servers[0].requests.load(ordering: .relaxed) == 0)
        }
    }

    @Test func slowHeaderClientGets408() async throws {
        try await withHTTPProxy(servers: 1) { harness in
            harness.proxy.context.settings.headerTimeout = .milliseconds(300)
            let client = try await harness.rawClient()
            try await client.send("GET /id HTTP/1.1\r\nHost: t\r\n")
            let text = try await client.wait(timeout: .seconds(3)) { _, closed in closed }
            #expect(text.hasPrefix("HTTP/1.1 408 Request Timeout\r\n"))
            #expect(harness.proxy.counters.badRequests.load(ordering: .relaxed) == 1)
        }
    }

    @Test func slowSecondRequestOnAKeptAliveConnectionGets408() async throws {
        try await withHTTPProxy(servers: 1) { harness in
            harness.proxy.context.settings.headerTimeout = .milliseconds(300)
            let client = try await harness.rawClient()
            try await client.send("GET /id HTTP/1.1\r\nHost: t\r\n\r\n")
            try await client.wait { text, _ in text.hasSuffix("backend-0") }
            try await client.send("GET /id HTTP/1.1\r\n")
            let text = try await client.wait(timeout: .seconds(3)) { _, closed in closed }
            #expect(text.contains("HTTP/1.1 408 Request Timeout\r\n"))
        }
    }

    @Test func idleKeptAliveClientIsClosed() async throws {
        try await withHTTPProxy(servers: 1, spec: { $0.idleTimeout = .milliseconds(300) }) { harness in
            let client = try await harness.rawClient()
            try await client.send("GET /id HTTP/1.1\r\nHost: t\r\n\r\n")
            try await client.wait { text, _ in text.hasSuffix("backend-0") }
            let text = try await client.wait(timeout: .seconds(3)) { _, closed in closed }
            #expect(client.isClosed)
            #expect(!text.contains("408"))
            #expect(harness.proxy.counters.badRequests.load(ordering: .relaxed) == 0)
        }
    }

    @Test func connectionCloseFromTheClientIsHonoured() async throws {
        try await withHTTPProxy(servers: 1) { harness in
            let client = try await harness.rawClient()
            try await client.send("GET /id HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            let text = try await client.wait { _, closed in closed }
            #expect(text.hasPrefix("HTTP/1.1 200 OK\r\n"))
            #expect(text.lowercased().contains("connection: close"))
            #expect(text.hasSuffix("backend-0"))
        }
    }

    @Test func pipelinedRequestsAreAnsweredInOrder() async throws {
        try await withHTTPProxy(servers: 2) { harness in
            let client = try await harness.rawClient()
            try await client.send(String(repeating: "GET /id HTTP/1.1\r\nHost: t\r\n\r\n", count: 4))
            let text = try await client.wait { text, _ in text.components(separatedBy: "HTTP/1.1 200 OK").count == 5 }
            #expect(text.components(separatedBy: "HTTP/1.1 200 OK").count == 5)
            #expect(text.components(separatedBy: "backend-0").count == 3)
            #expect(text.components(separatedBy: "backend-1").count == 3)
            await client.close()
        }
    }

    @Test func tooManyConnectionsAre503() async throws {
        try await withHTTPProxy(servers: 1, spec: { $0.maxConnections = 1 }) { harness in
            let first = try await harness.client()
            #expect(try await first.request("/id").status == 200)
            let second = try await harness.rawClient()
            let text = try await second.wait { _, closed in closed }
            #expect(text.hasPrefix("HTTP/1.1 503 Service Unavailable\r\n"))
            #expect(harness.proxy.counters.rejectedConnections.load(ordering: .relaxed) == 1)
            await first.close()
        }
    }

    @Test func retiredInstanceConnectionsAreNotReused() async throws {
        try await withHTTPProxy(servers: 1) { harness in
            let client = try await harness.client()
            #expect(try await client.request("/id").status == 200)
            // The same process, now draining: the next instance is a new Backend for a new
            // process (here the same server, so the connection count shows the pool at work).
            harness.instances[0].retired.store(true, ordering: .relaxed)
            let successor = Backend(
                service: "web", index: 0, generation: 2, address: harness.instances[0].address)
            harness.proxy.backends.setReady([successor])
            #expect(try await client.request("/id").status == 200)
            #expect(harness.servers[0].connections.load(ordering: .relaxed) == 2)
            await client.close()
        }
    }

    @Test func aBurstsIdleInstanceConnectionsArePurgedByHalves() async throws {
        try await withHTTPProxy(servers: 1) { harness in
            // Eight requests in flight at once (each waits for its one-byte body): eight
            // connections to the instance, all idle in the pool once answered.
            var clients: [HTTPRawClient] = []
            for _ in 0..<8 {
                let client = try await harness.rawClient()
                try await client.send("POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\n")
                clients.append(client)
            }
            try await TCPTest.eventually { harness.servers[0].openConnections.load(ordering: .relaxed) == 8 }
            for client in clients {
                try await client.send("x")
                _ = try await client.wait { text, _ in text.hasSuffix("\r\n\r\n1") }
            }
            // idle_timeout is 60 s; the purge closes half of those idle 5 s, every 5 s.
            let clock = ContinuousClock()
            let end = clock.now + .seconds(15)
            var open = 8
            while open > 4, clock.now < end {
                try await Task.sleep(for: .milliseconds(50))
                open = harness.servers[0].openConnections.load(ordering: .relaxed)
            }
            #expect(open <= 4 && open >= 2, "\(open) of 8 idle instance connections open")
            // What is left is still reused.
            let before = harness.servers[0].connections.load(ordering: .relaxed)
            try await clients[0].send("GET /id HTTP/1.1\r\nHost: t\r\n\r\n")
            _ = try await clients[0].wait { text, _ in text.hasSuffix("backend-0") }
            #expect(harness.servers[0].connections.load(ordering: .relaxed) == before)
            for client in clients { await client.close() }
        }
    }

    @Test func pipelinedRequestsToOneInstanceReuseItsConnection() async throws {
        try await withHTTPProxy(servers: 1) { harness in
            let client = try await harness.rawClient()
            try await client.send(String(repeating: "GET /id HTTP/1.1\r\nHost: t\r\n\r\n", count: 5))
            let text = try await client.wait { text, _ in text.components(separatedBy: "backend-0").count == 6 }
            #expect(text.components(separatedBy: "HTTP/1.1 200 OK").count == 6)
            #expect(harness.servers[0].connections.load(ordering: .relaxed) == 1)
            await client.close()
            #expect(try await harness.inFlightSettles() == 0)
        }
    }

    @Test func refusedUpgradeIsAnsweredThenClosed() async throws {
        try await withHTTPProxy(servers: 1) { harness in
            let client = try await harness.rawClient()
            try await client.send("GET /id HTTP/1.1\r\nHost: t\r\nConnection: upgrade\r\nUpgrade: something-else\r\n\r\n")
            let text = try await client.wait { _, closed in closed }
            #expect(text.hasPrefix("HTTP/1.1 200 OK\r\n"))
            #expect(text.hasSuffix("backend-0"))
            #expect(try await harness.inFlightSettles() == 0)
        }
    }

    @Test func instanceThatHangsUpIs502() async throws {
        try await withHTTPProxy(servers: 1) { harness in
            let client = try await harness.client()
            #expect(try await client.request("/id").status == 200)
            // Idempotent: the pooled connection's hang-up is retried on a fresh one, which hangs
            // up too; that one is the instance failing.
            let get = try await client.request("/hang-up")
            #expect(get.status == 502)
            #expect(get.body.contains("no instance of web answered"))
            let client2 = try await harness.client()
            #expect(try await client2.request("/id").status == 200)
            let post = try await client2.request(.POST, "/hang-up", body: ["x"])
            #expect(post.status == 502)
            #expect(harness.proxy.counters.failedRequests.load(ordering: .relaxed) == 2)
            #expect(harness.instances[0].counters.responses[0].load(ordering: .relaxed) == 2)
            // POST is not idempotent: one try only; GET went to the instance twice.
            #expect(harness.servers[0].requests.load(ordering: .relaxed) == 5)
            #expect(try await harness.inFlightSettles() == 0)
            await client.close()
            await client2.close()
        }
    }

    @Test func anInstanceDyingWithAnIdempotentRequestOnAFreshConnectionIsRetriedElsewhere() async throws {
        try await withHTTPProxy(servers: 2) { harness in
            // Instance 0 takes the request and closes without a word (as a kill -9 would) on
            // connections the proxy just opened: a GET moves on to instance 1, a POST cannot.
            var statuses: [Int] = []
            for _ in 0..<6 {
                let client = try await harness.client()
                statuses.append(try await client.request("/hang-up-on-0").status)
                await client.close()
            }
            #expect(statuses == Array(repeating: 200, count: 6))
            #expect(harness.proxy.counters.failedRequests.load(ordering: .relaxed) == 0)
            var postStatuses: [Int] = []
            for _ in 0..<4 {
                let client = try await harness.client()
                postStatuses.append(try await client.request(.POST, "/hang-up-on-0", body: ["x"]).status)
                await client.close()
            }
            let some502 = postStatuses.contains(502)
            #expect(some502, "\(postStatuses)")
            #expect(try await harness.inFlightSettles() == 0)
        }
    }

    @Test func everyInstanceUnreachableIs502() async throws {
        try await withHTTPProxy(servers: 0, ready: false) { harness in
            var dead: [Backend] = []
            for index in 0..<2 {
                let port = try await closedLoopbackPort(group: harness.testGroup)
                dead.append(Backend(service: "web", index: index, generation: 1, address: try SocketAddress(ipAddress: "127.0.0.1", port: port)))
            }
            harness.proxy.backends.setReady(dead)
            let client = try await harness.client()
            let response = try await client.request("/id")
            #expect(response.status == 502)
            let connectFailures = dead.map { $0.counters.connectFailures.load(ordering: .relaxed) }
            #expect(connectFailures == [1, 1])
            #expect(harness.proxy.counters.failedRequests.load(ordering: .relaxed) == 1)
            await client.close()
        }
    }

    @Test func clientLeavingMidResponseEndsTheRequest() async throws {
        try await withHTTPProxy(servers: 1) { harness in
            let client = try await harness.client()
            try await client.stallReads(for: .seconds(10))
            let download = Task { try await client.request("/download/\(64 * 1024 * 1024)", keepBody: false) }
            try await Task.sleep(for: .milliseconds(200))
            #expect(harness.instances[0].counters.inFlight.load(ordering: .relaxed) == 1)
            await client.close()
            _ = try? await download.value
            #expect(try await harness.inFlightSettles() == 0)
            #expect(harness.instances[0].counters.responses[2].load(ordering: .relaxed) == 1)
        }
    }

    @Test func http10ClientsGetBodiesTheyCanDelimit() async throws {
        try await withHTTPProxy(servers: 1) { harness in
            // A chunked answer cannot go to a 1.0 client: it gets the raw body and a close.
            let chunked = try await harness.rawClient()
            try await chunked.send("GET /chunked HTTP/1.0\r\n\r\n")
            let text = try await chunked.wait { _, closed in closed }
            #expect(text.hasPrefix("HTTP/1.0 200 OK\r\n"))
            #expect(!text.lowercased().contains("transfer-encoding"))
            #expect(text.hasSuffix("\r\n\r\nalpha-beta-gamma"))

            // With a length and keep-alive asked for, the connection stays.
            let keepAlive = try await harness.rawClient()
            try await keepAlive.send("GET /id HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            let first = try await keepAlive.wait { text, _ in text.hasSuffix("backend-0") }
            #expect(first.lowercased().contains("connection: keep-alive"))
            try await keepAlive.send("GET /id HTTP/1.0\r\n\r\n")
            let both = try await keepAlive.wait { _, closed in closed }
            #expect(both.components(separatedBy: "backend-0").count == 3)
            #expect(try await harness.inFlightSettles() == 0)
        }
    }
}
