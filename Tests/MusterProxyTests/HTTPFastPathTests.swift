import Atomics
import MusterCore
import NIOCore
import Testing

@testable import MusterProxy

/// The raw-bytes HTTP path end to end, on what HTTPProxyTests do not reach: smuggling
/// shapes, chunk framing details, heads split across reads, bodies pipelined behind each other.
@Suite(.serialized) struct HTTPFastPathTests {
    @Test func smugglingShapesAre400AndNeverReachAnInstance() async throws {
        try await withHTTPProxy(servers: 1) { harness in
            let shapes = [
                "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
                "POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
                "GET /id HTTP/1.1\r\nHost: t\r\nX-Folded: a\r\n b\r\n\r\n",
                "GET /id HTTP/1.1\nHost: t\n\n",
                "GET /id HTTP/1.1\r\nHost: t\r\nX-Bad: a\u{0}b\r\n\r\n",
            ]
            for (index, shape) in shapes.enumerated() {
                let client = try await harness.rawClient()
                try await client.send(shape)
                let text = try await client.wait { _, closed in closed }
                #expect(text.hasPrefix("HTTP/1.1 400 Bad Request\r\n"), "shape \(index)")
                #expect(client.isClosed)
            }
            #expect(harness.proxy.counters.badRequests.load(ordering: .relaxed) == shapes.count)
            #expect(harness.servers[0].requests.load(ordering: .relaxed) == 0)
        }
    }

    @Test func badChunkFramingMidBodyCutsTheRequestOff() async throws {
        try await withHTTPProxy(servers: 1) { harness in
            let client = try await harness.rawClient()
            try await client.send("POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n")
            let text = try await client.wait { _, closed in closed }
            #expect(text.hasPrefix("HTTP/1.1 400 Bad Request\r\n"))
            #expect(try await harness.inFlightSettles() == 0)
        }
    }

    @Test func chunkExtensionsAndTrailersPassThroughAndTheConnectionGoesOn() async throws {
        try await withHTTPProxy(servers: 1) { harness in
            let client = try await harness.rawClient()
            try await client.send(
                "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=\"a b\"\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: v\r\n\r\n"
                    + "GET /id HTTP/1.1\r\nHost: t\r\n\r\n")
            let text = try await client.wait { text, _ in text.hasSuffix("backend-0") }
            #expect(text.hasPrefix("HTTP/1.1 200 OK\r\n"))
            #expect(text.lowercased().contains("transfer-encoding: chunked"))
            #expect(text.contains("abc") && text.contains("de"))
            #expect(text.components(separatedBy: "HTTP/1.1 200 OK").count == 3)
            await client.close()
            #expect(try await harness.inFlightSettles() == 0)
        }
    }

    @Test func headsAndBodiesSplitAcrossReadsArrive() async throws {
        try await withHTTPProxy(servers: 1) { harness in
            let client = try await harness.rawClient()
            let request = "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
            for byte in request.utf8 {
                try await client.send(String(decoding: [byte], as: UTF8.self))
                try await Task.sleep(for: .milliseconds(1))
            }
            let text = try await client.wait { text, _ in text.hasSuffix("\r\n\r\n5") }
            #expect(text.hasPrefix("HTTP/1.1 200 OK\r\n"))
            await client.close()
        }
    }

    @Test func pipelinedRequestsWithBodiesStayInOrder() async throws {
        try await withHTTPProxy(servers: 2) { harness in
            let client = try await harness.rawClient()
            try await client.send(
                "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
                    + "\r\n"  // a stray CRLF between requests is ignored
                    + "POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n"
                    + "GET /id HTTP/1.1\r\nHost: t\r\n\r\n")
            let text = try await client.wait { text, _ in text.components(separatedBy: "HTTP/1.1 200 OK").count == 4 && text.hasSuffix("backend-0") }
            let bodies = text.components(separatedBy: "\r\n\r\n").dropFirst().map { $0.prefix(while: { $0 != "H" }) }
            #expect(bodies == ["5", "2", "backend-0"])
            await client.close()
            #expect(try await harness.inFlightSettles() == 0)
        }
    }

    @Test func headRequestsOverHTTP10() async throws {
        try await withHTTPProxy(servers: 1) { harness in
            let client = try await harness.rawClient()
            try await client.send("HEAD /chunked HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            let head = try await client.wait { text, _ in text.hasSuffix("\r\n\r\n") }
            #expect(head.hasPrefix("HTTP/1.0 200 OK\r\n"))
            #expect(!head.lowercased().contains("transfer-encoding"))
            #expect(head.lowercased().contains("connection: keep-alive"))
            try await client.send("GET /id HTTP/1.0\r\n\r\n")
            let both = try await client.wait { _, closed in closed }
            #expect(both.hasSuffix("backend-0"))
        }
    }
}
