import MusterAPI
import MusterTop
import Testing

/// `musterctl top`'s pure parts: keys from bytes, what a key does, and what a refresh redraws.
@Suite struct TopLogicTests {
    static func instance(_ service: String, _ index: Int, ready: Bool = true) -> InstanceStatus {
        InstanceStatus(id: "\(service):\(index)", index: index, state: "running", pid: 100 + Int32(index), port: nil, restarts: 0,
                       uptimeSeconds: 5, cgroup: nil, reason: nil, cpuSeconds: nil, cpuPercent: 1, memoryBytes: 1 << 20, user: "nobody")
    }

    static func snapshot() -> TopSnapshot {
        var web = ServiceStatus(name: "web", desired: 2, started: true, instances: [instance("web", 0), instance("web", 1)], source: "web.toml")
        web.instances = web.instances.map { var i = $0; i.ready = true; return i }
        let worker = ServiceStatus(name: "worker", desired: 1, started: false, instances: [], source: "worker.toml")
        return TopSnapshot(status: StatusResponse(services: [web, worker]), time: 0)
    }

    @Test func arrowsEnterEscapeAndLettersAreDecoded() {
        let keys = TopKeyDecoder().keys(Array("\u{1B}[A\u{1B}[Bj\r\u{1B}[1;5C/\u{7F}\u{1B}".utf8))
        #expect(keys == [.up, .down, .character("j"), .enter, .character("/"), .backspace, .escape])
    }

    @Test func cursorMovesExpandsAndScalesThroughAPrompt() {
        let snapshot = Self.snapshot()
        var state = TopState()
        var rows = TopRows.rows(snapshot, expanded: state.expanded, filter: state.filter)
        #expect(rows.map(\.subject) == [.service("web"), .service("worker")])
        #expect(state.handle(.enter, rows: rows) == nil)
        rows = TopRows.rows(snapshot, expanded: state.expanded, filter: state.filter)
        #expect(rows.map(\.subject.target) == ["web", "web:0", "web:1", "worker"])
        _ = state.handle(.down, rows: rows)
        #expect(state.handle(.character("r"), rows: rows) == .restart("web:0"))
        _ = state.handle(.character("s"), rows: rows)
        for key in [TopKey.character("1"), .character("x"), .character("2")] { _ = state.handle(key, rows: rows) }
        #expect(state.handle(.enter, rows: rows) == .scale(service: "web", instances: 12))
        _ = state.handle(.character("s"), rows: rows)
        #expect(state.handle(.enter, rows: rows) == nil)
        #expect(state.message?.contains("not a count") ?? false)
        #expect(state.handle(.character("q"), rows: rows) == .quit)
    }

    @Test func filterNarrowsTheRowsAndEscapeClearsIt() {
        let snapshot = Self.snapshot()
        var state = TopState()
        let rows = TopRows.rows(snapshot, expanded: [], filter: "")
        for key in [TopKey.character("/"), .character("w"), .character("o")] { _ = state.handle(key, rows: rows) }
        #expect(TopRows.rows(snapshot, expanded: [], filter: state.filter).map(\.subject.target) == ["worker"])
        _ = state.handle(.escape, rows: rows)
        #expect(state.filter.isEmpty)
    }

    @Test func aFrameFitsTheTerminalAndOnlyChangedLinesAreRedrawn() {
        let snapshot = Self.snapshot()
        let state = TopState()
        let frame = TopFrame.render(snapshot, state, width: 80, height: 24)
        #expect(frame.count == 24)
        let widths = Set(frame.map(\.text.count))
        #expect(widths == [80])
        #expect(frame[2].text.hasPrefix("+ web") && frame[2].selected)
        #expect(frame[3].text.contains("stopped"))
        let first = ScreenDiff.update(from: nil, to: frame, colour: false)
        #expect(first.hasPrefix("\u{1B}[H\u{1B}[2J"))
        #expect(ScreenDiff.update(from: frame, to: frame, colour: true).isEmpty)
        var later = snapshot
        later.time = 61
        let next = TopFrame.render(later, state, width: 80, height: 24)
        let update = ScreenDiff.update(from: frame, to: next, colour: false)
        // Only the title (the clock) changed: one line, at row 1.
        #expect(update.hasPrefix("\u{1B}[1;1H") && update.split(separator: ";1H", omittingEmptySubsequences: false).count == 2, "\(update)")
    }

    @Test func anEjectedInstanceSaysSoWhereReadyIs() {
        var snapshot = Self.snapshot()
        snapshot.status.services[0].instances[1].ejectedUntil = 1_000
        let rows = TopRows.rows(snapshot, expanded: ["web"], filter: "")
        let cells = rows.filter { $0.subject == .instance(service: "web", id: "web:1") }.map { $0.cells[2] }
        #expect(cells == ["ejected"])
        let other = rows.filter { $0.subject == .instance(service: "web", id: "web:0") }.map { $0.cells[2] }
        #expect(other == ["yes"])
        let tones = rows.filter { $0.subject == .instance(service: "web", id: "web:1") }.map(\.tone)
        #expect(tones == [.warn])
    }

    @Test func figuresAreShort() {
        #expect(TopRows.latency(0.25) == "250ms")
        #expect(TopRows.latency(0.0025) == "2.5ms")
        #expect(TopRows.latency(2) == "2s")
        #expect(TopRows.number(12.345) == "12.3")
        #expect(TopRows.number(1234.5) == "1235")
    }
}
