import MusterCore
import Testing

/// `[proxy]`, `[health]` and `[logs] target` as the manifest reference documents them.
@Suite struct ProxyManifestTests {
    static let full = """
        command = ["/usr/bin/python3", "-m", "http.server", "{port}"]
        [proxy]
        listen          = ["127.0.0.1:8080", "[::1]:8080"]
        protocol        = "tcp"
        max_connections = 500
        connect_timeout = "250ms"
        idle_timeout    = "5m"
        retries         = 3
        drain_timeout   = "10s"
        queue_timeout   = "2s"
        balance         = "least-request"
        eject_after     = 3
        eject_for       = "30s"
        [health]
        check    = "http"
        path     = "/healthz"
        interval = "500ms"
        timeout  = "2s"
        rise     = 1
        fall     = 5
        restart_unhealthy = false
        [logs]
        target = "journal"
        """

    @Test func decodesEveryKey() throws {
        let spec = try ManifestDecoder.decode(Self.full, fileName: "web.toml")
        let proxy = try #require(spec.proxy)
        #expect(proxy.listen == [ListenAddress(host: "127.0.0.1", port: 8080), ListenAddress(host: "::1", port: 8080)])
        #expect(proxy.listen.map(\.description) == ["127.0.0.1:8080", "[::1]:8080"])
        #expect(proxy.mode == .tcp)
        #expect(proxy.maxConnections == 500)
        #expect(proxy.connectTimeout == .milliseconds(250))
        #expect(proxy.idleTimeout == .seconds(300))
        #expect(proxy.retries == 3)
        #expect(proxy.drainTimeout == .seconds(10))
        #expect(proxy.queueTimeout == .seconds(2))
        #expect(proxy.balance == .leastRequest)
        #expect(proxy.ejectAfter == 3)
        #expect(proxy.ejectFor == .seconds(30))
        #expect(spec.health.check == .http)
        #expect(spec.health.path == "/healthz")
        #expect(spec.health.interval == .milliseconds(500))
        #expect(spec.health.timeout == .seconds(2))
        #expect(spec.health.rise == 1)
        #expect(spec.health.fall == 5)
        #expect(spec.health.restartUnhealthy == false)
        #expect(spec.logs.target == .journal)
    }

    @Test func defaultsAreTheDocumentedOnes() throws {
        let spec = try ManifestDecoder.decode("command = [\"/bin/true\"]\n[proxy]\nlisten = [\"127.0.0.1:8080\"]", fileName: "web.toml")
        let proxy = try #require(spec.proxy)
        #expect(proxy.mode == .http)
        #expect(proxy.maxConnections == 10_000)
        #expect(proxy.connectTimeout == .seconds(1))
        #expect(proxy.idleTimeout == .seconds(60))
        #expect(proxy.retries == 2)
        #expect(proxy.drainTimeout == .seconds(30))
        #expect(proxy.queueTimeout == .seconds(10))
        #expect(proxy.balance == .roundRobin)
        #expect(proxy.ejectAfter == 5)
        #expect(proxy.ejectFor == .seconds(10))
        #expect(spec.health == HealthSpec())
        #expect(spec.health.check == .none && spec.health.rise == 2 && spec.health.fall == 3 && spec.health.restartUnhealthy)
        #expect(spec.logs.target == .file)
    }

    @Test func everyProblemIsNamedWithAFix() {
        let text = """
            command = ["/bin/true"]
            [proxy]
            listen = ["localhost", "127.0.0.1:99999", "127.0.0.1:80"]
            protocol = "udp"
            [health]
            check = "htp"
            path = "healthz"
            [logs]
            target = "syslog"
            """
        var messages: [String] = []
        do {
            _ = try ManifestDecoder.decode(text, fileName: "web.toml")
            Issue.record("accepted a manifest with six problems")
        } catch {
            messages = error.issues.map(\.description)
        }
        let listenExplained = messages.contains { $0.contains("[proxy] listen = \"localhost\"") && $0.contains("not a host:port") }
        let portExplained = messages.contains { $0.contains("127.0.0.1:99999") }
        let protocolExplained = messages.contains { $0.contains("[proxy] protocol = \"udp\": must be http or tcp") }
        let checkExplained = messages.contains { $0.contains("[health] check = \"htp\"") && $0.contains("did you mean \"http\"?") }
        let pathExplained = messages.contains { $0.contains("[health] path = \"healthz\"") && $0.contains("starting with /") }
        let targetExplained = messages.contains { $0.contains("[logs] target = \"syslog\"") }
        #expect(listenExplained, "\(messages)")
        #expect(portExplained, "\(messages)")
        #expect(protocolExplained, "\(messages)")
        #expect(checkExplained, "\(messages)")
        #expect(pathExplained, "\(messages)")
        #expect(targetExplained, "\(messages)")
    }

    @Test func balancingMistakesNameTheKeyAndTheFix() {
        let text = """
            command = ["/bin/true"]
            [proxy]
            listen = ["127.0.0.1:8080"]
            balance = "least-requests"
            eject_after = -1
            eject_for = "0s"
            """
        var messages: [String] = []
        do {
            _ = try ManifestDecoder.decode(text, fileName: "web.toml")
            Issue.record("accepted a manifest with three problems")
        } catch {
            messages = error.issues.map(\.description)
        }
        let balanceExplained = messages.contains { $0.contains("web.toml") && $0.contains("[proxy] balance = \"least-requests\": must be \"round-robin\" or \"least-request\" (did you mean \"least-request\"?)") }
        let afterExplained = messages.contains { $0.contains("[proxy] eject_after = -1") && $0.contains("between 0 and 1000") }
        let forExplained = messages.contains { $0.contains("[proxy] eject_for") && $0.contains("eject_after = 0 turns ejection off") }
        #expect(balanceExplained, "\(messages)")
        #expect(afterExplained, "\(messages)")
        #expect(forExplained, "\(messages)")
        #expect(messages.count == 3, "\(messages)")
    }

    @Test func ejectAfterZeroTurnsEjectionOff() throws {
        let spec = try ManifestDecoder.decode("command = [\"/bin/true\"]\n[proxy]\nlisten = [\"127.0.0.1:8080\"]\neject_after = 0", fileName: "web.toml")
        #expect(spec.proxy?.ejectAfter == 0)
        let policy = OutlierDetector<Int>.Policy(ejectAfter: spec.proxy?.ejectAfter ?? -1, ejectFor: spec.proxy?.ejectFor ?? .zero)
        #expect(!policy.isEnabled)
    }

    @Test func execCheckNeedsACommand() {
        do {
            _ = try ManifestDecoder.decode("command = [\"/bin/true\"]\n[health]\ncheck = \"exec\"", fileName: "web.toml")
            Issue.record("accepted an exec check without a command")
        } catch {
            let commandRequired = error.issues.contains { $0.description.contains("[health] command") && $0.description.contains("required with check = \"exec\"") }
            #expect(commandRequired, "\(error.issues)")
        }
    }

    @Test func onlyProxyAndHealthChangesDoNotRestart() throws {
        let before = try ManifestDecoder.decode("command = [\"/bin/true\"]\n[proxy]\nlisten = [\"127.0.0.1:8080\"]", fileName: "web.toml")
        var after = before
        after.proxy?.listen = [ListenAddress(host: "127.0.0.1", port: 8081)]
        after.health.check = .tcp
        let plan = ReloadPlan(current: [before], next: [after])
        #expect(plan.changed.isEmpty)
        #expect(plan.reconfigured == ["web"])
        after.command = ["/bin/false"]
        #expect(ReloadPlan(current: [before], next: [after]).changed == ["web"])
    }
}
