import Glibc

extension FileSystem {
    /// `rm -rf path`, without following symlinks and without crossing into another mount: a
    /// container's writable layer holds whatever the container wrote, links to anywhere included.
    /// Missing is success. Throws the first entry that could not be removed.
    public static func removeTree(_ path: String) throws(Failure) {
        var info = stat()
        if lstat(path, &info) != 0 {
            if errno == ENOENT { return }
            throw Failure(operation: "stat", path: path, errno: errno)
        }
        if (info.st_mode & S_IFMT) == S_IFDIR {
            let fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard fd >= 0 else { throw Failure(operation: "open", path: path, errno: errno) }
            try removeContents(of: fd, path: path, device: info.st_dev)
            if rmdir(path) != 0 && errno != ENOENT { throw Failure(operation: "rmdir", path: path, errno: errno) }
        } else if unlink(path) != 0 && errno != ENOENT {
            throw Failure(operation: "unlink", path: path, errno: errno)
        }
    }

    /// Empties the folder open as `fd` (and closes it), staying on `device`.
    private static func removeContents(of fd: Int32, path: String, device: dev_t) throws(Failure) {
        guard let folder = fdopendir(fd) else {
            close(fd)
            throw Failure(operation: "opendir", path: path, errno: errno)
        }
        defer { closedir(folder) }
        var names: [String] = []
        while let entry = readdir(folder) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        for name in names {
            var info = stat()
            guard fstatat(fd, name, &info, AT_SYMLINK_NOFOLLOW) == 0 else {
                if errno == ENOENT { continue }
                throw Failure(operation: "stat", path: path + "/" + name, errno: errno)
            }
            if (info.st_mode & S_IFMT) == S_IFDIR {
                guard info.st_dev == device else { throw Failure(operation: "remove (a mount point)", path: path + "/" + name, errno: EXDEV) }
                let child = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                guard child >= 0 else { throw Failure(operation: "open", path: path + "/" + name, errno: errno) }
                try removeContents(of: child, path: path + "/" + name, device: device)
                if unlinkat(fd, name, AT_REMOVEDIR) != 0 && errno != ENOENT { throw Failure(operation: "rmdir", path: path + "/" + name, errno: errno) }
            } else if unlinkat(fd, name, 0) != 0 && errno != ENOENT {
                throw Failure(operation: "unlink", path: path + "/" + name, errno: errno)
            }
        }
    }
}
