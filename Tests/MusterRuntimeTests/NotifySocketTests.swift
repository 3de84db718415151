import Glibc
import MusterCore
import MusterRuntime
import Synchronization
import Testing

/// The next message, or nil after `seconds` (the stream ends then: a timeout is a failure anyway).
func nextNotifyMessage(_ socket: NotifySocket, within seconds: Double = 10) async -> NotifyMessage? {
    await withTaskGroup(of: NotifyMessage?.self) { group in
        group.addTask {
            var messages = socket.messages.makeAsyncIterator()
            return await messages.next()
        }
        group.addTask {
            try? await Task.sleep(for: .seconds(seconds))
            return nil
        }
        let first = await group.next() ?? nil
        group.cancelAll()
        return first
    }
}

/// The first READY=1 among the next messages.
func nextReadyMessage(_ socket: NotifySocket) async -> NotifyMessage? {
    while let message = await nextNotifyMessage(socket) {
        if message.isReady { return message }
    }
    return nil
}

/// Sends one datagram to the Unix socket at `path`, optionally passing `descriptor` along (as
/// sd_notify_barrier passes its pipe). Returns sendmsg's result.
@discardableResult
func sendNotifyDatagram(_ text: String, to path: String, passing descriptor: Int32? = nil) -> Int {
    let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { return -1 }
    defer { close(fd) }
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        for (i, byte) in path.utf8.enumerated() { raw[i] = byte }
    }
    var payload = Array(text.utf8)
    let headerSize = MemoryLayout<cmsghdr>.size
    var control = [UInt64](repeating: 0, count: 4)  // 8-byte aligned, room for one cmsghdr + one int
    return payload.withUnsafeMutableBytes { bytes in
        var vector = iovec(iov_base: bytes.baseAddress, iov_len: bytes.count)
        return withUnsafeMutablePointer(to: &address) { addressPointer in
            withUnsafeMutablePointer(to: &vector) { vectorPointer in
                control.withUnsafeMutableBytes { controlBytes in
                    var header = msghdr()
                    header.msg_name = UnsafeMutableRawPointer(addressPointer)
                    header.msg_namelen = socklen_t(MemoryLayout<sockaddr_un>.size)
                    header.msg_iov = vectorPointer
                    header.msg_iovlen = 1
                    if let descriptor {
                        var cmsg = cmsghdr()
                        cmsg.cmsg_len = headerSize + 4
                        cmsg.cmsg_level = SOL_SOCKET
                        cmsg.cmsg_type = Int32(SCM_RIGHTS)
                        controlBytes.storeBytes(of: cmsg, as: cmsghdr.self)
                        controlBytes.storeBytes(of: descriptor, toByteOffset: headerSize, as: Int32.self)
                        header.msg_control = controlBytes.baseAddress
                        header.msg_controllen = (headerSize + 4 + 7) & ~7
                    }
                    return sendmsg(fd, &header, Int32(MSG_NOSIGNAL))
                }
            }
        }
    }
}

@Suite("The notify socket instances report readiness on")
struct NotifySocketTests {
    @Test func aDatagramSentInProcessArrivesParsedWithTheSenderPID() async throws {
        try await withHealthTempDirectory { directory in
            let socket = try NotifySocket(path: directory + "/n.sock", loop: healthTestLoop)
            defer { socket.close() }
            #expect(sendNotifyDatagram("READY=1\nSTATUS=Serving 4 workers\nMAINPID=4242\n", to: socket.path) > 0)
            let message = try #require(await nextNotifyMessage(socket))
            #expect(message.isReady)
            #expect(message.status == "Serving 4 workers")
            #expect(message.mainPID == 4242)
            #expect(message.senderPID == getpid())
            #expect(message.senderUID == geteuid())
        }
    }

    @Test(.enabled(if: access("/usr/bin/systemd-notify", X_OK) == 0, "needs systemd-notify"))
    func systemdNotifyReadyFromAShellScriptIsReceived() async throws {
        try await withHealthTempDirectory { directory in
            let socket = try NotifySocket(path: directory + "/n.sock", loop: healthTestLoop)
            defer { socket.close() }
            let exit = StatusBox()
            _ = try startHealthChild(["/bin/sh", "-c", "/usr/bin/systemd-notify --ready --status=warm; echo done"],
                                     extra: ["NOTIFY_SOCKET=\(socket.path)"]) { exit.set($0) }
            let message = try #require(await nextReadyMessage(socket), "no READY=1 arrived")
            #expect(message.status == "warm")
            #expect(message.senderPID != nil)
            // Newer systemd-notify waits for a barrier (a pipe passed along) to be closed: it must finish.
            let finished = await healthEventually { exit.get() != nil }
            #expect(finished, "systemd-notify did not finish (barrier never released?)")
            #expect(exit.get() == .exited(code: 0))
        }
    }

    @Test func aMessageFromAGrandchildOfTheInstanceIsItsOwn() async throws {
        try await withHealthTempDirectory { directory in
            let socket = try NotifySocket(path: directory + "/n.sock", loop: healthTestLoop)
            defer { socket.close() }
            let send = "import os, socket; socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b'READY=1', os.environ['NOTIFY_SOCKET'])"
            let handle = try startHealthChild(["/bin/sh", "-c", "python3 -c \"\(send)\"; echo done"],
                                              extra: ["NOTIFY_SOCKET=\(socket.path)"])
            let message = try #require(await nextReadyMessage(socket), "no READY=1 arrived")
            // Sent by python3, a child of the instance's shell: on a per-instance socket no pid
            // routing is needed to know whose it is.
            #expect(message.senderPID != nil && message.senderPID != handle.pid)
        }
    }

    @Test func descriptorsPassedWithAMessageAreClosed() async throws {
        try await withHealthTempDirectory { directory in
            let socket = try NotifySocket(path: directory + "/n.sock", loop: healthTestLoop)
            defer { socket.close() }
            var pipeEnds: [Int32] = [-1, -1]
            try #require(pipe(&pipeEnds) == 0)
            defer { close(pipeEnds[0]) }
            #expect(sendNotifyDatagram("BARRIER=1", to: socket.path, passing: pipeEnds[1]) > 0)
            close(pipeEnds[1])
            let message = try #require(await nextNotifyMessage(socket))
            #expect(message.fields == ["BARRIER": "1"])
            // EOF on the read end: the socket's copy of the write end is gone, so the sender's barrier is released.
            let released = await healthEventually(5) {
                var poller = pollfd(fd: pipeEnds[0], events: Int16(POLLIN), revents: 0)
                return poll(&poller, 1, 0) == 1 && (poller.revents & Int16(POLLHUP)) != 0
            }
            #expect(released)
        }
    }

    @Test func anOversizedDatagramIsDroppedAndTheNextStillArrives() async throws {
        try await withHealthTempDirectory { directory in
            let socket = try NotifySocket(path: directory + "/n.sock", loop: healthTestLoop)
            defer { socket.close() }
            #expect(sendNotifyDatagram("STATUS=" + String(repeating: "x", count: 5000), to: socket.path) > 0)
            #expect(sendNotifyDatagram("garbage without an equals sign", to: socket.path) > 0)
            #expect(sendNotifyDatagram("READY=1", to: socket.path) > 0)
            let message = try #require(await nextNotifyMessage(socket))
            #expect(message.fields == ["READY": "1"])
        }
    }

    @Test func closeRemovesTheSocketFileAndEndsTheStream() async throws {
        try await withHealthTempDirectory { directory in
            let path = directory + "/n.sock"
            let socket = try NotifySocket(path: path, loop: healthTestLoop)
            #expect(FileSystem.exists(path))
            socket.close()
            #expect(!FileSystem.exists(path))
            var messages = socket.messages.makeAsyncIterator()
            #expect(await messages.next() == nil)
            #expect(sendNotifyDatagram("READY=1", to: path) < 0)
            socket.close()
        }
    }

    @Test func aStaleSocketFileIsReplacedButAnythingElseIsRefused() async throws {
        try await withHealthTempDirectory { directory in
            let path = directory + "/n.sock"
            // Still open here, as if its daemon had crashed: the new socket takes the path over.
            let first = try NotifySocket(path: path, loop: healthTestLoop)
            let second = try NotifySocket(path: path, loop: healthTestLoop)
            defer { second.close() }
            #expect(sendNotifyDatagram("READY=1", to: path) > 0)
            #expect(await nextNotifyMessage(second)?.isReady == true)
            first.close()
            #expect(FileSystem.exists(path), "closing the old socket removed the new one's file")

            let regular = directory + "/file"
            try FileSystem.writeAtomically(Array("x".utf8), to: regular)
            // No closure inside the macro here (Swift 6.3.1 mixes up such closures inside a closure):
            // NotifySocket.init throws only NotifySocket.Failure (typed throws).
            var refusedRegularFile = false
            do {
                _ = try NotifySocket(path: regular, loop: healthTestLoop)
            } catch {
                refusedRegularFile = true
            }
            #expect(refusedRegularFile, "a regular file at the socket path must be refused, not replaced")
            #expect(FileSystem.exists(regular))
        }
    }

    @Test func aPathTooLongForSunPathFailsClearly() throws {
        let path = "/tmp/" + String(repeating: "n", count: 120) + ".sock"
        do {
            _ = try NotifySocket(path: path, loop: healthTestLoop)
            Issue.record("a \(path.utf8.count)-byte path should be refused")
        } catch {
            #expect(error.description.contains("at most 107"), "\(error.description)")
        }
        #expect(NotifySocket.maxPathLength == 107)
    }

    @Test func parsingFollowsSystemdRules() {
        let message = NotifyMessage.parse(Array("READY=1\nno equals\n=empty key\nSTATUS=a=b\nSTATUS=later\nMAINPID=0\n\n".utf8))
        #expect(message?.fields == ["READY": "1", "STATUS": "later", "MAINPID": "0"])
        #expect(message?.mainPID == nil, "MAINPID=0 is not a pid")
        #expect(message?.isStopping == false)
        #expect(NotifyMessage.parse(Array("STOPPING=1".utf8))?.isStopping == true)
        #expect(NotifyMessage.parse(Array("WATCHDOG=1".utf8))?.isWatchdogPing == true)
        #expect(NotifyMessage.parse(Array("just text\n".utf8)) == nil)
    }
}

/// An exit status set on the reaper's thread and read by the test.
final class StatusBox: Sendable {
    private let value = Mutex<MusterCore.ExitStatus?>(nil)
    func set(_ status: MusterCore.ExitStatus) { value.withLock { $0 = status } }
    func get() -> MusterCore.ExitStatus? { value.withLock { $0 } }
}
