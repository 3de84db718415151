import Foundation
import MusterAPI
import Testing

/// The control API against a client running as a user who is not allowed in. (schemathesis
/// against the live socket is scripts/api-fuzz, a phase of scripts/test.)
@Suite(.serialized) struct HostileClientTests {
    @Test(.enabled(if: isRoot && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv")))
    func aUserOutsideTheControlGroupIsRefused() async throws {
        try await DaemonHarness.with(services: ["worker": "command = [\"/bin/sleep\", \"1000\"]\n"]) { d in
            try await d.start()
            func asNobody(_ arguments: String...) -> DaemonHarness.Result {
                d.run("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", DaemonHarness.binDir + "/musterctl"] + arguments + ["--socket", d.socket])
            }
            // The socket's mode (0660, root and control_group) keeps nobody from connecting.
            let folder = (d.socket as NSString).deletingLastPathComponent
            chmod(d.directory.path, 0o755)
            chmod(folder, 0o755)
            let unreachable = asNobody("status")
            #expect(unreachable.code == 3, "\(unreachable)")
            #expect(unreachable.stderr.contains("ermission denied"), "\(unreachable.stderr)")
            // With the mode opened up, SO_PEERCRED on the connection still refuses, with 403.
            chmod(d.socket, 0o666)
            let refused = asNobody("status")
            #expect(refused.code == 1, "\(refused)")
            #expect(refused.stderr.contains("permission denied"), "\(refused.stderr)")
            let stop = asNobody("stop", "worker")
            #expect(stop.code == 1)
            let running = await eventually(10) { try d.running("worker", count: 1) }
            #expect(running, "nobody's stop changed nothing")
            let stopped = d.ctl("events").stdout.contains("worker:0  stopping")
            #expect(!stopped)
        }
    }
}
