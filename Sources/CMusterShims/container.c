// The container half of the spawn child: namespaces, the overlay root, pivot_root, and the
// mounts every container runtime gives (/proc, a minimal /dev, /sys read-only, cgroup2), then the
// manifest's bind mounts. It runs between clone and exec like the rest of the child, so the rule
// of spawn.c holds here too: raw system calls and stack memory only, nothing that takes a lock.
//
// Everything the image controls is resolved after pivot_root, never before: a symlink in the
// image (say /proc -> /etc) then points into the container, not at the host. The host paths the
// container needs (the sources of bind mounts) are opened with open_tree before the pivot and
// attached with move_mount after it.
#define _GNU_SOURCE
#include "CMusterShims.h"
#include "container.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif

// The mounts of a container besides its binds, in the order they are made: the index
// MUSTER_STEP_CONTAINER_MOUNT reports.
enum {
    M_PROC, M_DEV, M_DEV_NODES, M_DEV_PTS, M_DEV_SHM, M_DEV_MQUEUE, M_DEV_LINKS, M_SYS, M_CGROUP,
    M_MASKED, M_READ_ONLY, M_COUNT
};
static const char *const mount_names[M_COUNT] = {
    "/proc", "/dev", "/dev device nodes", "/dev/pts", "/dev/shm", "/dev/mqueue", "/dev links",
    "/sys", "/sys/fs/cgroup", "a masked path", "a read-only /proc path",
};

const char *muster_container_mount_name(int index) {
    return index >= 0 && index < M_COUNT ? mount_names[index] : NULL;
}

// Paths runc, crun and podman hide from every container by default (their OCI spec's
// maskedPaths): kernel memory, key and timer tables, firmware. A file gets the container's
// /dev/null bound over it, read-only (as crun does), a folder an empty read-only tmpfs; one this
// kernel does not have is skipped.
static const char *const masked_paths[] = {
    "/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/sched_debug", "/proc/scsi", "/proc/timer_list", "/proc/timer_stats", "/sys/devices/virtual/powercap",
    "/sys/firmware",
};

// ... and make read-only (their readonlyPaths): the kernel's knobs under /proc.
static const char *const read_only_paths[] = {
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
};

// The device nodes of a minimal /dev (the OCI runtime spec's default devices).
static const struct { const char *path; unsigned major, minor; } devices[] = {
    { "/dev/null", 1, 3 }, { "/dev/zero", 1, 5 }, { "/dev/full", 1, 7 }, { "/dev/random", 1, 8 },
    { "/dev/urandom", 1, 9 }, { "/dev/tty", 5, 0 },
};

static const struct { const char *target, *path; } dev_links[] = {
    { "/proc/self/fd", "/dev/fd" }, { "/proc/self/fd/0", "/dev/stdin" }, { "/proc/self/fd/1", "/dev/stdout" },
    { "/proc/self/fd/2", "/dev/stderr" }, { "pts/ptmx", "/dev/ptmx" }, { "/proc/kcore", "/dev/core" },
};

#define COUNT(array) (sizeof (array) / sizeof (array)[0])

static int mkdir_exists_ok(const char *path, mode_t mode) {
    if (mkdir(path, mode) == 0 || errno == EEXIST) return 0;
    return -1;
}

// mkdir -p inside the container (after the pivot, so every symlink resolves within it). The path
// is copied to the stack: the child may not allocate.
static int make_parents(const char *path) {
    char buf[4096];
    size_t length = strlen(path);
    if (length >= sizeof buf) { errno = ENAMETOOLONG; return -1; }
    memcpy(buf, path, length + 1);
    for (size_t i = 1; i < length; i++) {
        if (buf[i] != '/') continue;
        buf[i] = 0;
        int rc = mkdir_exists_ok(buf, 0755);
        buf[i] = '/';
        if (rc < 0) return -1;
    }
    return 0;
}

// A mount point of the kind the mounted object is: a folder for a folder, an empty file for
// anything else. One that exists is used as it is.
static int make_mount_point(const char *path, int directory) {
    if (make_parents(path) < 0) return -1;
    if (directory) return mkdir_exists_ok(path, 0755);
    int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC | O_NOCTTY, 0644);
    if (fd < 0) return errno == EISDIR ? 0 : -1;
    close(fd);
    return 0;
}

// Read-only on the mount at path and every mount below it (mount_setattr, Linux 5.12), or on the
// top one with a bind remount that keeps its other flags.
static int make_mount_read_only(const char *path) {
#if defined(SYS_mount_setattr) && defined(MOUNT_ATTR_RDONLY)
    struct mount_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.attr_set = MOUNT_ATTR_RDONLY;
    if (syscall(SYS_mount_setattr, AT_FDCWD, path, AT_RECURSIVE, &attr, sizeof attr) == 0) return 0;
    if (errno != ENOSYS) return -1;
#endif
    struct statfs fs;
    if (statfs(path, &fs) < 0) return -1;
    unsigned long keep = (unsigned long)fs.f_flags & (MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME | MS_RELATIME);
    return mount(NULL, path, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | keep, NULL);
}

static int mount_dev(int *which) {
    *which = M_DEV;
    if (mkdir_exists_ok("/dev", 0755) < 0) return -1;
    if (mount("tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k") < 0) return -1;

    *which = M_DEV_NODES;
    for (size_t i = 0; i < COUNT(devices); i++) {
        if (mknod(devices[i].path, S_IFCHR | 0666, makedev(devices[i].major, devices[i].minor)) < 0) return -1;
        if (fchmodat(AT_FDCWD, devices[i].path, 0666, 0) < 0) return -1;  // mknod's mode passes the umask
    }
    *which = M_DEV_PTS;
    if (mkdir_exists_ok("/dev/pts", 0755) < 0) return -1;
    if (mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5") < 0) return -1;
    *which = M_DEV_SHM;
    if (mkdir_exists_ok("/dev/shm", 01777) < 0) return -1;
    if (mount("shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k") < 0) return -1;
    *which = M_DEV_MQUEUE;
    if (mkdir_exists_ok("/dev/mqueue", 0755) < 0) return -1;
    if (mount("mqueue", "/dev/mqueue", "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) return -1;
    *which = M_DEV_LINKS;
    for (size_t i = 0; i < COUNT(dev_links); i++) {
        if (symlink(dev_links[i].target, dev_links[i].path) < 0 && errno != EEXIST) return -1;
    }
    return 0;
}

static int mask_paths(void) {
    for (size_t i = 0; i < COUNT(masked_paths); i++) {
        struct stat st;
        if (lstat(masked_paths[i], &st) < 0) { if (errno == ENOENT) continue; return -1; }
        int rc = S_ISDIR(st.st_mode)
            ? mount("tmpfs", masked_paths[i], "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0")
            : mount("/dev/null", masked_paths[i], NULL, MS_BIND, NULL);
        if (rc < 0) return -1;
        if (!S_ISDIR(st.st_mode) && make_mount_read_only(masked_paths[i]) < 0) return -1;
    }
    return 0;
}

static int read_only_proc_paths(void) {
    for (size_t i = 0; i < COUNT(read_only_paths); i++) {
        if (mount(read_only_paths[i], read_only_paths[i], NULL, MS_BIND | MS_REC, NULL) < 0) {
            if (errno == ENOENT) continue;
            return -1;
        }
        if (make_mount_read_only(read_only_paths[i]) < 0) return -1;
    }
    return 0;
}

// The runtime's own mounts, inside the new root.
static int mount_filesystems(int *which) {
    *which = M_PROC;
    if (mkdir_exists_ok("/proc", 0555) < 0) return -1;
    // In the new pid namespace, so it lists the container's processes only.
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) return -1;
    if (mount_dev(which) < 0) return -1;
    *which = M_SYS;
    if (mkdir_exists_ok("/sys", 0555) < 0) return -1;
    if (mount("sysfs", "/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) return -1;
    *which = M_CGROUP;
    // In the new cgroup namespace, whose root is the instance's own cgroup: the container sees its
    // own limits and usage, and nothing of the host's tree.
    if (mount("cgroup2", "/sys/fs/cgroup", "cgroup2", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) return -1;
    *which = M_MASKED;
    if (mask_paths() < 0) return -1;
    *which = M_READ_ONLY;
    return read_only_proc_paths();
}

// `ip link set lo up` in the new network namespace: SIOCSIFFLAGS on a datagram socket.
static int bring_up_loopback(void) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct ifreq request;
    memset(&request, 0, sizeof request);
    memcpy(request.ifr_name, "lo", 3);
    int rc = ioctl(fd, SIOCGIFFLAGS, &request);
    if (rc == 0) {
        request.ifr_flags |= IFF_UP | IFF_RUNNING;
        rc = ioctl(fd, SIOCSIFFLAGS, &request);
    }
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

int muster_enter_container(const muster_spawn_request *q, int *step, int *index) {
    int flags = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWCGROUP | (q->private_network ? CLONE_NEWNET : 0);
    // Unshared here, not at clone: the cgroup namespace's root is the cgroup the child is in at
    // this moment, which is its own leaf only once it has joined it.
    if (syscall(SYS_unshare, flags) < 0) { *step = MUSTER_STEP_CONTAINER_NAMESPACES; return -1; }
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) { *step = MUSTER_STEP_MOUNT_PRIVATE; return -1; }

    // The bind sources, copied from the host's tree while it is still reachable.
    int sources[MUSTER_MAX_CONTAINER_BINDS];
    size_t binds = q->bind_count;
    if (binds > MUSTER_MAX_CONTAINER_BINDS) { *step = MUSTER_STEP_CONTAINER_BIND; errno = E2BIG; return -1; }
    for (size_t i = 0; i < binds; i++) {
        sources[i] = (int)syscall(SYS_open_tree, AT_FDCWD, q->bind_sources[i], OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
        if (sources[i] < 0) { *step = MUSTER_STEP_CONTAINER_BIND; *index = (int)i; return -1; }
    }

    if (mount("overlay", q->container_root, "overlay", 0, q->overlay_options) < 0) { *step = MUSTER_STEP_CONTAINER_ROOT; return -1; }
    // pivot_root(".", "."), as runc does: the old root ends up stacked under the new one and is
    // detached at once, so nothing of the host's tree stays reachable (chroot would leave it).
    if (chdir(q->container_root) < 0 || syscall(SYS_pivot_root, ".", ".") < 0 || umount2(".", MNT_DETACH) < 0 || chdir("/") < 0) {
        *step = MUSTER_STEP_CONTAINER_PIVOT; return -1;
    }

    int which = 0;
    if (mount_filesystems(&which) < 0) { *step = MUSTER_STEP_CONTAINER_MOUNT; *index = which; return -1; }

    for (size_t i = 0; i < binds; i++) {
        struct stat st;
        const char *target = q->bind_targets[i];
        if (fstat(sources[i], &st) < 0 || make_mount_point(target, S_ISDIR(st.st_mode)) < 0
            || syscall(SYS_move_mount, sources[i], "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH) < 0
            || (q->bind_read_only[i] && make_mount_read_only(target) < 0)) {
            *step = MUSTER_STEP_CONTAINER_BIND; *index = (int)i; return -1;
        }
        close(sources[i]);
    }

    if (q->hostname && sethostname(q->hostname, strlen(q->hostname)) < 0) { *step = MUSTER_STEP_CONTAINER_HOSTNAME; return -1; }
    if (q->private_network && bring_up_loopback() < 0) { *step = MUSTER_STEP_CONTAINER_LOOPBACK; return -1; }
    return 0;
}
