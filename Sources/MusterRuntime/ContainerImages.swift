import MusterCore
import MusterImage

/// The images of container services, unpacked into musterd's store before the specs that name
/// them are applied: a start then finds its root ready, and an image that cannot be unpacked (a
/// corrupt layer, a full disk) fails the load or reload, leaving the running system as it was.
public enum ContainerImages {
    /// Unpacks every image `specs` name that is not unpacked yet. Each is read once however many
    /// services and instances use it (`ImageStore` keys unpacks by manifest digest).
    public static func unpack(_ specs: [ServiceSpec], into store: ImageStore) throws(ManifestErrors) {
        var issues: [ManifestIssue] = []
        var done: Set<String> = []
        for spec in specs {
            guard case .image(let path, let tag)? = spec.container?.source, let digest = spec.container?.image?.manifestDigest else { continue }
            if done.contains(digest) || store.unpackedRoot(digest: digest) != nil { done.insert(digest); continue }
            let file = PathText.fileName(of: spec.sourcePath)
            do throws(ImageError) {
                let image = try OCIImage.resolve(path: path, tag: tag, verifyLayers: false)
                guard image.manifestDigest == digest else {
                    throw ImageError(.invalidImage, "\(path): changed while it was being read (\(digest) became \(image.manifestDigest)); reload again")
                }
                _ = try store.unpack(image)
                done.insert(digest)
            } catch {
                issues.append(ManifestIssue(file: file, table: "container", key: "image", value: "\"\(path)\"", message: "cannot unpack: \(error.description)"))
            }
        }
        if !issues.isEmpty { throw ManifestErrors(issues) }
    }
}
