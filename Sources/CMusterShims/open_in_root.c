// openat2(RESOLVE_IN_ROOT): opening a path of a container's root folder from the host, with
// every symlink and ".." resolved as if root_fd were "/". An image's /etc/passwd that links to
// /etc/shadow then means the image's own file, never the host's.
#define _GNU_SOURCE
#include "CMusterShims.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int muster_open_in_root(int root_fd, const char *path, int flags) {
#ifdef SYS_openat2
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = (unsigned long long)(flags | O_CLOEXEC);
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    return (int)syscall(SYS_openat2, root_fd, path, &how, sizeof how);
#else
    (void)root_fd; (void)path; (void)flags;
    errno = ENOSYS;
    return -1;
#endif
}
