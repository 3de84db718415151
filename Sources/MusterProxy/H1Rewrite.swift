import NIOCore

/// Builds the heads the fast path forwards, by copying runs of the received head's bytes around
/// the lines that have to go, and appending the proxy's own lines.
struct H1Rewrite {
    /// `x-forwarded-for: <ip>\r\nx-forwarded-proto: http\r\nforwarded: ...\r\n\r\n`: the tail of
    /// every request head from a client that sent no forwarding headers of its own.
    let plainTail: ByteBuffer
    let address: String
    let forwardedElement: String

    init(client: HTTPClientIdentity) {
        address = client.address
        forwardedElement = client.forwardedElement
        plainTail = ByteBuffer(
            string: "x-forwarded-for: \(client.address)\r\nx-forwarded-proto: http\r\nforwarded: \(client.forwardedElement)\r\n\r\n")
    }

    /// The request as the instance gets it: HTTP/1.1, hop-by-hop headers out (Upgrade kept when
    /// upgrading, with `connection: upgrade`), forwarding headers extended. `buffer`'s readable
    /// bytes start with the head.
    func request(_ head: H1RequestHead, in buffer: ByteBuffer, allocator: ByteBufferAllocator) -> ByteBuffer {
        var out = allocator.buffer(capacity: head.length + plainTail.readableBytes + 64)
        let facts = head.facts
        buffer.withUnsafeReadableBytes { bytes in
            if head.versionMinor == 1 {
                out.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[0..<facts.fieldsStart]))
            } else {
                out.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[0..<head.target.upperBound]))
                out.writeStaticString(" HTTP/1.1\r\n")
            }
            var drops = facts.drops
            if !head.isUpgrade && !facts.upgradeLines.isEmpty {
                drops += facts.upgradeLines
                drops.sort { $0.lowerBound < $1.lowerBound }
            }
            Self.copyFields(bytes, from: facts.fieldsStart, to: facts.fieldsEnd, dropping: drops, into: &out)
            if head.isUpgrade { out.writeStaticString("connection: upgrade\r\n") }
            if facts.xForwardedFor.isEmpty && facts.forwarded.isEmpty {
                var tail = plainTail
                out.writeBuffer(&tail)
                return
            }
            out.writeStaticString("x-forwarded-for: ")
            Self.join(bytes, facts.xForwardedFor, then: address, into: &out)
            out.writeStaticString("\r\nx-forwarded-proto: http\r\nforwarded: ")
            Self.join(bytes, facts.forwarded, then: forwardedElement, into: &out)
            out.writeStaticString("\r\n\r\n")
        }
        return out
    }

    /// The response as the client gets it: in the client's version, hop-by-hop headers out, the
    /// proxy's own connection management in. `dechunk`: the body goes out without its chunk
    /// framing (to an HTTP/1.0 client), so Transfer-Encoding goes too.
    static func response(
        _ head: H1ResponseHead, in buffer: ByteBuffer, clientMinor: Int, close: Bool, dechunk: Bool,
        allocator: ByteBufferAllocator, reserve: Int = 0
    ) -> ByteBuffer {
        var out = allocator.buffer(capacity: head.length + 32 + reserve)
        let facts = head.facts
        buffer.withUnsafeReadableBytes { bytes in
            out.writeStaticString(clientMinor == 0 ? "HTTP/1.0 " : "HTTP/1.1 ")
            out.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[head.statusStart..<facts.fieldsStart]))
            var drops = facts.drops
            var extra = false
            if head.status != 101 && !facts.upgradeLines.isEmpty {
                drops += facts.upgradeLines
                extra = true
            }
            if dechunk && !facts.transferEncodingLines.isEmpty {
                drops += facts.transferEncodingLines
                extra = true
            }
            if extra { drops.sort { $0.lowerBound < $1.lowerBound } }
            copyFields(bytes, from: facts.fieldsStart, to: facts.fieldsEnd, dropping: drops, into: &out)
            if head.status == 101 {
                out.writeStaticString("connection: upgrade\r\n")
            } else if head.status >= 200 {
                if close {
                    out.writeStaticString("connection: close\r\n")
                } else if clientMinor == 0 {
                    out.writeStaticString("connection: keep-alive\r\n")
                }
            }
            out.writeStaticString("\r\n")
        }
        return out
    }

    private static func copyFields(
        _ bytes: UnsafeRawBufferPointer, from start: Int, to end: Int, dropping drops: [Range<Int>], into out: inout ByteBuffer
    ) {
        var position = start
        for drop in drops where drop.lowerBound >= position {
            if drop.lowerBound > position {
                out.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[position..<drop.lowerBound]))
            }
            position = drop.upperBound
        }
        if end > position { out.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[position..<end])) }
    }

    private static func join(_ bytes: UnsafeRawBufferPointer, _ values: [Range<Int>], then last: String, into out: inout ByteBuffer) {
        for value in values where !value.isEmpty {
            out.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[value]))
            out.writeStaticString(", ")
        }
        out.writeString(last)
    }
}
