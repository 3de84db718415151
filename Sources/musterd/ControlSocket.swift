import Glibc
import Logging
import MusterRuntime

/// The control socket's file: mode 0660 and group `control_group` when that group exists. The
/// real check is SO_PEERCRED on each connection; the mode keeps others from even connecting.
enum ControlSocket {
    static func restrict(path: String, group: String, logger: Logger) {
        if chmod(path, 0o660) != 0 {
            logger.warning("cannot chmod control socket \(path): \(FileSystem.errorText(errno))")
        }
        if let found = Accounts.group(named: group) {
            if chown(path, uid_t.max, found.gid) != 0 {
                logger.warning("cannot give control socket \(path) to group \(group): \(FileSystem.errorText(errno))")
            }
        }
    }
}
