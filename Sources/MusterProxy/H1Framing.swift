import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// A byte-level HTTP/1.1 framer for the proxy's fast path: heads are scanned in place (never
// decoded into Strings) and bodies are tracked, not re-encoded. Pure value types, fed ByteBuffers.
//
// Line endings: CRLF only. A bare LF anywhere in a head or in chunk framing is rejected (the
// proxy answers 400 to a client, and treats an instance as broken), so a request is never read
// one way here and another way by the instance behind.

enum H1FramingError: Error, Equatable {
    /// Not HTTP/1.x as this proxy accepts it.
    case malformed
    /// The header block is over the limit.
    case tooLarge
}

private let CR: UInt8 = 0x0D
private let LF: UInt8 = 0x0A
private let SP: UInt8 = 0x20
private let HTAB: UInt8 = 0x09

/// RFC 9110 tchar.
@inline(__always)
private func isTokenChar(_ b: UInt8) -> Bool {
    switch b {
    case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
        return true
    case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"), UInt8(ascii: "'"),
        UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "^"), UInt8(ascii: "_"),
        UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
        return true
    default:
        return false
    }
}

/// Field-value octets: VCHAR, obs-text, SP, HTAB.
@inline(__always)
private func isFieldValueChar(_ b: UInt8) -> Bool {
    b == HTAB || (b >= SP && b != 0x7F)
}

@inline(__always)
private func lower(_ b: UInt8) -> UInt8 {
    (b >= 0x41 && b <= 0x5A) ? b | 0x20 : b
}

/// `bytes[start..<start+count]` equals the lowercase ASCII `literal`, ignoring case.
@inline(__always)
private func equalsIgnoringCase(_ bytes: UnsafeRawBufferPointer, _ start: Int, _ count: Int, _ literal: StaticString) -> Bool {
    guard count == literal.utf8CodeUnitCount else { return false }
    let other = literal.utf8Start
    for i in 0..<count where lower(bytes[start + i]) != other[i] { return false }
    return true
}

// MARK: Finding the end of a head

/// Finds where a head ends (`\r\n\r\n`) in bytes that may arrive in pieces: each call scans only
/// what it has not seen before. Rejects a bare LF as soon as it arrives, and a head growing over
/// `limit` bytes.
struct H1HeadFinder {
    let limit: Int
    /// Bytes from the buffer's reader index already scanned.
    private(set) var scanned = 0

    init(limit: Int) {
        self.limit = limit
    }

    mutating func reset() {
        scanned = 0
    }

    /// The head's length (final CRLFCRLF included), or nil until more bytes arrive.
    mutating func find(in buffer: ByteBuffer) throws(H1FramingError) -> Int? {
        let result: Result<Int?, H1FramingError> = buffer.withUnsafeReadableBytes { bytes in
            var index = scanned
            let count = bytes.count
            guard let base = bytes.baseAddress else { return .success(nil) }
            while index < count {
                guard let hit = memchr(base + index, Int32(LF), count - index) else {
                    index = count
                    break
                }
                let p = base.distance(to: UnsafeRawPointer(hit))
                if p == 0 || bytes[p - 1] != CR { return .failure(.malformed) }
                if p >= 3 && bytes[p - 2] == LF {
                    let end = p + 1
                    return end > limit ? .failure(.tooLarge) : .success(end)
                }
                index = p + 1
            }
            scanned = index
            return count > limit ? .failure(.tooLarge) : .success(nil)
        }
        return try result.get()
    }
}

// MARK: Header fields

/// What the proxy needs from a header block, found in one pass. Ranges are byte offsets into the
/// head. The common request (none of the headers below) fills no arrays.
struct H1HeaderFacts {
    var contentLength: Int?
    /// Transfer-Encoding was present.
    var hasTransferEncoding = false
    /// Its last coding is `chunked` (and, for requests, it is the only one).
    var chunked = false
    /// A Transfer-Encoding a request may not have (anything but a lone `chunked`).
    var badRequestTransferEncoding = false
    var connectionClose = false
    var connectionKeepAlive = false
    var connectionUpgrade = false
    var hasUpgrade = false
    var hasHost = false
    var expectContinue = false
    /// Header lines (CRLF included) to leave out when forwarding, ascending.
    var drops: [Range<Int>] = []
    /// Values of X-Forwarded-For and Forwarded, to be extended.
    var xForwardedFor: [Range<Int>] = []
    var forwarded: [Range<Int>] = []
    /// Upgrade header lines, dropped unless the message upgrades.
    var upgradeLines: [Range<Int>] = []
    /// Transfer-Encoding lines (dropped for HTTP/1.0 clients, whose body is sent de-chunked).
    var transferEncodingLines: [Range<Int>] = []
    /// Where the first header line starts (just past the start line).
    var fieldsStart = 0
    /// Where the blank line ending the head starts.
    var fieldsEnd = 0

    /// Parses the header lines of `bytes[start..<end-2]` (`end` is the head's length, the final
    /// blank line included).
    static func parse(_ bytes: UnsafeRawBufferPointer, from start: Int, headEnd end: Int, isRequest: Bool) throws(H1FramingError) -> H1HeaderFacts {
        var facts = H1HeaderFacts()
        facts.fieldsStart = start
        facts.fieldsEnd = end - 2
        var named: [Range<Int>] = []
        var line = start
        var hostCount = 0
        while line < end - 2 {
            // Name.
            let first = bytes[line]
            if first == SP || first == HTAB { throw .malformed }  // obs-fold
            var i = line
            while isTokenChar(bytes[i]) { i += 1 }
            let nameLength = i - line
            if nameLength == 0 || bytes[i] != UInt8(ascii: ":") { throw .malformed }
            i += 1
            while bytes[i] == SP || bytes[i] == HTAB { i += 1 }
            let valueStart = i
            while bytes[i] != CR {
                if !isFieldValueChar(bytes[i]) { throw .malformed }
                i += 1
            }
            // The finder saw a LF after every CR it looked at; make sure of this one.
            if bytes[i + 1] != LF { throw .malformed }
            var valueEnd = i
            while valueEnd > valueStart && (bytes[valueEnd - 1] == SP || bytes[valueEnd - 1] == HTAB) { valueEnd -= 1 }
            let lineEnd = i + 2
            let lineRange = line..<lineEnd
            let value = valueStart..<valueEnd

            switch nameLength {
            case 2:
                if equalsIgnoringCase(bytes, line, 2, "te") { facts.drops.append(lineRange) }
            case 4:
                if equalsIgnoringCase(bytes, line, 4, "host") {
                    hostCount += 1
                    facts.hasHost = true
                }
            case 6:
                if equalsIgnoringCase(bytes, line, 6, "expect") && equalsIgnoringCase(bytes, value.lowerBound, value.count, "100-continue") {
                    facts.expectContinue = true
                }
            case 7:
                if equalsIgnoringCase(bytes, line, 7, "upgrade") {
                    facts.hasUpgrade = true
                    facts.upgradeLines.append(lineRange)
                } else if equalsIgnoringCase(bytes, line, 7, "trailer") {
                    facts.drops.append(lineRange)
                }
            case 9:
                if isRequest && equalsIgnoringCase(bytes, line, 9, "forwarded") {
                    facts.forwarded.append(value)
                    facts.drops.append(lineRange)
                }
            case 10:
                if equalsIgnoringCase(bytes, line, 10, "connection") {
                    facts.drops.append(lineRange)
                    Self.connectionTokens(bytes, value, into: &facts, named: &named)
                } else if equalsIgnoringCase(bytes, line, 10, "keep-alive") {
                    facts.drops.append(lineRange)
                }
            case 14:
                if equalsIgnoringCase(bytes, line, 14, "content-length") {
                    let length = try Self.contentLength(bytes, value)
                    if let existing = facts.contentLength {
                        if existing != length { throw .malformed }
                        // The same length again: forward it once.
                        facts.drops.append(lineRange)
                    }
                    facts.contentLength = length
                }
            case 15:
                if isRequest && equalsIgnoringCase(bytes, line, 15, "x-forwarded-for") {
                    facts.xForwardedFor.append(value)
                    facts.drops.append(lineRange)
                }
            case 16:
                if equalsIgnoringCase(bytes, line, 16, "proxy-connection") { facts.drops.append(lineRange) }
            case 17:
                if equalsIgnoringCase(bytes, line, 17, "transfer-encoding") {
                    if isRequest && facts.hasTransferEncoding { facts.badRequestTransferEncoding = true }
                    facts.hasTransferEncoding = true
                    facts.transferEncodingLines.append(lineRange)
                    Self.transferCodings(bytes, value, isRequest: isRequest, into: &facts)
                } else if isRequest && equalsIgnoringCase(bytes, line, 17, "x-forwarded-proto") {
                    facts.drops.append(lineRange)
                }
            default:
                break
            }
            line = lineEnd
        }
        if isRequest && hostCount > 1 { throw .malformed }
        if !named.isEmpty { facts.dropNamed(named, bytes) }
        return facts
    }

    /// Content-Length: digits only, at most 18 of them.
    private static func contentLength(_ bytes: UnsafeRawBufferPointer, _ value: Range<Int>) throws(H1FramingError) -> Int {
        if value.isEmpty || value.count > 18 { throw .malformed }
        var length = 0
        for i in value {
            let b = bytes[i]
            guard b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") else { throw .malformed }
            length = length * 10 + Int(b - UInt8(ascii: "0"))
        }
        return length
    }

    /// Comma-separated tokens of `value`, trimmed, empty ones skipped.
    private static func forEachToken(_ bytes: UnsafeRawBufferPointer, _ value: Range<Int>, _ body: (Range<Int>) -> Void) {
        var i = value.lowerBound
        while i < value.upperBound {
            while i < value.upperBound && (bytes[i] == SP || bytes[i] == HTAB || bytes[i] == UInt8(ascii: ",")) { i += 1 }
            let start = i
            while i < value.upperBound && bytes[i] != UInt8(ascii: ",") { i += 1 }
            var end = i
            while end > start && (bytes[end - 1] == SP || bytes[end - 1] == HTAB) { end -= 1 }
            if end > start { body(start..<end) }
        }
    }

    private static func connectionTokens(_ bytes: UnsafeRawBufferPointer, _ value: Range<Int>, into facts: inout H1HeaderFacts, named: inout [Range<Int>]) {
        forEachToken(bytes, value) { token in
            if equalsIgnoringCase(bytes, token.lowerBound, token.count, "close") {
                facts.connectionClose = true
            } else if equalsIgnoringCase(bytes, token.lowerBound, token.count, "keep-alive") {
                facts.connectionKeepAlive = true
            } else if equalsIgnoringCase(bytes, token.lowerBound, token.count, "upgrade") {
                facts.connectionUpgrade = true
            } else {
                named.append(token)
            }
        }
    }

    private static func transferCodings(_ bytes: UnsafeRawBufferPointer, _ value: Range<Int>, isRequest: Bool, into facts: inout H1HeaderFacts) {
        var count = 0
        var lastIsChunked = false
        forEachToken(bytes, value) { token in
            count += 1
            lastIsChunked = equalsIgnoringCase(bytes, token.lowerBound, token.count, "chunked")
        }
        facts.chunked = lastIsChunked
        if isRequest && !(count == 1 && lastIsChunked) { facts.badRequestTransferEncoding = true }
    }

    /// Drops the header lines `Connection` names (RFC 9110 §7.6.1). Rare: a second pass.
    private mutating func dropNamed(_ named: [Range<Int>], _ bytes: UnsafeRawBufferPointer) {
        var line = fieldsStart
        while line < fieldsEnd {
            var colon = line
            while bytes[colon] != UInt8(ascii: ":") { colon += 1 }
            var lineEnd = colon
            while bytes[lineEnd] != LF { lineEnd += 1 }
            lineEnd += 1
            let nameLength = colon - line
            let matches = named.contains { token in
                token.count == nameLength && (0..<nameLength).allSatisfy { lower(bytes[line + $0]) == lower(bytes[token.lowerBound + $0]) }
            }
            // Framing headers stay whatever the client says: the proxy reads the body by them.
            if matches && !Self.isFraming(bytes, line, nameLength) && !drops.contains(line..<lineEnd) {
                drops.append(line..<lineEnd)
            }
            line = lineEnd
        }
        drops.sort { $0.lowerBound < $1.lowerBound }
    }

    private static func isFraming(_ bytes: UnsafeRawBufferPointer, _ start: Int, _ count: Int) -> Bool {
        equalsIgnoringCase(bytes, start, count, "content-length") || equalsIgnoringCase(bytes, start, count, "transfer-encoding")
            || equalsIgnoringCase(bytes, start, count, "host")
    }
}

// MARK: Request heads

enum H1Method: Equatable {
    case get, head, post, put, delete, options, trace, patch, connect, other

    var isIdempotent: Bool {
        switch self {
        case .get, .head, .put, .delete, .options, .trace: return true
        default: return false
        }
    }
}

/// A request head, scanned.
struct H1RequestHead {
    var method: H1Method
    /// `bytes[0..<methodEnd]` is the method; `target` the request target.
    var methodEnd: Int
    var target: Range<Int>
    var versionMinor: Int
    var facts: H1HeaderFacts
    /// The head's length, the blank line included.
    var length: Int

    /// The request body's framing (RFC 9112 §6.3): chunked, or a length (0 when neither is given).
    var bodyLength: Int? { facts.chunked ? nil : (facts.contentLength ?? 0) }
    var hasBody: Bool { facts.chunked || (facts.contentLength ?? 0) > 0 }

    /// The client keeps the connection open after this request.
    var keepAlive: Bool {
        if facts.connectionClose { return false }
        return versionMinor >= 1 || facts.connectionKeepAlive
    }

    /// `Connection: upgrade` plus an `Upgrade` header.
    var isUpgrade: Bool { facts.connectionUpgrade && facts.hasUpgrade }

    /// Scans the complete head at the start of `buffer` (`length` from `H1HeadFinder`). Rejects what
    /// could be read two ways: both Content-Length and Transfer-Encoding, differing lengths, any
    /// Transfer-Encoding but `chunked`, obs-fold, bad characters.
    static func parse(_ buffer: ByteBuffer, length: Int) throws(H1FramingError) -> H1RequestHead {
        let result: Result<H1RequestHead, H1FramingError> = buffer.withUnsafeReadableBytes { bytes in
            do throws(H1FramingError) {
                return .success(try parse(bytes, length: length))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    static func parse(_ bytes: UnsafeRawBufferPointer, length: Int) throws(H1FramingError) -> H1RequestHead {
        guard length >= 4, length <= bytes.count else { throw .malformed }
        var i = 0
        while isTokenChar(bytes[i]) { i += 1 }
        let methodEnd = i
        guard methodEnd > 0, bytes[i] == SP else { throw .malformed }
        i += 1
        let targetStart = i
        while bytes[i] > SP && bytes[i] < 0x7F { i += 1 }
        let target = targetStart..<i
        guard !target.isEmpty, bytes[i] == SP else { throw .malformed }
        i += 1
        guard i + 10 <= length, memcmp(bytes.baseAddress! + i, "HTTP/1.", 7) == 0 else { throw .malformed }
        let minor = bytes[i + 7]
        guard minor == UInt8(ascii: "0") || minor == UInt8(ascii: "1"), bytes[i + 8] == CR, bytes[i + 9] == LF else { throw .malformed }
        let facts = try H1HeaderFacts.parse(bytes, from: i + 10, headEnd: length, isRequest: true)
        if facts.hasTransferEncoding && (facts.contentLength != nil || facts.badRequestTransferEncoding) { throw .malformed }
        return H1RequestHead(
            method: method(bytes, methodEnd), methodEnd: methodEnd, target: target,
            versionMinor: Int(minor - UInt8(ascii: "0")), facts: facts, length: length)
    }

    private static func method(_ bytes: UnsafeRawBufferPointer, _ count: Int) -> H1Method {
        // Methods are case-sensitive.
        func exactly(_ literal: StaticString) -> Bool {
            count == literal.utf8CodeUnitCount && memcmp(bytes.baseAddress!, literal.utf8Start, count) == 0
        }
        switch count {
        case 3: return exactly("GET") ? .get : exactly("PUT") ? .put : .other
        case 4: return exactly("HEAD") ? .head : exactly("POST") ? .post : .other
        case 5: return exactly("PATCH") ? .patch : exactly("TRACE") ? .trace : .other
        case 6: return exactly("DELETE") ? .delete : .other
        case 7: return exactly("OPTIONS") ? .options : exactly("CONNECT") ? .connect : .other
        default: return .other
        }
    }
}

// MARK: Response heads

/// A response head, scanned.
struct H1ResponseHead {
    var versionMinor: Int
    var status: Int
    /// Where the status code starts in the status line: the line from here on is forwarded as is.
    var statusStart: Int
    var facts: H1HeaderFacts
    var length: Int

    /// The instance keeps the connection open after this response.
    var keepAlive: Bool {
        if facts.connectionClose { return false }
        return versionMinor >= 1 || facts.connectionKeepAlive
    }

    static func parse(_ buffer: ByteBuffer, length: Int) throws(H1FramingError) -> H1ResponseHead {
        let result: Result<H1ResponseHead, H1FramingError> = buffer.withUnsafeReadableBytes { bytes in
            do throws(H1FramingError) {
                return .success(try parse(bytes, length: length))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    static func parse(_ bytes: UnsafeRawBufferPointer, length: Int) throws(H1FramingError) -> H1ResponseHead {
        guard length >= 16, length <= bytes.count, memcmp(bytes.baseAddress!, "HTTP/1.", 7) == 0 else { throw .malformed }
        let minor = bytes[7]
        guard minor == UInt8(ascii: "0") || minor == UInt8(ascii: "1"), bytes[8] == SP else { throw .malformed }
        var status = 0
        for i in 9..<12 {
            let b = bytes[i]
            guard b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") else { throw .malformed }
            status = status * 10 + Int(b - UInt8(ascii: "0"))
        }
        guard status >= 100 else { throw .malformed }
        var i = 12
        if bytes[i] == SP {
            i += 1
            while bytes[i] != CR {
                guard isFieldValueChar(bytes[i]) else { throw .malformed }
                i += 1
            }
        }
        guard bytes[i] == CR, bytes[i + 1] == LF else { throw .malformed }
        let facts = try H1HeaderFacts.parse(bytes, from: i + 2, headEnd: length, isRequest: false)
        // Both framings at once might be response splitting (RFC 9112 §6.3): refused.
        if facts.hasTransferEncoding && facts.contentLength != nil { throw .malformed }
        return H1ResponseHead(versionMinor: Int(minor - UInt8(ascii: "0")), status: status, statusStart: 9, facts: facts, length: length)
    }

    /// How the body after this head is delimited, for a request that was (or was not) HEAD.
    func bodyFraming(requestWasHEAD: Bool) -> H1BodyFramer {
        if requestWasHEAD || status < 200 || status == 204 || status == 304 { return H1BodyFramer(length: 0) }
        if facts.hasTransferEncoding { return facts.chunked ? .chunked() : .untilClose() }
        if let length = facts.contentLength { return H1BodyFramer(length: length) }
        return .untilClose()
    }
}

// MARK: Bodies

/// Where a body ends: a length counted down, chunk framing followed byte by byte (sizes,
/// extensions, data, trailers), or the connection's close. Bytes are only looked at, never
/// rewritten.
struct H1BodyFramer: Equatable {
    enum State: Equatable {
        case length(remaining: Int)
        case untilClose
        /// Hex digits of a chunk size so far.
        case size(value: Int, digits: Int)
        /// Whitespace after the size, before `;` or CR.
        case sizeSpace(value: Int)
        /// In a chunk extension.
        case ext(value: Int, bytes: Int)
        /// CR of the size line seen.
        case sizeLF(value: Int)
        case data(remaining: Int)
        case dataCR
        case dataLF
        /// Start of a trailer line, or of the final blank line.
        case trailerStart(total: Int)
        case trailer(total: Int)
        case trailerLF(total: Int)
        case finalLF
        case done
    }

    private(set) var state: State
    /// Bounds on framing that carries no data.
    static let maxExtensionBytes = 4096
    static let maxTrailerBytes = 64 * 1024

    init(length: Int) {
        state = length == 0 ? .done : .length(remaining: length)
    }

    private init(state: State) {
        self.state = state
    }

    static func chunked() -> H1BodyFramer { H1BodyFramer(state: .size(value: 0, digits: 0)) }
    static func untilClose() -> H1BodyFramer { H1BodyFramer(state: .untilClose) }

    var isComplete: Bool { state == .done }
    var isChunked: Bool {
        switch state {
        case .length, .untilClose: return false
        case .done: return false
        default: return true
        }
    }
    var isUntilClose: Bool { state == .untilClose }

    /// Looks at `buffer`'s readable bytes (its reader index does not move) and returns how many of
    /// them belong to this body; fewer than all only when the body ends inside. `data`, when given,
    /// gets the payload without the chunk framing.
    mutating func advance(over buffer: ByteBuffer, data: ((ByteBuffer) -> Void)? = nil) throws(H1FramingError) -> Int {
        let available = buffer.readableBytes
        switch state {
        case .done:
            return 0
        case .untilClose:
            if let data, available > 0 { data(buffer) }
            return available
        case .length(let remaining):
            let take = min(remaining, available)
            state = take == remaining ? .done : .length(remaining: remaining - take)
            if let data, take > 0 { data(buffer.getSlice(at: buffer.readerIndex, length: take)!) }
            return take
        default:
            break
        }
        var state = self.state
        let result: Result<Int, H1FramingError> = buffer.withUnsafeReadableBytes { bytes in
            var i = 0
            let count = bytes.count
            while i < count {
                let b = bytes[i]
                switch state {
                case .size(let value, let digits):
                    if let digit = hexValue(b) {
                        guard digits < 15 else { return .failure(.malformed) }
                        state = .size(value: value << 4 | digit, digits: digits + 1)
                    } else if digits == 0 {
                        return .failure(.malformed)
                    } else if b == CR {
                        state = .sizeLF(value: value)
                    } else if b == UInt8(ascii: ";") {
                        state = .ext(value: value, bytes: 0)
                    } else if b == SP || b == HTAB {
                        state = .sizeSpace(value: value)
                    } else {
                        return .failure(.malformed)
                    }
                    i += 1
                case .sizeSpace(let value):
                    if b == CR {
                        state = .sizeLF(value: value)
                    } else if b == UInt8(ascii: ";") {
                        state = .ext(value: value, bytes: 0)
                    } else if b != SP && b != HTAB {
                        return .failure(.malformed)
                    }
                    i += 1
                case .ext(let value, let seen):
                    if b == CR {
                        state = .sizeLF(value: value)
                    } else if !isFieldValueChar(b) || seen >= Self.maxExtensionBytes {
                        return .failure(.malformed)
                    } else {
                        state = .ext(value: value, bytes: seen + 1)
                    }
                    i += 1
                case .sizeLF(let value):
                    guard b == LF else { return .failure(.malformed) }
                    state = value == 0 ? .trailerStart(total: 0) : .data(remaining: value)
                    i += 1
                case .data(let remaining):
                    let take = min(remaining, count - i)
                    if let data { data(buffer.getSlice(at: buffer.readerIndex + i, length: take)!) }
                    i += take
                    state = take == remaining ? .dataCR : .data(remaining: remaining - take)
                case .dataCR:
                    guard b == CR else { return .failure(.malformed) }
                    state = .dataLF
                    i += 1
                case .dataLF:
                    guard b == LF else { return .failure(.malformed) }
                    state = .size(value: 0, digits: 0)
                    i += 1
                case .trailerStart(let total):
                    if b == CR {
                        state = .finalLF
                    } else if b == SP || b == HTAB || !isTokenChar(b) {
                        // obs-fold, or not a field name.
                        return .failure(.malformed)
                    } else {
                        state = .trailer(total: total + 1)
                    }
                    i += 1
                case .trailer(let total):
                    guard total < Self.maxTrailerBytes else { return .failure(.malformed) }
                    if b == CR {
                        state = .trailerLF(total: total + 1)
                    } else if !isFieldValueChar(b) {
                        return .failure(.malformed)
                    } else {
                        state = .trailer(total: total + 1)
                    }
                    i += 1
                case .trailerLF(let total):
                    guard b == LF else { return .failure(.malformed) }
                    state = .trailerStart(total: total + 1)
                    i += 1
                case .finalLF:
                    guard b == LF else { return .failure(.malformed) }
                    state = .done
                    return .success(i + 1)
                case .done, .length, .untilClose:
                    return .success(i)
                }
            }
            return .success(i)
        }
        self.state = state
        return try result.get()
    }
}

@inline(__always)
private func hexValue(_ b: UInt8) -> Int? {
    switch b {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): return Int(b - UInt8(ascii: "0"))
    case UInt8(ascii: "a")...UInt8(ascii: "f"): return Int(b - UInt8(ascii: "a") + 10)
    case UInt8(ascii: "A")...UInt8(ascii: "F"): return Int(b - UInt8(ascii: "A") + 10)
    default: return nil
    }
}
