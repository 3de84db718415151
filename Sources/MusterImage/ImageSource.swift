import Glibc

/// Where an image's files are: an OCI image layout folder (`oci-layout`, `index.json`,
/// `blobs/sha256/…`) or an oci-archive, the same layout in one tar file.
enum ImageSource: Sendable, Equatable {
    case layout(String)
    case archive(String)

    /// The absolute, symlink-free path: an image is named by where it really is.
    static func at(_ path: String) throws(ImageError) -> ImageSource {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw ImageError(.missingImage, "\(path): no such image (build one with scripts/images/busybox-image, umoci, or `podman save --format oci-archive`, or fix the path)")
        }
        guard let real = realpath(path, nil) else {
            throw ImageError(.io, "\(path): cannot resolve: \(String(cString: strerror(errno)))")
        }
        defer { free(real) }
        let absolute = String(cString: real)
        if (info.st_mode & S_IFMT) == S_IFDIR { return .layout(absolute) }
        if (info.st_mode & S_IFMT) == S_IFREG { return .archive(absolute) }
        throw ImageError(.missingImage, "\(path): neither an image layout folder nor an oci-archive file (point it at one)")
    }

    var path: String {
        switch self {
        case .layout(let path), .archive(let path): return path
        }
    }

    /// How a file of the image is named in messages.
    func label(_ member: String) -> String {
        switch self {
        case .layout(let folder): return folder + "/" + member
        case .archive(let file): return file + ":" + member
        }
    }

    /// nil when the image has no such file.
    func open(_ member: String) throws(ImageError) -> ByteSource? {
        switch self {
        case .layout(let folder): return try FileBytes(path: folder + "/" + member)
        case .archive(let file): return try ArchiveMemberBytes(archivePath: file, member: member)
        }
    }

    /// A blob, checked against its descriptor as it is read.
    func blob(_ digest: BlobDigest, size: Int64) throws(ImageError) -> VerifiedBlob {
        let file = label(digest.blobPath)
        guard let bytes = try open(digest.blobPath) else {
            throw ImageError(.missingBlob, "\(file): blob \(digest) is missing (the image is incomplete; rebuild or re-copy it, and do not `umoci gc` while it is in use)")
        }
        return VerifiedBlob(digest: digest, size: size, file: file, bytes: bytes)
    }

    /// A small file read whole (index.json, oci-layout).
    func readSmall(_ member: String, limit: Int = 4 << 20) throws(ImageError) -> [UInt8]? {
        guard let bytes = try open(member) else { return nil }
        var out: [UInt8] = []
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 16, alignment: 16)
        defer { chunk.deallocate() }
        while true {
            let n = try bytes.read(into: chunk)
            if n == 0 { return out }
            out.append(contentsOf: chunk[0..<n])
            if out.count > limit {
                throw ImageError(.invalidImage, "\(label(member)): larger than \(limit) bytes, which no \(member) is (the image is damaged)")
            }
        }
    }
}
