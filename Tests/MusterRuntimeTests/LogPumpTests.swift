import Foundation
import Glibc
@testable import MusterRuntime
import Synchronization
import Testing

/// The log pump when the log folder cannot be written: each file's trouble is told once while it
/// lasts, across instance restarts (a fresh attach of the same path), and once when it is over.
@Suite struct LogPumpTests {
    final class Told: Sendable {
        let lines = Mutex<[String]>([])
        var all: [String] { lines.withLock { $0 } }
    }

    static func write(_ text: String, to pipes: LogPump.Pipes) {
        _ = text.withCString { Glibc.write(pipes.stdoutWrite, $0, strlen($0)) }
    }

    static func eventually(_ condition: () -> Bool) async -> Bool {
        for _ in 0..<200 {
            if condition() { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return condition()
    }

    @Test func aFailingFileIsToldOnceAcrossRestartsAndOnceWhenItWorksAgain() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("muster-logpump-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        // The service's log folder is a regular file: every open of chatter/0.log fails.
        let blocker = folder.appendingPathComponent("chatter").path
        FileManager.default.createFile(atPath: blocker, contents: Data())
        let told = Told()
        let pump = LogPump { trouble in told.lines.withLock { $0.append((trouble.failing ? "failing: " : "ok: ") + trouble.message) } }
        let path = blocker + "/0.log"

        // Three runs of the instance, each with pipes of its own, all while it cannot write.
        for run in 0..<3 {
            let pipes = try pump.attach(path: path, maxBytes: 1 << 20, backups: 1)
            Self.write("line from run \(run)\n", to: pipes)
            let sawIt = await Self.eventually { !told.all.isEmpty }
            #expect(sawIt)
            pipes.closeWriteEnds()
            try await Task.sleep(for: .milliseconds(50))
        }
        let whileFailing = told.all
        #expect(whileFailing.count == 1, "\(whileFailing)")
        let first = whileFailing.first ?? ""
        #expect(first.hasPrefix("failing: cannot open \(path)"), "\(first)")

        // Room again: the next run writes, and that is told once.
        try FileManager.default.removeItem(atPath: blocker)
        let pipes = try pump.attach(path: path, maxBytes: 1 << 20, backups: 1)
        Self.write("back\n", to: pipes)
        let recovered = await Self.eventually { told.all.count == 2 }
        #expect(recovered, "\(told.all)")
        let last = told.all.last ?? ""
        #expect(last == "ok: writing \(path) works again")
        let written = await Self.eventually { ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").contains("back") }
        #expect(written)
        pipes.closeWriteEnds()
    }
}
