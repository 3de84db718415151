/// `[container]`: each instance runs as an application container, with a root filesystem of its
/// own (an OCI image, or an unpacked root folder) and its own pid, mount, uts, ipc and cgroup
/// namespaces. Nil on a spec: the instances are host processes, as without the table.
public struct ContainerSpec: Sendable, Equatable, Codable {
    /// Where the root filesystem comes from.
    public enum Source: Sendable, Equatable, Codable {
        /// `image` (an OCI image layout folder or oci-archive file, absolute) and `tag`.
        case image(path: String, tag: String?)
        /// `rootfs`: an unpacked root folder (absolute), used read-only as the overlay's lower layer.
        case rootfs(String)
    }

    public enum Network: String, Sendable, Equatable, Codable, CaseIterable {
        /// The host's network namespace: the instance binds `{port}` as any instance does.
        case host
        /// A network namespace holding only loopback; the listening socket comes from musterd
        /// through `LISTEN_FDS`.
        case `private`
    }

    public enum Seccomp: String, Sendable, Equatable, Codable, CaseIterable {
        /// The usual container deny list (module loading, kexec, mount, bpf, keyctl, …).
        case `default`
        case none
    }

    public var source: Source
    /// A template: `{service}`, `{index}` and `{port}` are expanded per instance.
    public var hostname = ContainerSpec.defaultHostname
    public var network = Network.host
    public var userNamespace = false
    public var seccomp = Seccomp.default
    /// `image_ref`: what `musterctl export kubernetes` names as the container image.
    public var imageRef: String?
    public var mounts: [ContainerMount] = []
    /// Which of the image config's defaults the manifest overrides: `command`, `directory`, `user`.
    public var overrides = ImageDefaultOverrides()
    /// What the loader read from the image: its digest and config. Part of the spec, so an image
    /// rebuilt under the same tag is a changed service on reload (its instances restart).
    public var image: ContainerImageFacts?

    public static let defaultHostname = "{service}-{index}"

    public init(source: Source) { self.source = source }

    /// The hostname of one instance.
    public func hostname(_ values: Placeholders.Values) -> String { Placeholders.expand(hostname, values) }

    /// A hostname the kernel takes and resolvers accept: 1 to 64 characters of letters, digits,
    /// '-' and '.'.
    public static func isValidHostname(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 64
            && name.allSatisfy { ($0.isASCII && ($0.isLetter || $0.isNumber)) || $0 == "-" || $0 == "." }
    }
}

/// What the manifest itself set among the keys an image config provides defaults for.
public struct ImageDefaultOverrides: Sendable, Equatable, Codable {
    public var command = false
    public var directory = false
    public var user = false
    public init() {}
}

/// One `[[container.mounts]]` entry: a host path bind-mounted into the container.
public struct ContainerMount: Sendable, Equatable, Codable {
    /// Absolute, on the host (relative in the manifest: to the manifest's folder).
    public var source: String
    /// Absolute, inside the container.
    public var target: String
    public var readOnly: Bool

    public init(source: String, target: String, readOnly: Bool) {
        self.source = source
        self.target = target
        self.readOnly = readOnly
    }
}

/// The parts of an OCI image a launch needs, read from its manifest and config.
public struct ContainerImageFacts: Sendable, Equatable, Codable {
    /// `sha256:…` of the image manifest: what `status` shows and the unpacked root is named by.
    public var manifestDigest: String
    /// The config's `Env` (`KEY=value`), `WorkingDir`, `User`, `Entrypoint` and `Cmd`.
    public var environment: [String]
    public var workingDir: String?
    public var user: String?
    public var entrypoint: [String]
    public var cmd: [String]

    public init(manifestDigest: String, environment: [String] = [], workingDir: String? = nil, user: String? = nil,
                entrypoint: [String] = [], cmd: [String] = []) {
        self.manifestDigest = manifestDigest
        self.environment = environment
        self.workingDir = workingDir
        self.user = user
        self.entrypoint = entrypoint
        self.cmd = cmd
    }

    /// What the container runs when the manifest names no command: Entrypoint, then Cmd (as
    /// Docker and podman join them).
    public var defaultCommand: [String] { entrypoint + cmd }
}

extension ServiceSpec {
    /// Fills in what the manifest left to the image: the command (Entrypoint + Cmd), the working
    /// folder and the user. The image's `Env` is applied at launch, under the manifest's
    /// `environment`. Returns false when neither the manifest nor the image names a command.
    public mutating func applyImageDefaults(_ facts: ContainerImageFacts) -> Bool {
        guard var container else { return true }
        container.image = facts
        if !container.overrides.command { command = facts.defaultCommand }
        if !container.overrides.directory, let folder = facts.workingDir, folder.hasPrefix("/") { directory = folder }
        if !container.overrides.user, let name = facts.user, !name.isEmpty { user = name }
        self.container = container
        return !command.isEmpty
    }
}
