import Foundation
import Testing

/// A datagram socket standing in for systemd's notify socket: what musterd says through
/// libsystemd's sd_notify when NOTIFY_SOCKET (and WATCHDOG_USEC) are in its environment.
final class NotifyListener: @unchecked Sendable {
    let fd: Int32
    let path: String
    private var received: [String] = []

    init(path: String) throws {
        self.path = path
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        try #require(fd >= 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in path.utf8.enumerated() { raw[i] = byte }
        }
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        try #require(rc == 0, "bind \(path): \(errno)")
    }

    /// Every datagram received so far, one notify message each.
    var messages: [String] {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            guard n > 0 else { break }
            received.append(String(decoding: buffer[0..<n], as: UTF8.self))
        }
        return received
    }

    deinit {
        close(fd)
        unlink(path)
    }
}

@Suite("musterd under a service manager's notify socket", .enabled(if: isRoot, "creates cgroups: needs root"), .serialized)
struct NotifyTests {
    @Test func readyStatusReloadingWatchdogAndStopping() async throws {
        try await DaemonHarness.with(services: ["sleeper": sleeper]) { d in
            let listener = try NotifyListener(path: d.directory.appendingPathComponent("notify.sock").path)
            try await d.start(environment: ["NOTIFY_SOCKET": listener.path, "WATCHDOG_USEC": "400000"])
            let sentReady = await eventually { listener.messages.contains("READY=1") }
            #expect(sentReady, "\(listener.messages)")
            let sentFirstStatus = await eventually { listener.messages.contains("STATUS=1 service, 2/2 instances running") }
            #expect(sentFirstStatus, "\(listener.messages)")
            // WatchdogSec: pings at half the interval, each after a heartbeat through the supervisor.
            let pingedWatchdog = await eventually(5) { listener.messages.filter { $0 == "WATCHDOG=1" }.count >= 3 }
            #expect(pingedWatchdog, "\(listener.messages)")
            try d.write(service: "second", sleeper)
            #expect(d.ctl("reload").code == 0)
            let sentReloadedStatus = await eventually { listener.messages.contains("STATUS=2 services, 4/4 instances running") }
            #expect(sentReloadedStatus, "\(listener.messages)")
            let afterReload = listener.messages
            let reloading = try #require(afterReload.firstIndex(of: "RELOADING=1"))
            #expect(afterReload[(reloading + 1)...].contains("READY=1"))
            #expect(d.ctl("shutdown").code == 0)
            #expect(await d.waitForExit(15) == 0)
            #expect(listener.messages.contains("STOPPING=1"))
        }
    }
}
