import MusterCore
import Testing

/// `[container]` and `[[container.mounts]]`, as issue 16 names them and docs/containers.md
/// documents them.
@Suite struct ContainerManifestTests {
    static let source = "/etc/muster/services.d/web.toml"

    static func decode(_ text: String) throws(ManifestErrors) -> ServiceSpec {
        try ManifestDecoder.decode(text, fileName: "web.toml", sourcePath: source)
    }

    static func problems(_ text: String) -> [String] {
        do {
            _ = try decode(text)
            return []
        } catch {
            return error.issues.map(\.description)
        }
    }

    @Test func decodesEveryKey() throws {
        let spec = try Self.decode("""
            command = ["/bin/busybox", "httpd", "-f", "-p", "{port}", "-h", "/www"]
            instances = 2

            [container]
            image = "images/web"
            tag = "latest"
            hostname = "web-{index}.local"
            network = "private"
            user_namespace = true
            seccomp = "none"
            image_ref = "registry.example.com/shop/web:1.4"

            [[container.mounts]]
            source = "data/web"
            target = "/var/lib/web/"
            readonly = false

            [[container.mounts]]
            source = "/srv/static"
            target = "/www/static"
            readonly = true
            """)
        let container = try #require(spec.container)
        #expect(container.source == .image(path: "/etc/muster/services.d/images/web", tag: "latest"))
        #expect(container.hostname == "web-{index}.local")
        #expect(container.hostname(Placeholders.Values(port: 8000, index: 3, service: "web")) == "web-3.local")
        #expect(container.network == .private)
        #expect(container.userNamespace)
        #expect(container.seccomp == ContainerSpec.Seccomp.none)
        #expect(container.imageRef == "registry.example.com/shop/web:1.4")
        #expect(container.mounts == [
            ContainerMount(source: "/etc/muster/services.d/data/web", target: "/var/lib/web", readOnly: false),
            ContainerMount(source: "/srv/static", target: "/www/static", readOnly: true),
        ])
        #expect(container.overrides.command)
        #expect(!container.overrides.directory)
        #expect(!container.overrides.user)
        #expect(container.image == nil)
    }

    @Test func defaultsAreHostNetworkDefaultSeccompAndNoUserNamespace() throws {
        let rootfs = try Self.decode("command = [\"/bin/sh\"]\n[container]\nrootfs = \"/srv/web-root\"\n")
        let container = try #require(rootfs.container)
        #expect(container.source == .rootfs("/srv/web-root"))
        #expect(container.hostname == "{service}-{index}")
        #expect(container.hostname(Placeholders.Values(port: 8000, index: 0, service: "web")) == "web-0")
        #expect(container.network == .host)
        #expect(!container.userNamespace)
        #expect(container.seccomp == .default)
        #expect(container.mounts.isEmpty)
        #expect(try Self.decode("command = [\"/bin/sh\"]\n").container == nil)
    }

    @Test func anImageMakesCommandOptionalAndFillsTheDefaults() throws {
        var spec = try Self.decode("[container]\nimage = \"images/web\"\n")
        #expect(spec.command.isEmpty)
        let container = try #require(spec.container)
        #expect(!container.overrides.command)
        let facts = ContainerImageFacts(manifestDigest: "sha256:ab", environment: ["PATH=/bin"], workingDir: "/www",
                                        user: "nobody", entrypoint: ["/bin/busybox"], cmd: ["httpd", "-f"])
        let filled = spec.applyImageDefaults(facts)
        #expect(filled)
        #expect(spec.command == ["/bin/busybox", "httpd", "-f"])
        #expect(spec.directory == "/www")
        #expect(spec.user == "nobody")
        #expect(spec.container?.image == facts)

        var written = try Self.decode("command = [\"/bin/sh\"]\ndirectory = \"/srv\"\nuser = \"root\"\n[container]\nimage = \"images/web\"\n")
        let filledWritten = written.applyImageDefaults(facts)
        #expect(filledWritten)
        #expect(written.command == ["/bin/sh"])
        #expect(written.directory == "/srv")
        #expect(written.user == "root")

        var none = try Self.decode("[container]\nimage = \"images/web\"\n")
        let filledNone = none.applyImageDefaults(ContainerImageFacts(manifestDigest: "sha256:ab"))
        #expect(!filledNone)
    }

    @Test func aNewImageDigestRestartsAndANewImageRefDoesNot() throws {
        let base = try Self.decode("[container]\nimage = \"images/web\"\nimage_ref = \"r/web:1\"\n")
        var old = base
        _ = old.applyImageDefaults(ContainerImageFacts(manifestDigest: "sha256:aa", cmd: ["/bin/true"]))
        var rebuilt = base
        _ = rebuilt.applyImageDefaults(ContainerImageFacts(manifestDigest: "sha256:bb", cmd: ["/bin/true"]))
        #expect(rebuilt.needsRestart(comparedTo: old))
        var renamed = old
        renamed.container?.imageRef = "r/web:2"
        #expect(renamed != old)
        #expect(!renamed.needsRestart(comparedTo: old))
    }

    @Test func badInputNamesTheKeyAndTheFix() {
        #expect(Self.problems("[container]\nimage = \"i\"\nnetwork = \"bridge\"\n") == [
            "web.toml: [container] network = \"bridge\": must be \"host\" (the host's network) or \"private\" (only loopback; the proxy still reaches the instance through a socket musterd passes in)",
        ])
        #expect(Self.problems("command = [\"/bin/sh\"]\n[container]\nhostname = \"x\"\n") == [
            "web.toml: [container] image: is required in [container]: an OCI image (try image = \"images/web\"), or rootfs = \"/srv/web-root\" for an unpacked root folder",
        ])
        #expect(Self.problems("[container]\nimage = \"i\"\nrootfs = \"/r\"\n") == [
            "web.toml: [container] rootfs: and image are two sources for one root filesystem (keep one of them)",
        ])
        #expect(Self.problems("[container]\nrootfs = \"/r\"\n") == [
            "web.toml: command: is required: the program and its arguments (try command = [\"/usr/bin/python3\", \"-m\", \"http.server\", \"{port}\"])",
        ])
        #expect(Self.problems("[container]\nimage = \"i\"\nseccomp = \"strict\"\nuser_namespace = \"yes\"\n") == [
            "web.toml: [container] user_namespace = \"yes\": expected true or false, got a string",
            "web.toml: [container] seccomp = \"strict\": must be \"default\" (the usual container deny list) or \"none\"",
        ])
        #expect(Self.problems("[container]\nimage = \"i\"\nhostname = \"web_{index}\"\n").first?.contains("[container] hostname = \"web_{index}\": is not a hostname") == true)
        #expect(Self.problems("[container]\nimage = \"i\"\nimgae_ref = \"x\"\n") == [
            "web.toml: [container] unknown key \"imgae_ref\" (did you mean \"image_ref\"?)",
        ])
        #expect(Self.problems("[container]\nimage = \"i\"\n[[container.mounts]]\nsource = \"d\"\ntarget = \"../x\"\n[[container.mounts]]\ntarget = \"/y\"\nread_only = true\n") == [
            "web.toml: [container.mounts #1] target = \"../x\": must be an absolute path inside the container, not /, without . or .. parts (try target = \"/var/lib/web\")",
            "web.toml: [container.mounts #2] source: is required: the host path to mount (try source = \"data/web\")",
            "web.toml: [container.mounts #2] unknown key \"read_only\" (did you mean \"readonly\"?)",
        ])
    }
}
