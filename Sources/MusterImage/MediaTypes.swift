/// The media types Muster reads, OCI's and Docker's equivalents.
enum MediaTypes {
    static let index = ["application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"]
    static let manifest = ["application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json"]
    static let config = ["application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json"]

    enum LayerCompression { case none, gzip }

    /// nil for a layer Muster cannot unpack (zstd, foreign layers, anything unknown).
    static func layerCompression(_ mediaType: String) -> LayerCompression? {
        switch mediaType {
        case "application/vnd.oci.image.layer.v1.tar",
             "application/vnd.oci.image.layer.nondistributable.v1.tar",
             "application/vnd.docker.image.rootfs.diff.tar":
            return LayerCompression.none
        case "application/vnd.oci.image.layer.v1.tar+gzip",
             "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
             "application/vnd.docker.image.rootfs.diff.tar.gzip",
             "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip":
            return .gzip
        default:
            return nil
        }
    }
}
