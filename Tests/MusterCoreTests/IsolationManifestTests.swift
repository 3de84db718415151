import MusterCore
import Testing

/// `[isolation]` and the file ownership rule, as docs/manifest.md documents them.
@Suite struct IsolationManifestTests {
    static let command = "command = [\"/srv/app\"]\n"

    static func problems(_ text: String) -> [String] {
        do {
            _ = try ManifestDecoder.decode(command + text, fileName: "web.toml")
            return []
        } catch {
            return error.issues.map(\.description)
        }
    }

    @Test func decodesEveryKey() throws {
        let spec = try ManifestDecoder.decode(Self.command + """
            [isolation]
            no_new_privileges  = false
            capabilities       = ["CAP_NET_BIND_SERVICE", "kill", "NET_BIND_SERVICE"]
            private_tmp        = true
            read_only_paths    = ["/", "/usr//local/"]
            writable_paths     = ["/var/lib/{service}", "-/srv/cache"]
            inaccessible_paths = ["/home", "-/root/.ssh"]
            nofile             = 65536
            nproc              = "unlimited"
            core               = 0
            memlock            = "64M"
            """, fileName: "web.toml")
        let isolation = spec.isolation
        #expect(isolation.noNewPrivileges == false)
        #expect(isolation.capabilities == CapabilitySet([5, 10]))
        #expect(isolation.capabilities?.description == "CAP_KILL, CAP_NET_BIND_SERVICE")
        #expect(isolation.privateTmp)
        #expect(isolation.readOnlyPaths == [IsolatedPath(path: "/"), IsolatedPath(path: "/usr/local")])
        #expect(isolation.writablePaths == [IsolatedPath(path: "/var/lib/{service}"), IsolatedPath(path: "/srv/cache", optional: true)])
        #expect(isolation.inaccessiblePaths.map(\.description) == ["/home", "-/root/.ssh"])
        #expect(isolation.limits == ProcessLimits(nofile: 65536, nproc: ProcessLimits.unlimited, core: 0, memlock: 64 << 20))
        #expect(isolation.needsMountNamespace)
    }

    @Test func defaultsAreNoNewPrivilegesAndNothingElse() throws {
        let spec = try ManifestDecoder.decode(Self.command, fileName: "web.toml")
        #expect(spec.isolation == IsolationSpec())
        #expect(spec.isolation.noNewPrivileges)
        #expect(spec.isolation.capabilities == nil)
        #expect(!spec.isolation.needsMountNamespace)
        #expect(spec.isolation.limits.entries.isEmpty)
        #expect(IsolationSpec.unconfined.noNewPrivileges == false)
        // An empty list is a list: every capability goes.
        let none = try ManifestDecoder.decode(Self.command + "[isolation]\ncapabilities = []\n", fileName: "web.toml")
        #expect(none.isolation.capabilities == CapabilitySet(mask: 0))
    }

    @Test func mistakesNameTheFileTheKeyAndTheFix() {
        #expect(Self.problems("[isolation]\ncapabilities = [\"CAP_NET_BIND_SERVIC\"]\n") == [
            "web.toml: [isolation] capabilities = \"CAP_NET_BIND_SERVIC\": not a capability name (did you mean \"CAP_NET_BIND_SERVICE\"?)",
        ])
        #expect(Self.problems("[isolation]\ncapabilities = [\"FLY\"]\n") == [
            "web.toml: [isolation] capabilities = \"FLY\": not a capability name (names are listed in capabilities(7), e.g. \"CAP_NET_BIND_SERVICE\")",
        ])
        #expect(Self.problems("[isolation]\nread_only_paths = [\"srv\"]\n") == [
            "web.toml: [isolation] read_only_paths = \"srv\": must be an absolute path without . or .. parts, optionally after a \"-\" that skips it when missing (try \"/srv/app\" or \"-/srv/app\")",
        ])
        #expect(Self.problems("[isolation]\nwritable_paths = [\"/srv/../etc\"]\n").count == 1)
        #expect(Self.problems("[isolation]\ninaccessible_paths = [\"/\"]\n") == [
            "web.toml: [isolation] inaccessible_paths = \"/\": hiding / leaves nothing to run (name the folders to hide, e.g. \"/home\")",
        ])
        #expect(Self.problems("[isolation]\nnofile = \"unlimited\"\n") == [
            "web.toml: [isolation] nofile = \"unlimited\": expected an integer (try nofile = 65536)",
        ])
        #expect(Self.problems("[isolation]\nnofile = 0\n") == [
            "web.toml: [isolation] nofile = 0: must be between 1 and 1073741816 (try nofile = 65536)",
        ])
        #expect(Self.problems("[isolation]\ncore = \"lots\"\n") == [
            "web.toml: [isolation] core = \"lots\": expected a number of bytes or a size or \"unlimited\" (try core = 0)",
        ])
        #expect(Self.problems("[isolation]\nprivate_tmp = \"yes\"\n") == [
            "web.toml: [isolation] private_tmp = \"yes\": expected true or false, got a string",
        ])
        #expect(Self.problems("[isolation]\nprivate_temp = true\n") == [
            "web.toml: [isolation] unknown key \"private_temp\" (did you mean \"private_tmp\"?)",
        ])
        #expect(Self.problems("[isolation]\nread_only_paths = [\"/srv/{sevrice}\"]\n") == [
            "web.toml: [isolation] read_only_paths = \"/srv/{sevrice}\": unknown placeholder {sevrice} (did you mean {service}?)",
        ])
        let many = (0...IsolationSpec.maxPaths).map { "\"/p\($0)\"" }.joined(separator: ", ")
        #expect(Self.problems("[isolation]\nwritable_paths = [\(many)]\n") == [
            "web.toml: [isolation] writable_paths: names 65 paths; at most 64 are supported (name a common parent folder instead)",
        ])
    }

    @Test func anIsolationChangeRestartsTheService() throws {
        let before = try ManifestDecoder.decode(Self.command, fileName: "web.toml")
        let after = try ManifestDecoder.decode(Self.command + "[isolation]\nprivate_tmp = true\n", fileName: "web.toml")
        #expect(before != after)
        #expect(after.needsRestart(comparedTo: before))
        #expect(!after.differsOnlyInInstances(from: before))
    }

    @Test func placeholdersInPathsAreExpandedPerInstance() throws {
        let spec = try ManifestDecoder.decode(Self.command + """
            [isolation]
            writable_paths = ["/var/lib/{service}/{index}", "-/run/{service}"]
            """, fileName: "web.toml")
        let plan = LaunchPlan(spec: spec, index: 2, port: 8000, daemonEnvironment: [:], account: nil)
        #expect(plan.isolation.writablePaths.map(\.description) == ["/var/lib/web/2", "-/run/web"])
    }

    @Test func capabilityNamesAreAcceptedWithOrWithoutThePrefix() {
        #expect(Capabilities.number(named: "CAP_NET_BIND_SERVICE") == 10)
        #expect(Capabilities.number(named: "net_bind_service") == 10)
        #expect(Capabilities.number(named: "CAP_CHECKPOINT_RESTORE") == 40)
        #expect(Capabilities.number(named: "CAP_") == nil)
        #expect(Capabilities.name(21) == "CAP_SYS_ADMIN")
    }

    // MARK: The ownership rule

    @Test func asRootAFileMustBeOwnedByRootAndWritableByNoOneElse() {
        let path = "/etc/muster/services.d/web.toml"
        #expect(FileTrust.refusal(runningAs: 0, owner: 0, mode: 0o100644, path: path) == nil)
        #expect(FileTrust.refusal(runningAs: 0, owner: 0, mode: 0o100600, path: path) == nil)
        #expect(FileTrust.refusal(runningAs: 0, owner: 0, mode: 0o100664, path: path)
            == "refused: writable by group (mode 0664); a writable manifest would let others run commands as root: chmod go-w \(path)")
        #expect(FileTrust.refusal(runningAs: 0, owner: 0, mode: 0o100646, path: path)
            == "refused: writable by others (mode 0646); a writable manifest would let others run commands as root: chmod go-w \(path)")
        #expect(FileTrust.refusal(runningAs: 0, owner: 0, mode: 0o100666, path: path, kind: .daemonConfig)
            == "refused: writable by group and others (mode 0666); a writable daemon config would let others run commands as root: chmod go-w \(path)")
        #expect(FileTrust.refusal(runningAs: 0, owner: 1000, ownerName: "alice", mode: 0o100644, path: path)
            == "refused: owned by alice (uid 1000), not root; a manifest that someone other than root can change would let them run commands as root: chown root \(path)")
        #expect(FileTrust.refusal(runningAs: 0, owner: 1000, mode: 0o100664, path: path)
            == "refused: owned by uid 1000, not root and writable by group (mode 0664); a manifest that someone other than root can change would let them run commands as root: chown root \(path) && chmod go-w \(path)")
    }

    @Test func aDaemonThatIsNotRootReadsWhatItCan() {
        #expect(FileTrust.refusal(runningAs: 1000, owner: 1000, mode: 0o100666, path: "web.toml") == nil)
        #expect(FileTrust.refusal(runningAs: 1000, owner: 0, mode: 0o100664, path: "web.toml") == nil)
    }
}
