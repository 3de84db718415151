import FoundationEssentials
import MusterAPI
import Testing

@Suite("The hand-written status JSON")
struct StatusJSONTests {
    static let sample = StatusResponse(services: [
        ServiceStatus(name: "web", desired: 2, started: true, instances: [
            InstanceStatus(id: "web:0", index: 0, state: "running", pid: 4242, port: 20000, restarts: 3, uptimeSeconds: 12.5,
                           cgroup: "/sys/fs/cgroup/muster/services/web/0-4", reason: nil, cpuSeconds: 0.004095,
                           cpuPercent: 1e-7, memoryBytes: 18_190_336, user: "root"),
            InstanceStatus(id: "web:1", index: 1, state: "fatal", pid: nil, port: nil, restarts: 0, uptimeSeconds: nil,
                           cgroup: nil, reason: "exec \"/usr/bin/nope\": No such file\nor directory\t\u{1}\\ ✓", cpuSeconds: nil,
                           cpuPercent: .infinity, memoryBytes: nil, user: "www-data"),
        ], source: "/etc/muster/services.d/web.toml"),
        ServiceStatus(name: "idle", desired: 0, started: false, instances: [], source: "/x/idle.toml"),
    ])

    /// The sample with dependencies: `web` requires db, wants cache, and waits for db; and a
    /// least-request proxy holding web:0 out.
    static var sampleWithDependencies: StatusResponse {
        var sample = Self.sample
        var proxy = ProxyStatus(listen: ["127.0.0.1:8080"], protocol: "http", openConnections: 2, queued: 0, requestsTotal: 40,
                                rps: 3.5, error: nil)
        proxy.balance = "least-request"
        proxy.ejected = 1
        sample.services[0].proxy = proxy
        sample.services[0].instances[0].ejectedUntil = 1_800_000_012.25
        sample.services[0].instances[0].container = ContainerInstanceStatus(image: "sha256:0f1e", rootfs: nil)
        sample.services[0].instances[1].container = ContainerInstanceStatus(image: nil, rootfs: "/srv/web \"root\"")
        sample.services[0].requires = ["db"]
        sample.services[0].wants = ["cache", "a\"b"]
        sample.services[0].waitingFor = ["db"]
        return sample
    }

    @Test func decodesToTheSameValueAsTheCodableEncoding() throws {
        let written = Self.sampleWithDependencies.jsonBytes()
        let decoded = try JSONDecoder().decode(StatusResponse.self, from: Data(written))
        var expected = Self.sampleWithDependencies
        expected.services[0].instances[1].cpuPercent = nil   // not a JSON number: written as null
        #expect(decoded == expected)
        let viaCodable = try JSONDecoder().decode(StatusResponse.self, from: JSONEncoder().encode(expected))
        #expect(decoded == viaCodable)
    }

    @Test func everyInstanceKeyIsPresentEvenWhenNull() throws {
        let text = String(decoding: Self.sample.jsonBytes(), as: UTF8.self)
        for key in ["id", "index", "state", "pid", "port", "restarts", "uptime_seconds", "cgroup", "reason", "cpu_seconds", "cpu_percent", "memory_bytes", "user", "ejected_until", "container"] {
            #expect(text.components(separatedBy: "\"\(key)\":").count == 3, "\(key)")
        }
        #expect(text.contains(#""pid":null"#))
        #expect(text.contains(#"\"/usr/bin/nope\": No such file\nor directory\t\u0001\\ ✓"#))
    }
}
