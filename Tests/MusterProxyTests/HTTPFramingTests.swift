import NIOCore
import Testing

@testable import MusterProxy

/// The fast path's byte-level framer: head finder, head scanners, rewrite, body framer.
@Suite struct HTTPFramingTests {
    // MARK: Helpers

    /// Feeds `text` one growing prefix at a time, as split reads would, and returns the head
    /// length once found (and how many bytes it took).
    private func findIncrementally(_ text: String, limit: Int = 64 * 1024, step: Int = 1) throws -> (length: Int, fedBytes: Int)? {
        var finder = H1HeadFinder(limit: limit)
        let all = Array(text.utf8)
        var buffer = ByteBuffer()
        var fed = 0
        while fed < all.count {
            let next = min(all.count, fed + step)
            buffer.writeBytes(all[fed..<next])
            fed = next
            if let length = try finder.find(in: buffer) { return (length, fed) }
        }
        return nil
    }

    private func request(_ text: String) throws -> H1RequestHead {
        let buffer = ByteBuffer(string: text)
        var finder = H1HeadFinder(limit: 64 * 1024)
        let length = try #require(try finder.find(in: buffer))
        return try H1RequestHead.parse(buffer, length: length)
    }

    private func response(_ text: String) throws -> H1ResponseHead {
        let buffer = ByteBuffer(string: text)
        var finder = H1HeadFinder(limit: 64 * 1024)
        let length = try #require(try finder.find(in: buffer))
        return try H1ResponseHead.parse(buffer, length: length)
    }

    private func rejects(_ text: String) -> Bool {
        do {
            _ = try request(text)
            return false
        } catch {
            return true
        }
    }

    private func forwarded(_ text: String) throws -> String {
        let buffer = ByteBuffer(string: text)
        let head = try request(text)
        let rewrite = H1Rewrite(client: HTTPClientIdentity(try SocketAddress(ipAddress: "127.0.0.1", port: 1)))
        return String(buffer: rewrite.request(head, in: buffer, allocator: ByteBufferAllocator()))
    }

    /// Runs `framer` over `bytes` split into pieces at `cuts`; returns (bytes consumed, payload).
    private func frame(_ framer: H1BodyFramer, _ bytes: [UInt8], cuts: [Int]) throws -> (consumed: Int, payload: [UInt8], complete: Bool) {
        var framer = framer
        var consumed = 0
        var payload: [UInt8] = []
        var pieces: [ArraySlice<UInt8>] = []
        var start = 0
        for cut in cuts + [bytes.count] where cut >= start {
            pieces.append(bytes[start..<cut])
            start = cut
        }
        var carry = ByteBuffer()
        for piece in pieces {
            carry.writeBytes(piece)
            let count = try framer.advance(over: carry) { data in payload += Array(data.readableBytesView) }
            consumed += count
            carry.moveReaderIndex(forwardBy: count)
            if framer.isComplete { break }
            // All bytes up to the body's end are consumed as they come.
            #expect(carry.readableBytes == 0)
        }
        return (consumed, payload, framer.isComplete)
    }

    // MARK: Finding heads

    static let simple = "GET /a HTTP/1.1\r\nHost: t\r\nAccept: */*\r\n\r\nNEXT"

    @Test func headEndIsFoundAtEveryReadBoundary() throws {
        let expected = Self.simple.utf8.count - "NEXT".count
        for step in 1...8 {
            let found = try #require(try findIncrementally(Self.simple, step: step))
            #expect(found.length == expected)
            #expect(found.fedBytes >= expected && found.fedBytes < expected + step)
        }
        // Split into two reads at every possible point.
        let bytes = Array(Self.simple.utf8)
        for cut in 0...bytes.count {
            var finder = H1HeadFinder(limit: 1024)
            var buffer = ByteBuffer(bytes: bytes[0..<cut])
            var length = try finder.find(in: buffer)
            if length == nil {
                buffer.writeBytes(bytes[cut...])
                length = try finder.find(in: buffer)
            }
            #expect(length == expected, "cut at \(cut)")
        }
    }

    @Test func bareLineFeedsAreRejected() {
        #expect(throws: H1FramingError.malformed) { try findIncrementally("GET / HTTP/1.1\nHost: t\n\n") }
        #expect(throws: H1FramingError.malformed) { try findIncrementally("GET / HTTP/1.1\r\nHost: t\n\r\n") }
        #expect(throws: H1FramingError.malformed) { try findIncrementally("\n") }
        // A lone CR inside a line is not a line end either.
        #expect(rejects("GET / HTTP/1.1\r\nHost: t\rX: y\r\n\r\n"))
    }

    @Test func headersOverTheLimitAreTooLarge() throws {
        let big = "GET / HTTP/1.1\r\nX-Big: \(String(repeating: "a", count: 2000))\r\n\r\n"
        #expect(throws: H1FramingError.tooLarge) { try findIncrementally(big, limit: 1024, step: 100) }
        // Known too large before the end arrives.
        #expect(throws: H1FramingError.tooLarge) { try findIncrementally(String(big.dropLast(4)), limit: 1024, step: 100) }
        // A complete head just over the limit in a single read.
        #expect(throws: H1FramingError.tooLarge) { try findIncrementally(big, limit: big.utf8.count - 1, step: big.utf8.count) }
        #expect(try findIncrementally(big, limit: big.utf8.count, step: big.utf8.count)?.length == big.utf8.count)
    }

    @Test func manyHeadersWithinTheLimitParse() throws {
        var text = "GET /many HTTP/1.1\r\nHost: t\r\n"
        for i in 0..<1000 { text += "X-Header-\(i): value \(i)\r\n" }
        text += "Content-Length: 3\r\n\r\n"
        let head = try request(text)
        #expect(head.facts.contentLength == 3)
        #expect(head.facts.drops.isEmpty)
    }

    // MARK: Request heads

    @Test func requestLineAndFramingAreScanned() throws {
        let get = try request(Self.simple)
        #expect(get.method == .get)
        #expect(get.versionMinor == 1)
        #expect(get.target == 4..<6)
        #expect(get.keepAlive)
        #expect(!get.hasBody)
        #expect(get.bodyLength == 0)

        let post = try request("POST /u HTTP/1.1\r\nHost: t\r\ncontent-LENGTH: 12\r\nExpect: 100-Continue\r\n\r\n")
        #expect(post.method == .post)
        #expect(post.bodyLength == 12)
        #expect(post.facts.expectContinue)
        #expect(!post.method.isIdempotent)

        let chunked = try request("PUT /u HTTP/1.1\r\nHost: t\r\nTransfer-Encoding:  Chunked \r\n\r\n")
        #expect(chunked.facts.chunked)
        #expect(chunked.bodyLength == nil)
        #expect(chunked.hasBody)

        #expect(try request("GET / HTTP/1.0\r\n\r\n").keepAlive == false)
        #expect(try request("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keepAlive)
        #expect(try request("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keepAlive == false)
        #expect(try request("GET / HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n").keepAlive == false)
        #expect(try request("HEAD / HTTP/1.1\r\n\r\n").method == .head)
        #expect(try request("CONNECT a:443 HTTP/1.1\r\n\r\n").method == .connect)
        #expect(try request("get / HTTP/1.1\r\n\r\n").method == .other)
        #expect(try request("GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n").isUpgrade)
        #expect(try request("GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n").isUpgrade == false)
    }

    @Test func smugglingShapesAreRejected() throws {
        // Both framings.
        #expect(rejects("POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"))
        #expect(rejects("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"))
        // Differing lengths; lengths that are not plain digits.
        #expect(rejects("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"))
        for value in ["+5", "-1", "5 5", "5,5", "0x5", "", "1e3", "99999999999999999999", "5\u{0B}"] {
            #expect(rejects("POST / HTTP/1.1\r\nContent-Length: \(value)\r\n\r\n"), "Content-Length: \(value)")
        }
        // Codings other than a lone chunked, or chunked twice.
        for value in ["gzip", "gzip, chunked", "chunked, gzip", "chunked, chunked", "identity", "xchunked", "chunked;q=1"] {
            #expect(rejects("POST / HTTP/1.1\r\nTransfer-Encoding: \(value)\r\n\r\n"), "Transfer-Encoding: \(value)")
        }
        #expect(rejects("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"))
        // obs-fold, whitespace before the colon, bad name and value characters.
        #expect(rejects("GET / HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n"))
        #expect(rejects("GET / HTTP/1.1\r\nX-A: a\r\n\tb\r\n\r\n"))
        #expect(rejects("GET / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n"))
        #expect(rejects("GET / HTTP/1.1\r\n: empty\r\n\r\n"))
        #expect(rejects("GET / HTTP/1.1\r\nX(A): a\r\n\r\n"))
        #expect(rejects("GET / HTTP/1.1\r\nNoColon\r\n\r\n"))
        #expect(rejects("GET / HTTP/1.1\r\nX-A: a\u{0}b\r\n\r\n"))
        #expect(rejects("GET / HTTP/1.1\r\nX-A: a\u{7F}b\r\n\r\n"))
        #expect(rejects("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"))
        // Request lines.
        #expect(rejects("THIS IS NOT HTTP\r\n\r\n"))
        #expect(rejects("GET / HTTP/2.0\r\n\r\n"))
        #expect(rejects("GET / http/1.1\r\n\r\n"))
        #expect(rejects("GET / HTTP/1.1 \r\n\r\n"))
        #expect(rejects("GET  / HTTP/1.1\r\n\r\n"))
        #expect(rejects("GET /a b HTTP/1.1\r\n\r\n"))
        #expect(rejects("GET /\u{1}x HTTP/1.1\r\n\r\n"))
        #expect(rejects(" GET / HTTP/1.1\r\n\r\n"))
        #expect(rejects("GET\r\n\r\n"))
        // The same length twice is one length.
        let twice = try request("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n")
        #expect(twice.bodyLength == 5)
        #expect(twice.facts.drops.count == 1)
        // obs-text is allowed in values.
        #expect(!rejects("GET / HTTP/1.1\r\nX-A: caf\u{E9}\r\n\r\n"))
    }

    // MARK: Rewriting

    @Test func requestRewriteDropsHopByHopAndAddsForwarding() throws {
        let out = try forwarded(
            "GET /x HTTP/1.1\r\nHost: t\r\nConnection: keep-alive, X-Secret\r\nX-Secret: hop\r\nKeep-Alive: 5\r\nTE: trailers\r\n"
                + "Proxy-Connection: x\r\nTrailer: X-T\r\nUpgrade: h2c\r\nAccept: a\r\n\r\n")
        #expect(
            out == "GET /x HTTP/1.1\r\nHost: t\r\nAccept: a\r\nx-forwarded-for: 127.0.0.1\r\nx-forwarded-proto: http\r\n"
                + "forwarded: for=127.0.0.1;proto=http\r\n\r\n")

        let chained = try forwarded(
            "GET / HTTP/1.1\r\nX-Forwarded-For: 203.0.113.7\r\nHost: t\r\nForwarded: for=203.0.113.7\r\nX-Forwarded-Proto: https\r\n\r\n")
        #expect(
            chained == "GET / HTTP/1.1\r\nHost: t\r\nx-forwarded-for: 203.0.113.7, 127.0.0.1\r\nx-forwarded-proto: http\r\n"
                + "forwarded: for=203.0.113.7, for=127.0.0.1;proto=http\r\n\r\n")

        // HTTP/1.0 goes out as 1.1; an upgrade keeps Upgrade and says so in Connection.
        #expect(try forwarded("GET /old HTTP/1.0\r\n\r\n").hasPrefix("GET /old HTTP/1.1\r\nx-forwarded-for"))
        let upgrade = try forwarded("GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        #expect(upgrade.hasPrefix("GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: echo\r\nconnection: upgrade\r\n"))
        // Connection cannot name the framing headers away.
        let framing = try forwarded("POST / HTTP/1.1\r\nConnection: content-length\r\nContent-Length: 1\r\n\r\n")
        #expect(framing.contains("Content-Length: 1\r\n"))
    }

    @Test func responseRewriteManagesTheClientConnection() throws {
        let text = "HTTP/1.1 200 OK\r\nServer: s\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nTransfer-Encoding: chunked\r\n\r\n"
        let head = try response(text)
        let buffer = ByteBuffer(string: text)
        let allocator = ByteBufferAllocator()
        #expect(head.status == 200)
        #expect(head.keepAlive)
        #expect(head.bodyFraming(requestWasHEAD: false).isChunked)
        let toHTTP11 = H1Rewrite.response(head, in: buffer, clientMinor: 1, close: false, dechunk: false, allocator: allocator)
        #expect(String(buffer: toHTTP11) == "HTTP/1.1 200 OK\r\nServer: s\r\nTransfer-Encoding: chunked\r\n\r\n")
        let toHTTP10 = H1Rewrite.response(head, in: buffer, clientMinor: 0, close: true, dechunk: true, allocator: allocator)
        #expect(String(buffer: toHTTP10) == "HTTP/1.0 200 OK\r\nServer: s\r\nconnection: close\r\n\r\n")
        let keep10 = H1Rewrite.response(
            try response("HTTP/1.1 204 No Content\r\n\r\n"), in: ByteBuffer(string: "HTTP/1.1 204 No Content\r\n\r\n"),
            clientMinor: 0, close: false, dechunk: true, allocator: allocator)
        #expect(String(buffer: keep10) == "HTTP/1.0 204 No Content\r\nconnection: keep-alive\r\n\r\n")
        let switching = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"
        let upgraded = H1Rewrite.response(
            try response(switching), in: ByteBuffer(string: switching), clientMinor: 1, close: false, dechunk: false, allocator: allocator)
        #expect(String(buffer: upgraded) == "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nconnection: upgrade\r\n\r\n")
    }

    // MARK: Response heads

    @Test func responseBodyFramingFollowsRFC9112() throws {
        let length = try response("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
        #expect(length.bodyFraming(requestWasHEAD: false) == H1BodyFramer(length: 10))
        #expect(length.bodyFraming(requestWasHEAD: true).isComplete)
        for status in ["100 Continue", "103 Early Hints", "204 No Content", "304 Not Modified"] {
            let head = try response("HTTP/1.1 \(status)\r\nContent-Length: 10\r\n\r\n")
            #expect(head.bodyFraming(requestWasHEAD: false).isComplete, "\(status)")
        }
        #expect(try response("HTTP/1.1 200 OK\r\n\r\n").bodyFraming(requestWasHEAD: false).isUntilClose)
        #expect(try response("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n").bodyFraming(requestWasHEAD: false).isUntilClose)
        #expect(try response("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n").bodyFraming(requestWasHEAD: false).isChunked)
        #expect(try response("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n").keepAlive == false)
        #expect(try response("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n").keepAlive)
        #expect(try response("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n").keepAlive == false)
        #expect(try response("HTTP/1.1 404\r\n\r\n").status == 404)
        #expect(throws: H1FramingError.malformed) { try response("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n") }
        #expect(throws: H1FramingError.malformed) { try response("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n") }
        #expect(throws: H1FramingError.malformed) { try response("HTTP/2 200 OK\r\n\r\n") }
        #expect(throws: H1FramingError.malformed) { try response("HTTP/1.1 2x0 OK\r\n\r\n") }
        #expect(throws: H1FramingError.malformed) { try response("HTTP/1.1 099 Low\r\n\r\n") }
        #expect(throws: H1FramingError.malformed) { try response("HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n") }
    }

    // MARK: Bodies

    @Test func lengthBodiesEndWhereTheyShould() throws {
        let bytes = Array("helloNEXT".utf8)
        for cut in 0...bytes.count {
            let result = try frame(H1BodyFramer(length: 5), bytes, cuts: [cut])
            #expect(result.consumed == 5)
            #expect(result.payload == Array("hello".utf8))
            #expect(result.complete)
        }
        #expect(H1BodyFramer(length: 0).isComplete)
    }

    static let chunkedBody =
        "5;name=value;quoted=\"a b\"\r\nhello\r\n"
        + "A \r\n0123456789\r\n"
        + "1a; x\r\nabcdefghijklmnopqrstuvwxyz\r\n"
        + "0;last\r\nX-Trailer: one\r\nX-Other: two\r\n\r\n"

    @Test func chunkedBodiesEndWhereTheyShouldAtEveryReadBoundary() throws {
        let bytes = Array((Self.chunkedBody + "GET /next HTTP/1.1\r\n").utf8)
        let bodyLength = Self.chunkedBody.utf8.count
        let payload = Array("hello0123456789abcdefghijklmnopqrstuvwxyz".utf8)
        for cut in 0...bytes.count {
            let result = try frame(.chunked(), bytes, cuts: [cut])
            #expect(result.consumed == bodyLength, "cut at \(cut)")
            #expect(result.payload == payload, "cut at \(cut)")
            #expect(result.complete)
        }
        // One byte per read.
        let single = try frame(.chunked(), bytes, cuts: Array(1..<bytes.count))
        #expect(single.consumed == bodyLength)
        #expect(single.payload == payload)
        // Every pair of cuts, over a shorter body.
        let short = Array("3\r\nabc\r\n0\r\nT: v\r\n\r\nX".utf8)
        for first in 0...short.count {
            for second in first...short.count {
                let result = try frame(.chunked(), short, cuts: [first, second])
                #expect(result.consumed == short.count - 1)
                #expect(result.payload == Array("abc".utf8))
            }
        }
    }

    @Test func badChunkFramingIsRejected() {
        let bad = [
            "x\r\n", "\r\n", ";ext\r\n", "5\nhello\r\n0\r\n\r\n", "5\r\nhello\n0\r\n\r\n", "5\r\nhelloX\r\n",
            "5\r\nhello\r\n0\r\n\n", "5 x\r\n", "-5\r\n", "0x5\r\n", "1000000000000000\r\n",
            "5;a\u{0}b\r\n", "0\r\n bad: fold\r\n\r\n", "0\r\nX: a\u{1}\r\n\r\n", "0\r\nX: a\nY: b\r\n\r\n",
        ]
        for text in bad {
            var framer = H1BodyFramer.chunked()
            #expect(throws: H1FramingError.malformed, "\(text.debugDescription)") {
                _ = try framer.advance(over: ByteBuffer(string: text))
            }
        }
        // A chunk size may have leading zeros; a size of 15 hex digits is refused only past that.
        var framer = H1BodyFramer.chunked()
        #expect(throws: Never.self) { _ = try framer.advance(over: ByteBuffer(string: "00005\r\nhello\r\n")) }
    }

    @Test func untilCloseTakesEverything() throws {
        var framer = H1BodyFramer.untilClose()
        #expect(try framer.advance(over: ByteBuffer(string: "anything at all")) == 15)
        #expect(!framer.isComplete)
    }
}
