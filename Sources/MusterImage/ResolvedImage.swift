/// The defaults an image's config gives a process: what the manifest's `environment`,
/// `directory`, `user` and `command` override.
public struct ImageConfig: Sendable, Equatable {
    /// `KEY=value` entries, in the image's order.
    public var env: [String]
    public var workingDir: String?
    public var user: String?
    public var entrypoint: [String]?
    public var cmd: [String]?
    public var architecture: String
    public var os: String

    public init(env: [String] = [], workingDir: String? = nil, user: String? = nil, entrypoint: [String]? = nil,
                cmd: [String]? = nil, architecture: String, os: String) {
        self.env = env
        self.workingDir = workingDir
        self.user = user
        self.entrypoint = entrypoint
        self.cmd = cmd
        self.architecture = architecture
        self.os = os
    }

    /// Entrypoint followed by Cmd: what runs when the manifest gives no `command`.
    public var command: [String] { (entrypoint ?? []) + (cmd ?? []) }
}

/// One layer of a manifest, in order from the base up.
public struct LayerDescriptor: Sendable, Equatable {
    /// `sha256:<hex>`.
    public var digest: String
    public var mediaType: String
    public var size: Int64

    public init(digest: String, mediaType: String, size: Int64) {
        self.digest = digest
        self.mediaType = mediaType
        self.size = size
    }
}

/// An image read and checked: which manifest a tag names, its config and its layers.
public struct ResolvedImage: Sendable, Equatable {
    /// Absolute path of the image layout folder or the oci-archive file.
    public var source: String
    public var tag: String?
    /// `sha256:<hex>` of the manifest: the image's identity, and its folder name in the store.
    public var manifestDigest: String
    public var config: ImageConfig
    public var layers: [LayerDescriptor]

    public init(source: String, tag: String?, manifestDigest: String, config: ImageConfig, layers: [LayerDescriptor]) {
        self.source = source
        self.tag = tag
        self.manifestDigest = manifestDigest
        self.config = config
        self.layers = layers
    }
}
