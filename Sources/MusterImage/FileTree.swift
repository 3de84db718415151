import Glibc

/// Walking and removing trees of an unpacked root without ever following a symlink: a symlink
/// in an image may point anywhere on the host, and these run as root.
enum FileTree {
    static func errorText() -> String { String(cString: strerror(errno)) }

    /// The file type bits of `path` itself (a symlink is a symlink), or nil when it does not exist.
    static func type(_ path: String) -> mode_t? {
        var info = stat()
        return lstat(path, &info) == 0 ? info.st_mode & S_IFMT : nil
    }

    static func names(in folder: String) -> [String] {
        guard let dir = opendir(folder) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: &entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// rm -rf: symlinks are removed, never followed. Nothing there is not an error.
    static func remove(_ path: String) throws(ImageError) {
        guard let type = type(path) else { return }
        if type == S_IFDIR {
            for name in names(in: path) { try remove(path + "/" + name) }
            if rmdir(path) != 0 && errno != ENOENT { throw ImageError(.io, "\(path): cannot remove: \(errorText())") }
        } else if unlink(path) != 0 && errno != ENOENT {
            throw ImageError(.io, "\(path): cannot remove: \(errorText())")
        }
    }

    /// Bytes the tree takes on disk (allocated blocks), each hard-linked file counted once.
    static func diskBytes(_ path: String) -> Int64 {
        var seen = Set<UInt64>()
        return diskBytes(path, seen: &seen)
    }

    private static func diskBytes(_ path: String, seen: inout Set<UInt64>) -> Int64 {
        var info = stat()
        guard lstat(path, &info) == 0 else { return 0 }
        if info.st_nlink > 1 && (info.st_mode & S_IFMT) != S_IFDIR {
            guard seen.insert(UInt64(info.st_ino)).inserted else { return 0 }
        }
        var total = Int64(info.st_blocks) * 512
        if (info.st_mode & S_IFMT) == S_IFDIR {
            for name in names(in: path) { total += diskBytes(path + "/" + name, seen: &seen) }
        }
        return total
    }
}
