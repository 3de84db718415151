import Glibc
import NIOCore

/// Bytes queued for one socket of a relay connection, written once the worker has handled its
/// batch of events: a response head and the start of its body, queued separately, still leave in
/// one `send`. Holds nothing (and no memory) while everything is written.
struct RelayOutbox {
    private var bytes: ByteBuffer?

    var isEmpty: Bool { bytes == nil }

    mutating func append(_ buffer: ByteBuffer) {
        guard buffer.readableBytes > 0 else { return }
        if bytes == nil {
            bytes = buffer
        } else {
            bytes!.writeImmutableBuffer(buffer)
        }
    }

    /// Writes as much as `fd` takes now. Returns 0, or the errno of a failure other than the
    /// socket being full.
    mutating func flush(to fd: Int32) -> Int32 {
        while let queued = bytes {
            let written = queued.withUnsafeReadableBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if written < 0 {
                switch errno {
                case EINTR: continue
                case EAGAIN, EWOULDBLOCK: return 0
                default: return errno
                }
            }
            if written == queued.readableBytes {
                bytes = nil
            } else {
                bytes!.moveReaderIndex(forwardBy: written)
            }
            return 0
        }
        return 0
    }

    mutating func removeAll() {
        bytes = nil
    }

    /// What is queued, taken out (for a connection that becomes a tunnel).
    mutating func take() -> ByteBuffer? {
        defer { bytes = nil }
        return bytes
    }
}
