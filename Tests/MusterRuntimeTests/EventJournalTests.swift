import Foundation
import MusterAPI
@testable import MusterRuntime
import Testing

/// events.log as the journal writes it: one JSON line per event, in order, and inside
/// `holdingWrites` the file waits for the hold to end while the ring has every event at once.
@Suite struct EventJournalTests {
    static func withStateDir(_ body: (String) throws -> Void) throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("muster-journal-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        try body(folder.path)
    }

    static func fileEvents(_ stateDir: String) throws -> [EventRecord] {
        guard let text = try? String(contentsOfFile: stateDir + "/events.log", encoding: .utf8) else { return [] }
        return try text.split(separator: "\n").map { try JSONDecoder().decode(EventRecord.self, from: Data($0.utf8)) }
    }

    static func event(_ n: Int) -> EventRecord {
        EventRecord(time: 1_765_100_000 + Double(n) / 8, kind: "started", service: "web", instance: "web:\(n)",
                    message: "started pid \(100 + n) on port \(40000 + n) \"quoted\" a/b", pid: Int32(100 + n))
    }

    @Test func eachEventIsALineOfItsOwnAtOnce() throws {
        try Self.withStateDir { dir in
            let journal = EventJournal(stateDir: dir)
            journal.record(Self.event(0))
            let afterOne = try Self.fileEvents(dir)
            #expect(afterOne == [Self.event(0)])
            journal.record(Self.event(1))
            let afterTwo = try Self.fileEvents(dir)
            #expect(afterTwo == [Self.event(0), Self.event(1)])
        }
    }

    @Test func aHoldWritesItsEventsWhenTheOutermostHoldEnds() throws {
        try Self.withStateDir { dir in
            let journal = EventJournal(stateDir: dir)
            journal.record(Self.event(0))
            var duringOuter: [EventRecord] = []
            var duringInner: [EventRecord] = []
            var ringDuring: [EventRecord] = []
            try journal.holdingWrites {
                journal.record(Self.event(1))
                try journal.holdingWrites {
                    journal.record(Self.event(2))
                    duringInner = try Self.fileEvents(dir)
                }
                journal.record(Self.event(3))
                duringOuter = try Self.fileEvents(dir)
                ringDuring = journal.recent()
            }
            let firstFour = (0...3).map(Self.event)
            #expect(duringInner == [Self.event(0)])
            #expect(duringOuter == [Self.event(0)])
            #expect(ringDuring == firstFour)
            let after = try Self.fileEvents(dir)
            #expect(after == firstFour)
            journal.record(Self.event(4))
            let afterMore = try Self.fileEvents(dir)
            #expect(afterMore == firstFour + [Self.event(4)])
        }
    }

    @Test func theFileHoldsTheHandWrittenLine() throws {
        try Self.withStateDir { dir in
            let journal = EventJournal(stateDir: dir)
            journal.record(Self.event(7))
            let text = try String(contentsOfFile: dir + "/events.log", encoding: .utf8)
            let expected = String(decoding: try #require(Self.event(7).jsonLine()), as: UTF8.self) + "\n"
            #expect(text == expected)
        }
    }
}
