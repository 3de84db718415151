/// The JSON documents of an image, as the OCI image spec defines them (only the fields read).
struct Descriptor: Decodable {
    var mediaType: String?
    var digest: String
    var size: Int64
    var annotations: [String: String]?
    var platform: Platform?

    struct Platform: Decodable {
        var architecture: String
        var os: String
        var variant: String?
    }

    static let refName = "org.opencontainers.image.ref.name"
    var tag: String? { annotations?[Self.refName] }
}

struct IndexDocument: Decodable {
    var mediaType: String?
    var manifests: [Descriptor]
}

struct ManifestDocument: Decodable {
    var mediaType: String?
    var config: Descriptor
    var layers: [Descriptor]
}

struct ConfigDocument: Decodable {
    var architecture: String?
    var os: String?
    var config: Process?

    // Docker and OCI spell these with capitals.
    struct Process: Decodable {
        var Env: [String]?
        var WorkingDir: String?
        var User: String?
        var Entrypoint: [String]?
        var Cmd: [String]?
    }
}
