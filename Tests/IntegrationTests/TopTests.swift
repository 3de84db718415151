import Foundation
import MusterAPI
import Testing

/// `musterctl top` in a real terminal: tmux runs it in an 80×24 pane, send-keys types, and
/// capture-pane reads the screen. Each screen a test looks at is saved under the run's output
/// (MUSTER_TEST_OUTPUT, default .build/test-output/) so a failure can be seen as it was.
@Suite(.serialized) struct TopTests {
    static let services = [
        "web": "command = [\"/bin/sleep\", \"1000\"]\ninstances = 2\n[restart]\nstart_seconds = 0.2\n",
        "worker": "command = [\"/bin/sleep\", \"1000\"]\n[restart]\nstart_seconds = 0.2\n",
    ]

    static let hasTmux = FileManager.default.isExecutableFile(atPath: "/usr/bin/tmux")

    /// One tmux server of its own (`-L`), so no other tmux is touched, killed at the end.
    final class Pane {
        let server = "muster-top-\(UInt32.random(in: 0...UInt32.max))"
        let harness: DaemonHarness

        /// Runs `top` in the pane; when it ends the shell prints its exit code and whether the
        /// terminal is back in canonical mode with echo, then waits, so the pane can be read.
        init(_ harness: DaemonHarness) {
            self.harness = harness
            let script = "\(DaemonHarness.binDir)/musterctl top --socket \(harness.socket); echo \"top exited $?\"; "
                + "stty -a | tr ' ' '\\n' | grep -E -x -- '-?(icanon|echo)' | tr '\\n' ' '; echo; sleep 600"
            // Through Python's subprocess, which closes every other descriptor in the child: the
            // tmux server this starts would otherwise keep the write end of Foundation's output
            // pipe (inherited without close-on-exec), and reading the output would never end.
            let start = ["/usr/bin/tmux", "-L", server, "new-session", "-d", "-s", "top", "-x", "80", "-y", "24", "/bin/sh", "-c", script]
            harness.run("/usr/bin/python3", ["-c", "import subprocess, sys; subprocess.run(sys.argv[1:], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)"] + start)
        }

        @discardableResult
        func tmux(_ arguments: String...) -> DaemonHarness.Result { tmux(arguments) }

        @discardableResult
        func tmux(_ arguments: [String]) -> DaemonHarness.Result {
            harness.run("/usr/bin/tmux", ["-L", server] + arguments)
        }

        func screen() -> String { tmux("capture-pane", "-p", "-t", "top").stdout }

        func send(_ keys: String...) { tmux(["send-keys", "-t", "top"] + keys) }

        /// The pid of `musterctl top`: the pane's shell's child.
        func topPid() -> Int32? {
            let shell = tmux("list-panes", "-t", "top", "-F", "#{pane_pid}").stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            let child = harness.run("/usr/bin/pgrep", ["-P", shell, "-f", "musterctl top"]).stdout
            return Int32(child.split(separator: "\n").first ?? "")
        }

        func save(_ name: String) {
            let output = ProcessInfo.processInfo.environment["MUSTER_TEST_OUTPUT"]
                ?? URL(fileURLWithPath: DaemonHarness.binDir).deletingLastPathComponent().appendingPathComponent("test-output").path
            try? FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
            try? screen().write(toFile: "\(output)/top-\(name).txt", atomically: true, encoding: .utf8)
        }

        /// Kills the pane's process group first: a test run may inherit SIGHUP ignored, and then
        /// the pane's shell outlives kill-server's hangup (sleeping its 600 s) and so does tmux.
        func close() {
            for pid in tmux("list-panes", "-a", "-F", "#{pane_pid}").stdout.split(separator: "\n").compactMap({ Int32($0) }) {
                kill(-pid, SIGKILL)
                kill(pid, SIGKILL)
            }
            tmux("kill-server")
        }
    }

    @Test(.enabled(if: isRoot && hasTmux)) func rowsScaleThroughSAndQRestoresTheTerminal() async throws {
        try await DaemonHarness.with(services: Self.services) { d in
            try await d.start()
            let up = await eventually(15) { try d.running("web", count: 2) && d.running("worker", count: 1) }
            #expect(up)
            let pane = Pane(d)
            defer { pane.close() }

            let rows = await eventually(15) {
                let screen = pane.screen()
                return screen.contains("muster top") && screen.contains("+ web") && screen.contains("+ worker")
                    && screen.contains("2/2") && screen.contains("1/1")
            }
            pane.save("rows")
            #expect(rows, "top should show both services ready:\n\(pane.screen())")

            // The cursor starts on web (services sort by name): s, 3, Enter scales it.
            pane.send("s")
            let asked = await eventually(5) { pane.screen().contains("scale web to how many instances?") }
            #expect(asked, "\(pane.screen())")
            pane.send("3", "Enter")
            let scaled = await eventually(15) { try d.status().services.first { $0.name == "web" }?.desired == 3 }
            #expect(scaled, "s 3 Enter should scale web to 3")
            let shown = await eventually(15) { pane.screen().contains("3/3") }
            pane.save("scaled")
            #expect(shown, "\(pane.screen())")

            // Enter expands web into its instances.
            pane.send("Enter")
            let expanded = await eventually(5) { pane.screen().contains("web:2") && pane.screen().contains("pid ") }
            pane.save("expanded")
            #expect(expanded, "\(pane.screen())")

            // e opens the events pane: the scale is in it.
            pane.send("e")
            let events = await eventually(5) { pane.screen().contains("events (e closes)") && pane.screen().contains("musterctl scale") }
            pane.save("events")
            #expect(events, "\(pane.screen())")

            pane.send("q")
            // Until stty's line is out too (it prints "icanon echo" or "-icanon -echo"), not only top's exit.
            let restored = await eventually(10) { pane.screen().contains("top exited 0") && pane.screen().contains("icanon") }
            pane.save("after-q")
            let after = pane.screen()
            #expect(restored, "\(after)")
            #expect(!after.contains("muster top"), "the alternate screen should be gone:\n\(after)")
            #expect(after.contains("icanon echo"), "canonical mode and echo should be back:\n\(after)")
        }
    }

    @Test(.enabled(if: isRoot && hasTmux)) func sigtermRestoresTheTerminal() async throws {
        try await DaemonHarness.with(services: Self.services) { d in
            try await d.start()
            let pane = Pane(d)
            defer { pane.close() }
            let drawn = await eventually(15) { pane.screen().contains("+ web") }
            #expect(drawn, "\(pane.screen())")
            let pid = try #require(pane.topPid(), "no musterctl top in the pane")
            kill(pid, SIGTERM)
            // Until stty's line is out too (it prints "icanon echo" or "-icanon -echo"), not only top's exit.
            let restored = await eventually(10) { pane.screen().contains("top exited 143") && pane.screen().contains("icanon") }
            pane.save("after-sigterm")
            let after = pane.screen()
            #expect(restored, "\(after)")
            #expect(after.contains("icanon echo"), "\(after)")
        }
    }

    @Test(.enabled(if: isRoot)) func onceprintsOneFrameForScripts() async throws {
        try await DaemonHarness.with(services: Self.services) { d in
            try await d.start()
            let up = await eventually(15) { try d.running("web", count: 2) }
            #expect(up)
            let once = d.ctl("top", "--once")
            #expect(once.code == 0, "\(once.stderr)")
            let lines = once.stdout.split(separator: "\n").map(String.init)
            #expect(lines.first?.hasPrefix("muster top  2 services") ?? false, "\(once.stdout)")
            let header = lines.contains { $0.hasPrefix("NAME") && $0.contains("LOAD/TGT") && $0.contains("P99") }
            let web = lines.contains { $0.hasPrefix("- web") && $0.contains(" up ") && $0.contains("2/2") }
            let instance = lines.contains { $0.hasPrefix("    web:1") && $0.contains("pid ") }
            #expect(header && web && instance, "\(once.stdout)")
            #expect(!once.stdout.contains("\u{1B}"), "no escape codes into a pipe")
            // Without a terminal and without --once there is nothing to draw on: a usage error.
            let noTerminal = d.ctl("top")
            #expect(noTerminal.code == 2, "\(noTerminal)")
            #expect(noTerminal.stderr.contains("--once"))
        }
    }
}
