import Foundation

/// Reading an image per the OCI image spec: index.json → manifest (by tag) → config and layers.
public enum OCIImage {
    /// Manifests, indexes and configs are kilobytes; this bounds what a damaged one can make us read.
    static let documentLimit: Int64 = 16 << 20

    /// Resolves `tag` in the image at `path` (a layout folder or an oci-archive) to its manifest,
    /// config and layers, verifying the size and sha256 of every index, manifest and config blob read.
    /// - Parameters:
    ///   - tag: `org.opencontainers.image.ref.name` in index.json; nil when the index has one manifest.
    ///   - verifyLayers: also hash every layer blob (streamed, not held in memory).
    /// - Throws: `ImageError` naming the file or blob and the fix, for a missing image or index, a
    ///   tag that does not exist (listing those that do), a missing or corrupt blob, an unsupported
    ///   media type, or an image for another platform than this host's.
    public static func resolve(path: String, tag: String?, verifyLayers: Bool) throws(ImageError) -> ResolvedImage {
        let source = try ImageSource.at(path)
        try checkLayoutMarker(source)
        guard let indexBytes = try source.readSmall("index.json") else {
            throw ImageError(.missingIndex, "\(source.label("index.json")): missing, so this is not an OCI image layout (build the image with umoci or buildah, or `podman save --format oci-archive`)")
        }
        let index: IndexDocument = try decode(indexBytes, as: "index", file: source.label("index.json"))
        let chosen = try select(tag: tag, in: index.manifests, file: source.label("index.json"))
        let manifestDescriptor = try followIndexes(chosen, source: source)
        let manifestDigest = try BlobDigest(manifestDescriptor.digest, in: source.label("index.json"))
        let manifestFile = source.label(manifestDigest.blobPath)
        let manifestBytes = try source.blob(manifestDigest, size: manifestDescriptor.size).readAll(limit: documentLimit)
        let manifest: ManifestDocument = try decode(manifestBytes, as: "manifest", file: manifestFile)
        if let type = manifest.mediaType ?? manifestDescriptor.mediaType, !MediaTypes.manifest.contains(type) {
            throw ImageError(.unsupportedMediaType, "\(manifestFile): manifest media type \(type) is not an image manifest (use an OCI or Docker v2 image)")
        }

        let configDigest = try BlobDigest(manifest.config.digest, in: manifestFile)
        if let type = manifest.config.mediaType, !MediaTypes.config.contains(type) {
            throw ImageError(.unsupportedMediaType, "\(manifestFile): config media type \(type) is not an image config (use an OCI or Docker v2 image)")
        }
        let configFile = source.label(configDigest.blobPath)
        let configBytes = try source.blob(configDigest, size: manifest.config.size).readAll(limit: documentLimit)
        let config = try imageConfig(try decode(configBytes, as: "config", file: configFile), file: configFile)

        var layers: [LayerDescriptor] = []
        for layer in manifest.layers {
            let digest = try BlobDigest(layer.digest, in: manifestFile)
            let type = layer.mediaType ?? ""
            guard MediaTypes.layerCompression(type) != nil else {
                throw ImageError(.unsupportedMediaType, "\(manifestFile): layer \(digest) has media type \(type.isEmpty ? "(none)" : type), which Muster cannot unpack (rebuild the image with tar or tar+gzip layers)")
            }
            if verifyLayers { try source.blob(digest, size: layer.size).finish() }
            layers.append(LayerDescriptor(digest: digest.description, mediaType: type, size: layer.size))
        }
        return ResolvedImage(source: source.path, tag: tag ?? chosen.tag, manifestDigest: manifestDigest.description,
                             config: config, layers: layers)
    }

    /// `oci-layout` says which layout version this is; only 1.0.0 exists.
    private static func checkLayoutMarker(_ source: ImageSource) throws(ImageError) {
        let file = source.label("oci-layout")
        guard let bytes = try source.readSmall("oci-layout", limit: 1 << 16) else {
            throw ImageError(.missingIndex, "\(file): missing, so this is not an OCI image layout (build the image with umoci or buildah, or `podman save --format oci-archive`)")
        }
        struct Marker: Decodable { var imageLayoutVersion: String }
        let marker: Marker = try decode(bytes, as: "oci-layout", file: file)
        guard marker.imageLayoutVersion == "1.0.0" else {
            throw ImageError(.invalidImage, "\(file): imageLayoutVersion \(marker.imageLayoutVersion) is not 1.0.0, the only OCI layout version Muster reads")
        }
    }

    /// The manifest `tag` names; without a tag, the only one.
    static func select(tag: String?, in manifests: [Descriptor], file: String) throws(ImageError) -> Descriptor {
        let tags = manifests.compactMap(\.tag)
        let known = tags.isEmpty ? "it has no tagged manifests" : "it has " + tags.map { "\"\($0)\"" }.joined(separator: ", ")
        if let tag {
            if let found = manifests.first(where: { $0.tag == tag }) { return found }
            throw ImageError(.unknownTag, "\(file): no manifest tagged \"\(tag)\"; \(known) (set tag to one of them)")
        }
        guard manifests.count == 1, let only = manifests.first else {
            let problem = manifests.isEmpty ? "holds no manifests (the image is empty; rebuild it)" : "holds \(manifests.count) manifests and no tag was given; \(known) (set tag)"
            throw ImageError(manifests.isEmpty ? .invalidImage : .unknownTag, "\(file): \(problem)")
        }
        return only
    }

    /// An image index (a multi-platform image) is followed to the manifest for this host.
    private static func followIndexes(_ start: Descriptor, source: ImageSource) throws(ImageError) -> Descriptor {
        var descriptor = start
        for _ in 0..<8 {
            guard let type = descriptor.mediaType, MediaTypes.index.contains(type) else { return descriptor }
            let digest = try BlobDigest(descriptor.digest, in: source.label("index.json"))
            let file = source.label(digest.blobPath)
            let index: IndexDocument = try decode(try source.blob(digest, size: descriptor.size).readAll(limit: documentLimit), as: "image index", file: file)
            let host = HostPlatform.current
            guard let match = index.manifests.first(where: { $0.platform?.os == host.os && $0.platform?.architecture == host.architecture }) else {
                let platforms = index.manifests.compactMap { $0.platform.map { "\($0.os)/\($0.architecture)" } }
                throw ImageError(.otherPlatform, "\(file): image index has no manifest for \(host) (it has \(platforms.isEmpty ? "none with a platform" : platforms.joined(separator: ", "))); build the image for \(host)")
            }
            descriptor = match
        }
        throw ImageError(.invalidImage, "\(source.label("index.json")): image indexes nested more than 8 deep (the image is damaged)")
    }

    private static func imageConfig(_ document: ConfigDocument, file: String) throws(ImageError) -> ImageConfig {
        let host = HostPlatform.current
        let os = document.os ?? ""
        let architecture = document.architecture ?? ""
        guard os == host.os, architecture == host.architecture else {
            throw ImageError(.otherPlatform, "\(file): image is for \(os.isEmpty ? "?" : os)/\(architecture.isEmpty ? "?" : architecture), this host is \(host) (build or pull the \(host) image)")
        }
        let process = document.config
        return ImageConfig(env: process?.Env ?? [], workingDir: nonEmpty(process?.WorkingDir), user: nonEmpty(process?.User),
                           entrypoint: process?.Entrypoint, cmd: process?.Cmd, architecture: architecture, os: os)
    }

    private static func nonEmpty(_ text: String?) -> String? { text?.isEmpty == false ? text : nil }

    static func decode<T: Decodable>(_ bytes: [UInt8], as what: String, file: String) throws(ImageError) -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(bytes))
        } catch {
            throw ImageError(.invalidImage, "\(file): not a valid OCI \(what): \(jsonProblem(error)) (the image is damaged; rebuild it)")
        }
    }

    private static func jsonProblem(_ error: Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, let context):
            return "missing \((context.codingPath + [key]).map(\.stringValue).joined(separator: "."))"
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
            return "wrong type at \(context.codingPath.map(\.stringValue).joined(separator: "."))"
        case DecodingError.dataCorrupted(let context):
            return context.codingPath.isEmpty ? "not JSON" : "bad value at \(context.codingPath.map(\.stringValue).joined(separator: "."))"
        default:
            return "\(error)"
        }
    }
}
