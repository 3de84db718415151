import MusterProxy
import NIOCore
import NIOPosix
import Testing

@Suite struct BackendSetTests {
    private func backends(_ count: Int) throws -> [Backend] {
        try (0..<count).map { index in
            Backend(service: "web", index: index, generation: 1, address: try SocketAddress(ipAddress: "127.0.0.1", port: 20000 + index))
        }
    }

    @Test func roundRobinSpreadsEvenly() throws {
        let set = BackendSet()
        set.setReady(try backends(3))
        var hits = [0, 0, 0]
        for _ in 0..<12 { hits[set.next()!.index] += 1 }
        #expect(hits == [4, 4, 4])
    }

    @Test func skipsExcludedInstances() throws {
        let set = BackendSet()
        let all = try backends(3)
        set.setReady(all)
        for _ in 0..<6 { #expect(set.next(excluding: [all[1]])?.index != 1) }
        #expect(set.next(excluding: all) == nil)
    }

    @Test func waitingRequestIsHandedTheFirstReadyInstance() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let set = BackendSet()
        let waiting = set.waitForReady(on: group.next(), timeout: .seconds(5))
        #expect(set.queued.load(ordering: .relaxed) == 1)
        set.setReady(try backends(1))
        let backend = try await waiting.get()
        #expect(backend.index == 0)
        #expect(set.queued.load(ordering: .relaxed) == 0)
        try await group.shutdownGracefully()
    }

    @Test func waitingRequestTimesOut() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let set = BackendSet()
        await #expect(throws: ProxyError.queueTimeout) {
            try await set.waitForReady(on: group.next(), timeout: .milliseconds(50)).get()
        }
        #expect(set.queued.load(ordering: .relaxed) == 0)
        try await group.shutdownGracefully()
    }
}

@Suite struct CanaryWeightTests {
    private func backends(_ count: Int, service: String) throws -> [Backend] {
        try (0..<count).map { index in
            Backend(service: service, index: index, generation: 1, address: try SocketAddress(ipAddress: "127.0.0.1", port: 21000 + index))
        }
    }

    @Test func canaryGetsExactlyItsShareSpreadEvenly() throws {
        let set = BackendSet()
        set.setReady(try backends(3, service: "web"), canary: try backends(1, service: "web@2"), canaryWeight: 0.1)
        let picks = (0..<100).map { _ in set.next()!.service }
        let toCanary = picks.filter { $0 == "web@2" }.count
        #expect(toCanary == 10)
        // Evenly: one in every ten, never two in a row.
        for window in stride(from: 0, to: 100, by: 10) {
            let inWindow = picks[window..<window + 10].filter { $0 == "web@2" }.count
            #expect(inWindow == 1)
        }
    }

    @Test func canaryAloneServesEverything() throws {
        let set = BackendSet()
        set.setReady([], canary: try backends(1, service: "web@2"), canaryWeight: 0.1)
        let services = (0..<5).map { _ in set.next()?.service }
        #expect(services == Array(repeating: "web@2", count: 5))
    }

    @Test func aRequestThatFailedOnTheCanaryTriesTheOthers() throws {
        let set = BackendSet()
        let canary = try backends(1, service: "web@2")
        set.setReady(try backends(1, service: "web"), canary: canary, canaryWeight: 1)
        #expect(set.next(excluding: canary)?.service == "web")
    }
}
