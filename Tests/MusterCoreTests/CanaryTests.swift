import MusterCore
import Testing

/// `[deploy]` decoding, the canary judge and the revisions' "what changed".
@Suite struct CanaryTests {
    static let manifest = """
        command = ["/bin/sleep", "100"]
        [deploy]
        strategy = "canary"
        canary_instances = 2
        canary_weight = "10%"
        canary_duration = "3s"
        max_error_rate = "1%"
        max_p99 = "250ms"
        """

    @Test func deployTableIsRead() throws {
        let spec = try ManifestDecoder.decode(Self.manifest, fileName: "web.toml")
        #expect(spec.deploy.strategy == .canary)
        #expect(spec.deploy.canaryInstances == 2)
        #expect(spec.deploy.canaryWeight == 0.1)
        #expect(spec.deploy.canaryDuration == .seconds(3))
        #expect(spec.deploy.maxErrorRate == 0.01)
        #expect(spec.deploy.maxP99 == .milliseconds(250))
    }

    @Test func badDeployKeysAreNamed() {
        let text = "command = [\"/bin/true\"]\n[deploy]\nstrategy = \"blue-green\"\ncanary_weight = \"150%\"\ncanary_wieght = 1\n"
        #expect(throws: ManifestErrors.self) { try ManifestDecoder.decode(text, fileName: "web.toml") }
        do { _ = try ManifestDecoder.decode(text, fileName: "web.toml") } catch {
            let messages = error.issues.map(\.description).joined(separator: "\n")
            #expect(messages.contains("strategy"), "\(messages)")
            #expect(messages.contains("canary_weight"), "\(messages)")
            #expect(messages.contains("canary_wieght"), "\(messages)")
        }
    }

    @Test func withoutDeployTableTheStrategyIsRolling() throws {
        let spec = try ManifestDecoder.decode("command = [\"/bin/true\"]\n", fileName: "web.toml")
        #expect(spec.deploy == DeploySpec())
    }

    static var limits: DeploySpec {
        var spec = DeploySpec(strategy: .canary)
        spec.canaryDuration = .seconds(3)
        spec.maxErrorRate = 0.01
        spec.maxP99 = .milliseconds(250)
        return spec
    }

    static func sample(requests: Int, errors: Int, slowAbove: Int = 0) -> CanarySample {
        let bounds = [0.1, 0.25, 0.5, 1.0]
        return CanarySample(requests: requests, errors: errors, latencyBuckets: [requests - slowAbove, 0, slowAbove, 0, 0], bounds: bounds)
    }

    @Test func errorRatePastTheLimitRollsBackWithTheFigure() {
        let verdict = CanaryJudge.judge(Self.sample(requests: 50, errors: 24), limits: Self.limits, elapsed: .seconds(1), failure: nil)
        #expect(verdict == .rollBack(reason: "error rate 48.0% > 1%"))
    }

    @Test func tooFewRequestsAreNotJudged() {
        let verdict = CanaryJudge.judge(Self.sample(requests: 5, errors: 5), limits: Self.limits, elapsed: .seconds(1), failure: nil)
        #expect(verdict == .keepJudging)
    }

    @Test func slowP99RollsBack() {
        let verdict = CanaryJudge.judge(Self.sample(requests: 100, errors: 0, slowAbove: 10), limits: Self.limits, elapsed: .seconds(1), failure: nil)
        #expect(verdict == .rollBack(reason: "p99 500ms > 250ms"))
    }

    @Test func aFewSlowRequestsBelowThePercentileDoNot() {
        let verdict = CanaryJudge.judge(Self.sample(requests: 1000, errors: 0, slowAbove: 5), limits: Self.limits, elapsed: .seconds(1), failure: nil)
        #expect(verdict == .keepJudging)
    }

    @Test func withinLimitsPastTheDurationPromotes() {
        #expect(CanaryJudge.judge(Self.sample(requests: 100, errors: 1), limits: Self.limits, elapsed: .seconds(3), failure: nil) == .promote)
        #expect(CanaryJudge.judge(Self.sample(requests: 100, errors: 1), limits: Self.limits, elapsed: .seconds(2), failure: nil) == .keepJudging)
        #expect(CanaryJudge.judge(Self.sample(requests: 100, errors: 0), limits: Self.limits, elapsed: nil, failure: nil) == .keepJudging)
    }

    @Test func withoutAProxyHealthAloneDecides() {
        #expect(CanaryJudge.judge(nil, limits: Self.limits, elapsed: .seconds(5), failure: nil) == .promote)
        #expect(CanaryJudge.judge(nil, limits: Self.limits, elapsed: .seconds(1), failure: "canary crashed: exited with code 3")
                == .rollBack(reason: "canary crashed: exited with code 3"))
    }

    @Test func historyNamesWhatChanged() {
        var before = ServiceSpec(name: "web", command: ["python3", "app.py"], environment: ["MODE": "a", "KEEP": "x"])
        var after = before
        after.command = ["python3", "app2.py"]
        after.environment["MODE"] = "b"
        after.environment["NEW"] = "1"
        after.instances = 3
        #expect(RevisionDiff.changes(from: before, to: after) == ["command", "environment (MODE, NEW)", "instances 1 → 3"])
        before.sourcePath = "/a/web.toml"
        #expect(RevisionDiff.changes(from: before, to: before).isEmpty)
    }

    @Test func rollbackGoesToThePreviousGoodRevision() {
        var history = RevisionHistory()
        let spec = ServiceSpec(name: "web", command: ["v1"])
        history.current = history.append(spec, time: 0, source: "start", outcome: .deployed).number
        var v2 = spec
        v2.command = ["v2"]
        history.current = history.append(v2, time: 1, source: "reload", outcome: .promoted).number
        var v3 = spec
        v3.command = ["v3"]
        _ = history.append(v3, time: 2, source: "reload", outcome: .rolledBack(reason: "error rate 50.0% > 1%"))
        #expect(history.current == 2)
        #expect(history.previousGood?.number == 1)
        #expect(history.revision(3)?.changes == ["command"])
        #expect(history.revision(3)?.outcome.text == "rolled back: error rate 50.0% > 1%")
    }
}
