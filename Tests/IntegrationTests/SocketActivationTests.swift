import Foundation
import Testing

/// The control socket from systemd (FileDescriptorName=control), as musterd.socket passes it.
@Suite(.serialized) struct SocketActivationTests {
    @Test(.enabled(if: isRoot && FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-socket-activate")))
    func aControlSocketFromSystemdIsAdopted() async throws {
        try await DaemonHarness.with(services: ["web": "command = [\"/bin/sleep\", \"600\"]\n"]) { d in
            try FileManager.default.createDirectory(atPath: (d.socket as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            // systemd-socket-activate binds the Unix socket and passes it named "control"; it
            // starts musterd at the first connection (d.start's first `musterctl version`), which
            // waits in the socket's queue meanwhile. Through a shell: see ProxyTests for why.
            try await d.start(launcher: ["/bin/sh", "-c", "/usr/bin/systemd-socket-activate -l \(d.socket) --fdname=control \"$@\" & wait", "sh"])
            let boundBefore = try FileManager.default.attributesOfItem(atPath: d.socket)[.systemFileNumber] as? Int
            let up = await eventually(15) { try d.running("web", count: 1) }
            #expect(up)
            let status = d.ctl("status")
            #expect(status.code == 0, "\(status.stderr)")
            #expect(status.stdout.contains("web:0"))
            #expect(d.log.contains("control socket ready: the one systemd passed"), "\(d.log)")
            // musterd did not bind control_socket itself (that would unlink and replace the file).
            let boundAfter = try FileManager.default.attributesOfItem(atPath: d.socket)[.systemFileNumber] as? Int
            #expect(boundBefore == boundAfter)
            // musterd is the launcher shell's child, which the harness's cleanup does not reach.
            let shellPid = try #require(d.daemon?.processIdentifier)
            let children = (try? String(contentsOfFile: "/proc/\(shellPid)/task/\(shellPid)/children", encoding: .utf8)) ?? ""
            let firstChild = children.split(separator: " ").first.flatMap { Int32($0) }
            let daemonPid = try #require(firstChild, "no child: \(children)")
            #expect(d.ctl("shutdown").code == 0)
            let daemonExited = await eventually(30) { !alive(daemonPid) }
            #expect(daemonExited)
        }
    }
}
