import MusterCore
import Testing

@Suite("requires, wants, env_file and the dependency graph")
struct DependencyGraphTests {
    private func spec(_ name: String, requires: [String] = [], wants: [String] = [], listen: String? = nil,
                      mode: ProxySpec.Mode = .http) -> ServiceSpec {
        var spec = ServiceSpec(name: name, command: ["/bin/true"], sourcePath: "/srv/services.d/\(name).toml")
        spec.requires = requires
        spec.wants = wants
        if let listen {
            spec.proxy = ProxySpec(listen: [ListenAddress.parse(listen)!])
            spec.proxy?.mode = mode
        }
        return spec
    }

    private func messages(_ text: String, file: String = "api.toml") -> [String] {
        do {
            _ = try ManifestDecoder.decode(text, fileName: file, sourcePath: "/srv/services.d/\(file)")
            return []
        } catch {
            return error.issues.map(\.description)
        }
    }

    @Test func decodesRequiresWantsAndEnvFilesResolvedBesideTheManifest() throws {
        let text = """
            command = ["/bin/true"]
            requires = ["db"]
            wants = ["cache"]
            env_file = ["api.env", "-local.env", "/etc/shared.env"]
            """
        let decoded = try ManifestDecoder.decode(text, fileName: "api.toml", sourcePath: "/srv/services.d/api.toml")
        #expect(decoded.requires == ["db"])
        #expect(decoded.wants == ["cache"])
        #expect(decoded.envFiles == [EnvFileRef(path: "/srv/services.d/api.env"), EnvFileRef(path: "/srv/services.d/local.env", optional: true),
                                     EnvFileRef(path: "/etc/shared.env")])
    }

    @Test func envFileMayBeOneString() throws {
        let decoded = try ManifestDecoder.decode("command = [\"/bin/true\"]\nenv_file = \"-api.env\"\n", fileName: "api.toml",
                                                 sourcePath: "/srv/services.d/api.toml")
        #expect(decoded.envFiles == [EnvFileRef(path: "/srv/services.d/api.env", optional: true)])
    }

    @Test func badNamesAndSelfDependenceAreRefused() {
        let issues = messages("command = [\"/bin/true\"]\nrequires = [\"api\", \"Bad_Name\"]\nwants = 3\nenv_file = 4\n")
        #expect(issues.contains(#"api.toml: requires = "api": a service cannot depend on itself (remove "api")"#))
        let badName = issues.contains { $0.hasPrefix(#"api.toml: requires = "Bad_Name": not a service name"#) }
        #expect(badName, "\(issues)")
        let wantsType = issues.contains { $0.hasPrefix("api.toml: wants = 3: expected an array of strings") }
        #expect(wantsType, "\(issues)")
        let envFileType = issues.contains { $0.hasPrefix("api.toml: env_file = 4: expected a file name or an array of them") }
        #expect(envFileType, "\(issues)")
    }

    @Test func aMisspeltKeySuggestsTheNewOnes() {
        let issues = messages("command = [\"/bin/true\"]\nrequire = [\"db\"]\n")
        #expect(issues.contains(#"api.toml: unknown key "require" (did you mean "requires"?)"#))
    }

    @Test func anUnknownRequiredNameSuggestsTheClosestService() {
        let graph = DependencyGraph.validate([spec("api", requires: ["dbb"]), spec("db")])
        #expect(graph.issues.map(\.description) == [#"api.toml: requires: no service named "dbb" (did you mean "db"?)"#])
    }

    @Test func anUnknownWantedNameIsOnlyAWarning() {
        let graph = DependencyGraph.validate([spec("api", wants: ["cach"]), spec("cache2"), spec("cache")])
        #expect(graph.issues.isEmpty)
        #expect(graph.warnings == [#"api.toml: wants: no service named "cach" (did you mean "cache"?); api starts without it"#])
    }

    @Test func aCycleIsSpelledOutOnceFromItsAlphabeticallyFirstService() {
        let graph = DependencyGraph.validate([spec("db", wants: ["api"]), spec("api", requires: ["db"])])
        #expect(graph.issues.map(\.description) == ["api.toml: requires: cycle api → db → api"])
    }

    @Test func aLongerCycleUsesTheKeyOfItsFirstEdge() {
        let graph = DependencyGraph.validate([spec("web", requires: ["api"]), spec("api", requires: ["worker"]),
                                              spec("worker", requires: ["web"]), spec("db"), spec("b", wants: ["c"]), spec("c", requires: ["b"])])
        #expect(graph.issues.map(\.description) == ["api.toml: requires: cycle api → worker → web → api",
                                                    "b.toml: wants: cycle b → c → b"])
    }

    @Test func peersWithListenersGiveAddressAndURLVariables() throws {
        let graph = DependencyGraph.validate([
            spec("api", requires: ["user-store"], wants: ["cache", "worker"]),
            spec("user-store", listen: "0.0.0.0:7001"), spec("cache", listen: "[::]:6379", mode: .tcp), spec("worker"),
        ])
        #expect(graph.issues.isEmpty)
        let api = try #require(graph.specs.first)
        let plan = LaunchPlan(spec: api, index: 0, port: 9000, daemonEnvironment: [:], account: nil)
        #expect(plan.environment.contains("MUSTER_USER_STORE_ADDR=127.0.0.1:7001"))
        #expect(plan.environment.contains("MUSTER_USER_STORE_URL=http://127.0.0.1:7001"))
        #expect(plan.environment.contains("MUSTER_CACHE_ADDR=[::1]:6379"))
        let cacheURL = plan.environment.filter { $0.hasPrefix("MUSTER_CACHE_URL=") || $0.hasPrefix("MUSTER_WORKER_") }
        #expect(cacheURL.isEmpty)
    }

    @Test func addrPlaceholdersExpandInCommandAndEnvironment() throws {
        var api = spec("api", requires: ["db"])
        api.command = ["/usr/bin/api", "--db", "{addr:db}", "--port", "{port}"]
        api.environment = ["DATABASE_URL": "postgres://{addr:db}/app"]
        let graph = DependencyGraph.validate([api, spec("db", listen: "127.0.0.1:5432", mode: .tcp)])
        #expect(graph.issues.isEmpty)
        let resolved = try #require(graph.specs.first)
        let plan = LaunchPlan(spec: resolved, index: 1, port: 9001, daemonEnvironment: [:], account: nil)
        #expect(plan.argv == ["/usr/bin/api", "--db", "127.0.0.1:5432", "--port", "9001"])
        #expect(plan.environment.contains("DATABASE_URL=postgres://127.0.0.1:5432/app"))
    }

    @Test func anAddrPlaceholderWithoutAReachablePeerIsAManifestError() {
        var api = spec("api", requires: ["worker"], wants: ["cache"])
        api.command = ["/usr/bin/api", "{addr:db}", "{addr:worker}"]
        api.environment = ["CACHE": "{addr:cache}"]
        let issues = DependencyGraph.validate([api, spec("db", listen: "127.0.0.1:5432"), spec("worker")]).issues.map(\.description)
        #expect(issues == [
            #"api.toml: command = "{addr:db}": {addr:db}: db is not in requires or wants (add requires = ["db"])"#,
            #"api.toml: command = "{addr:worker}": {addr:worker}: worker has no [proxy] listener, so it has no address (add [proxy] listen to worker.toml)"#,
            #"api.toml: environment = "{addr:cache}": {addr:cache}: no service named "cache" is there to give an address (no manifest names it; add one or remove the name)"#,
        ])
    }

    @Test func environmentBeatsEnvFilesWhichBeatTheDefaults() {
        var api = spec("api")
        api.envFileEnvironment = ["FROM_FILE": "file", "SHARED": "file", "PORT": "1", "PATH": "/file/bin"]
        api.environment = ["SHARED": "manifest"]
        let plan = LaunchPlan(spec: api, index: 0, port: 9000, daemonEnvironment: ["SHARED": "daemon"], account: nil)
        #expect(plan.environment.contains("FROM_FILE=file"))
        #expect(plan.environment.contains("SHARED=manifest"))
        #expect(plan.environment.contains("PATH=/file/bin"))
        #expect(plan.environment.contains("PORT=1"))
    }

    @Test func aChangedEnvFileOrPeerAddressIsAChangedServiceOnReload() {
        var before = spec("api")
        before.envFileEnvironment = ["TOKEN": "old"]
        var after = before
        after.envFileEnvironment = ["TOKEN": "new"]
        #expect(ReloadPlan(current: [before], next: [after]).changed == ["api"])
        var moved = before
        moved.peerAddresses = ["db": PeerAddress(address: "127.0.0.1:5433")]
        #expect(ReloadPlan(current: [before], next: [moved]).changed == ["api"])
        #expect(ReloadPlan(current: [before], next: [before]).unchanged == ["api"])
    }
}
