import MusterProxy
import NIOCore
import Testing

/// The http listener against what no browser sends: random bytes, requests cut short, junk in
/// every part of a request, pipelines mixing good and bad. Seeded, so a failure replays. The
/// proxy must answer with a 4xx where HTTP applies (or close), never crash, never leak a
/// connection, and keep serving everyone else.
@Suite struct HTTPHostileInputTests {
    /// xorshift64*: small, deterministic, good enough to pick bytes.
    struct Generator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state ^= state >> 12
            state ^= state << 25
            state ^= state >> 27
            return state &* 2_685_821_657_736_338_717
        }
        mutating func below(_ n: Int) -> Int { Int(next() % UInt64(max(1, n))) }
        mutating func bytes(_ count: Int) -> [UInt8] { (0..<count).map { _ in UInt8(truncatingIfNeeded: next()) } }
    }

    static let valid = "GET /id HTTP/1.1\r\nHost: t\r\nX-A: 1\r\n\r\n"
    static let junkTokens = ["\r\n", "\n", "\r", " ", ":", "\0", "Transfer-Encoding: chunked\r\n", "Content-Length: 99999999999999999999\r\n",
                             "Content-Length: -1\r\n", "Content-Length: 5\r\nContent-Length: 6\r\n", "HTTP/9.9", "\u{FF}\u{FE}", "%00", "GET",
                             String(repeating: "A", count: 5000), "0\r\n\r\n", "zz\r\n", "Expect: 100-continue\r\n", "Upgrade: x\r\n"]

    /// One hostile input: what to send, and whether the proxy may legitimately answer 2xx
    /// (a valid request may hide in a pipeline).
    static func input(_ g: inout Generator) -> [UInt8] {
        switch g.below(5) {
        case 0:
            return g.bytes(1 + g.below(4096))
        case 1:
            // A valid request cut anywhere, then nothing more.
            let bytes = Array(valid.utf8)
            return Array(bytes[0..<(1 + g.below(bytes.count - 1))])
        case 2:
            // A valid request with junk spliced in somewhere.
            var bytes = Array(valid.utf8)
            let token = Array(junkTokens[g.below(junkTokens.count)].utf8)
            bytes.insert(contentsOf: token, at: g.below(bytes.count))
            return bytes
        case 3:
            // A pipeline: good, junk, good.
            return Array((valid + junkTokens[g.below(junkTokens.count)] + valid).utf8)
        default:
            // A valid request with bytes flipped.
            var bytes = Array(valid.utf8)
            for _ in 0..<(1 + g.below(4)) { bytes[g.below(bytes.count)] = UInt8(truncatingIfNeeded: g.next()) }
            return bytes
        }
    }

    @Test func seededHostileInputGetsA4xxOrACloseAndTheProxyKeepsServing() async throws {
        try await withHTTPProxy(servers: 2, spec: { $0.idleTimeout = .seconds(2) }) { harness in
            var generator = Generator(state: 0x9E37_79B9_7F4A_7C15)
            var answered = 0, statuses: [String: Int] = [:]
            for _ in 0..<120 {
                let bytes = Self.input(&generator)
                let client = try await harness.rawClient()
                try? await client.send(bytes: bytes)
                // An answer, a close, or (for a request cut short) silence until we hang up.
                let text = try await client.wait(timeout: .milliseconds(300)) { text, closed in closed || text.contains("\r\n\r\n") }
                await client.close()
                if !text.isEmpty {
                    answered += 1
                    let status = String(text.prefix(12))
                    statuses[status, default: 0] += 1
                }
            }
            let unexpected = statuses.filter { status, _ in
                !(status.hasPrefix("HTTP/1.1 4") || status.hasPrefix("HTTP/1.1 2") || status.hasPrefix("HTTP/1.0 4"))
            }
            #expect(unexpected.isEmpty, "answers that are neither 4xx nor a hidden valid request's 2xx: \(statuses)")
            #expect(answered > 30, "\(statuses)")
            // Nobody else noticed.
            let client = try await harness.client()
            let fine = try await client.request("/id")
            #expect(fine.status == 200)
            await client.close()
            #expect(try await harness.inFlightSettles() == 0)
            let open = try await harness.openConnectionsSettle()
            #expect(open == 0)
        }
    }
}
