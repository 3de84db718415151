// The spawn shim. The parent is a multi-threaded Swift process, so between clone and exec the
// child may only make async-signal-safe calls: another thread may have held a lock (malloc's, the
// stdio lock, the dynamic loader's) at the moment of the clone, and that lock stays held forever
// in the child. Everything below the clone uses raw system calls and stack memory only.
#define _GNU_SOURCE
#include "CMusterShims.h"
#include "container.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif
#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif

struct child_report { int step; int error; int index; };

// Async-signal-safe: write(2) only. Retries on EINTR; a short write of 12 bytes to a fresh pipe
// cannot happen.
static void report_at(int fd, int step, int index) {
    struct child_report r = { step, errno, index };
    while (write(fd, &r, sizeof r) < 0 && errno == EINTR) {}
}

static void report(int fd, int step) { report_at(fd, step, 0); }

// Async-signal-safe: open/write/close. Writing "0" to cgroup.procs moves the writer itself.
static int join_cgroup(const char *procs_path) {
    int fd = open(procs_path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n;
    do { n = write(fd, "0", 1); } while (n < 0 && errno == EINTR);
    int saved = errno;
    close(fd);
    errno = saved;
    return n == 1 ? 0 : -1;
}

// ---- Isolation. Everything here runs in the child between clone and exec, so the same rule
// holds: raw system calls (mount, umount2, open, stat, prctl, capget/capset, prlimit64, setns),
// stack memory, and nothing that takes a lock. Each returns -1 with errno and the failing entry
// in *index.

// "-/path": skip when missing (systemd's spelling). Sets *optional and returns the path itself.
static const char *entry_path(const char *entry, int *optional) {
    *optional = entry[0] == '-';
    return *optional ? entry + 1 : entry;
}

// "/proc/self/fd/N" into buf (at least 32 bytes): a path that means exactly the open file, even
// once something else has been mounted over the name it was opened by.
static const char *fd_path(char *buf, int fd) {
    static const char prefix[] = "/proc/self/fd/";
    char digits[12];
    int n = 0;
    unsigned value = (unsigned)fd;
    do { digits[n++] = (char)('0' + value % 10); value /= 10; } while (value && n < (int)sizeof digits);
    memcpy(buf, prefix, sizeof prefix - 1);
    int at = (int)sizeof prefix - 1;
    while (n) buf[at++] = digits[--n];
    buf[at] = 0;
    return buf;
}

static int rlimit_resource(int which) {
    switch (which) {
    case MUSTER_LIMIT_NOFILE: return RLIMIT_NOFILE;
    case MUSTER_LIMIT_NPROC: return RLIMIT_NPROC;
    case MUSTER_LIMIT_CORE: return RLIMIT_CORE;
    case MUSTER_LIMIT_MEMLOCK: return RLIMIT_MEMLOCK;
    default: return -1;
    }
}

// The soft RLIMIT_NOFILE musterd started with, when muster_raise_open_file_limit raised its own;
// 0: not raised. Written once at start, before the first spawn; only read after.
static uint64_t child_nofile_soft = 0;

static int apply_rlimits(const muster_spawn_request *q, int *index) {
    // Children get the soft limit musterd was started with, not the raised one: programs that
    // still use select() break on descriptors above 1024 (systemd does the same for its units).
    // A manifest's own nofile, applied below, overrides this.
    if (child_nofile_soft) {
        struct { uint64_t cur, max; } limit;
        if (syscall(SYS_prlimit64, 0, RLIMIT_NOFILE, NULL, &limit) == 0 && limit.cur > child_nofile_soft) {
            limit.cur = child_nofile_soft;
            (void)syscall(SYS_prlimit64, 0, RLIMIT_NOFILE, &limit, NULL);
        }
    }
    for (size_t i = 0; i < q->rlimit_count; i++) {
        int resource = rlimit_resource(q->rlimits[i].resource);
        if (resource < 0) { *index = (int)i; errno = EINVAL; return -1; }
        struct { uint64_t cur, max; } limit = { q->rlimits[i].value, q->rlimits[i].value };
        if (syscall(SYS_prlimit64, 0, resource, &limit, NULL) < 0) { *index = (int)i; return -1; }
    }
    return 0;
}

// Sets (or clears) MS_RDONLY on the mount at path, keeping its other flags: a bind remount takes
// the complete flag set, and dropping nosuid/nodev/noexec by accident would loosen the host's.
// The ST_* flags of statfs have the values of the MS_* ones.
static int remount_bind(const char *path, int read_only) {
    struct statfs fs;
    if (statfs(path, &fs) < 0) return -1;
    unsigned long keep = (unsigned long)fs.f_flags & (MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME | MS_RELATIME);
    return mount(NULL, path, NULL, MS_REMOUNT | MS_BIND | keep | (read_only ? MS_RDONLY : 0), NULL);
}

// mount_setattr(2) (Linux 5.12): flips only the read-only flag, on every mount below path when
// recursive. Returns -1 with ENOSYS on older kernels.
static int set_read_only(const char *path, int read_only, int recursive) {
#if defined(SYS_mount_setattr) && defined(MOUNT_ATTR_RDONLY)
    struct mount_attr attr;
    memset(&attr, 0, sizeof attr);
    if (read_only) attr.attr_set = MOUNT_ATTR_RDONLY; else attr.attr_clr = MOUNT_ATTR_RDONLY;
    return (int)syscall(SYS_mount_setattr, AT_FDCWD, path, recursive ? AT_RECURSIVE : 0, &attr, sizeof attr);
#else
    (void)path; (void)read_only; (void)recursive;
    errno = ENOSYS;
    return -1;
#endif
}

// read_only_paths: a recursive bind of the path onto itself, then read-only on it and every
// mount below it. Without mount_setattr, only the top mount becomes read-only.
static int make_read_only(const char *path) {
    if (mount(path, path, NULL, MS_BIND | MS_REC, NULL) < 0) return -1;
    if (set_read_only(path, 1, 1) == 0) return 0;
    if (errno != ENOSYS) return -1;
    return remount_bind(path, 1);
}

// inaccessible_paths: a folder gets an empty read-only tmpfs of mode 000 over it; anything else
// gets an empty read-only file of mode 000 bound over it. That file lives on a staging tmpfs
// mounted over /tmp only for the moment of the bind; the target is opened first, so a target
// under /tmp still means the real one.
static int make_inaccessible(const char *path) {
    struct stat st;
    if (stat(path, &st) < 0) return -1;
    if (S_ISDIR(st.st_mode)) {
        return mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=000,size=4k");
    }
    int target = open(path, O_PATH | O_CLOEXEC);
    if (target < 0) return -1;
    int rc = -1;
    if (mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=700,size=4k") == 0) {
        int empty = open("/tmp/inaccessible", O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0);
        if (empty >= 0) {
            close(empty);
            char where[32];
            if (fchmodat(AT_FDCWD, "/tmp/inaccessible", 0, 0) == 0
                && mount(NULL, "/tmp", NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) == 0
                && mount("/tmp/inaccessible", fd_path(where, target), NULL, MS_BIND, NULL) == 0) {
                rc = 0;
            }
        }
        int saved = errno;
        (void)umount2("/tmp", MNT_DETACH);
        errno = saved;
    }
    close(target);
    return rc;
}

// The mount namespace of an instance. Order: "/" private (nothing propagates back to the host),
// read-only paths, writable paths inside them, the private /tmp, and inaccessible paths last, so
// hiding wins over everything else.
static int set_up_mounts(const muster_spawn_request *q, int *step, int *index) {
    *index = 0;
    // A container has its mount namespace already, and these paths are the container's.
    if (!q->container_root) {
        if (syscall(SYS_unshare, CLONE_NEWNS) < 0) { *step = MUSTER_STEP_MOUNT_NAMESPACE; return -1; }
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) { *step = MUSTER_STEP_MOUNT_PRIVATE; return -1; }
    }

    // Writable paths are copied (open_tree, Linux 5.2) before anything turns read-only, and put
    // back on top afterwards: each comes back exactly as the host has it, submounts included.
    int clones[MUSTER_MAX_WRITABLE_PATHS];
    size_t writable = q->writable_count;
    if (writable > MUSTER_MAX_WRITABLE_PATHS) { *step = MUSTER_STEP_WRITABLE; errno = E2BIG; return -1; }
    for (size_t i = 0; i < writable; i++) {
        int optional;
        const char *path = entry_path(q->writable_paths[i], &optional);
        clones[i] = -1;
#if defined(SYS_open_tree) && defined(OPEN_TREE_CLONE)
        clones[i] = (int)syscall(SYS_open_tree, AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
        if (clones[i] < 0 && errno == ENOENT && optional) continue;
        if (clones[i] < 0 && errno != ENOSYS) { *step = MUSTER_STEP_WRITABLE; *index = (int)i; return -1; }
#endif
    }

    for (size_t i = 0; i < q->read_only_count; i++) {
        int optional;
        const char *path = entry_path(q->read_only_paths[i], &optional);
        if (make_read_only(path) < 0) {
            if (errno == ENOENT && optional) continue;
            *step = MUSTER_STEP_READ_ONLY; *index = (int)i; return -1;
        }
    }

    for (size_t i = 0; i < writable; i++) {
        int optional;
        const char *path = entry_path(q->writable_paths[i], &optional);
        int rc;
        if (clones[i] >= 0) {
#if defined(SYS_move_mount) && defined(MOVE_MOUNT_F_EMPTY_PATH)
            rc = (int)syscall(SYS_move_mount, clones[i], "", AT_FDCWD, path, MOVE_MOUNT_F_EMPTY_PATH);
#else
            rc = -1; errno = ENOSYS;
#endif
            int saved = errno;
            close(clones[i]);
            errno = saved;
        } else {
            // No open_tree: bind the path onto itself and clear read-only on that one mount.
            rc = mount(path, path, NULL, MS_BIND | MS_REC, NULL);
            if (rc < 0 && errno == ENOENT && optional) continue;
            if (rc == 0 && set_read_only(path, 0, 0) < 0) rc = errno == ENOSYS ? remount_bind(path, 0) : -1;
        }
        if (rc < 0) {
            int saved = errno;
            for (size_t j = i + 1; j < writable; j++) if (clones[j] >= 0) close(clones[j]);
            errno = saved;
            *step = MUSTER_STEP_WRITABLE; *index = (int)i; return -1;
        }
    }

    if (q->private_tmp && mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") < 0) {
        *step = MUSTER_STEP_PRIVATE_TMP; return -1;
    }

    for (size_t i = 0; i < q->inaccessible_count; i++) {
        int optional;
        const char *path = entry_path(q->inaccessible_paths[i], &optional);
        if (make_inaccessible(path) < 0) {
            if (errno == ENOENT && optional) continue;
            *step = MUSTER_STEP_INACCESSIBLE; *index = (int)i; return -1;
        }
    }
    return 0;
}

// Bounding set and ambient set, while the child still has CAP_SETPCAP (it goes with setuid to
// a non-root user): after this, nothing the child execs can gain a capability outside the list.
static int limit_bounding_set(const muster_spawn_request *q, int *step, int *index) {
    for (int cap = 0; cap <= q->cap_last && cap < 64; cap++) {
        if (q->keep_capabilities & (1ULL << cap)) continue;
        if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) != 1) continue;  // not in the set, or unknown here
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) { *step = MUSTER_STEP_CAPBSET; *index = cap; return -1; }
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL) {
        *step = MUSTER_STEP_AMBIENT; return -1;
    }
    return 0;
}

// Permitted, effective and inheritable cut to the list, after setuid. For a service that stays
// root this is what takes the capabilities away now (root keeps its permitted set through a
// bounding-set drop until exec, and inheritable passes through exec); for one that left root,
// permitted and effective are already empty and only inheritable is left to cut.
static int limit_capability_sets(const muster_spawn_request *q) {
    struct __user_cap_header_struct header = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    if (syscall(SYS_capget, &header, data) < 0) return -1;
    for (int i = 0; i < 2; i++) {
        uint32_t keep = (uint32_t)(q->keep_capabilities >> (32 * i));
        data[i].permitted &= keep;
        data[i].effective &= keep;
        data[i].inheritable &= keep;
    }
    return (int)syscall(SYS_capset, &header, data);
}

// Async-signal-safe: prctl only. The program is the daemon's, read in place (shared memory
// after clone3, a copy after fork). The kernel takes it only from a thread with no_new_privs set
// or CAP_SYS_ADMIN in effect (EACCES otherwise), and applies it to every call after this one:
// what the child still does before exec (setresuid, capset, close_range, rt_sigprocmask,
// execve, and write/exit_group to report a failure) must be allowed by it.
static int load_seccomp_filter(const muster_spawn_request *q) {
    if (q->seccomp_filter_length > 0xffff) { errno = E2BIG; return -1; }
    struct sock_fprog program = { (unsigned short)q->seccomp_filter_length, (struct sock_filter *)q->seccomp_filter };
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program, 0, 0);
}

// Runs in the child only; never returns. The raw syscalls for credentials matter: glibc's
// setuid() broadcasts to every thread it believes exists, and after a raw clone3 the child's copy
// of glibc still lists the parent's threads. The kernel call changes this (only) thread, which is
// the whole process here.
static void child_main(const muster_spawn_request *q, int report_fd, int devnull, int joined_v2) {
    // Signal dispositions and mask are inherited, and an ignored signal stays ignored across exec:
    // the daemon ignores SIGPIPE (NIO), and runtimes may ignore glibc's reserved real-time signals
    // (32, 33), which glibc's sigaction() refuses to touch. The raw system call resets them all, so
    // a service starts with the defaults.
    struct { void *handler; unsigned long flags; void *restorer; unsigned long mask; } dfl;
    memset(&dfl, 0, sizeof dfl);  // handler 0 is SIG_DFL
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        (void)syscall(SYS_rt_sigaction, sig, &dfl, NULL, sizeof dfl.mask);
    }

    if (!joined_v2 && q->cgroup2_procs_path && join_cgroup(q->cgroup2_procs_path) < 0) {
        report(report_fd, MUSTER_STEP_CGROUP); _exit(127);
    }
    for (size_t i = 0; i < q->v1_count; i++) {
        if (join_cgroup(q->v1_procs_paths[i]) < 0) { report(report_fd, MUSTER_STEP_CGROUP); _exit(127); }
    }
    if (setsid() < 0) { report(report_fd, MUSTER_STEP_SETSID); _exit(127); }

    // Isolation that needs privilege comes before the ids change: rlimits (raising a hard limit
    // needs CAP_SYS_RESOURCE), mounts (CAP_SYS_ADMIN), the bounding set (CAP_SETPCAP).
    int step = 0, index = 0;
    if (apply_rlimits(q, &index) < 0) { report_at(report_fd, MUSTER_STEP_RLIMIT, index); _exit(127); }
    if (q->container_root && muster_enter_container(q, &step, &index) < 0) { report_at(report_fd, step, index); _exit(127); }
    if (q->join_mount_namespace) {
        int joined = q->join_container_namespaces ? CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWCGROUP : CLONE_NEWNS;
        if (syscall(SYS_setns, q->mount_namespace_fd, joined) < 0) { report(report_fd, MUSTER_STEP_JOIN_MOUNT_NAMESPACE); _exit(127); }
    } else if (q->new_mount_namespace) {
        if (set_up_mounts(q, &step, &index) < 0) { report_at(report_fd, step, index); _exit(127); }
    }
    if (q->limit_capabilities && limit_bounding_set(q, &step, &index) < 0) { report_at(report_fd, step, index); _exit(127); }
    // Without no_new_privs a filter needs CAP_SYS_ADMIN, which the child still has here (a root
    // daemon's, until setuid or capset below) and may not have at the end: so it goes on now,
    // after the mounts it would refuse, as runc and crun load it before dropping capabilities.
    // Setting no_new_privs to make the later spot work would undo the manifest's choice to let
    // setuid programs work, so it is not done.
    if (q->seccomp_filter && !q->no_new_privs && load_seccomp_filter(q) < 0) { report(report_fd, MUSTER_STEP_SECCOMP); _exit(127); }

    if (q->set_ids) {
        if (syscall(SYS_setgroups, q->group_count, q->groups) < 0) { report(report_fd, MUSTER_STEP_SETGROUPS); _exit(127); }
        if (syscall(SYS_setresgid, q->gid, q->gid, q->gid) < 0) { report(report_fd, MUSTER_STEP_SETGID); _exit(127); }
        if (syscall(SYS_setresuid, q->uid, q->uid, q->uid) < 0) { report(report_fd, MUSTER_STEP_SETUID); _exit(127); }
    }
    if (chdir(q->directory ? q->directory : "/") < 0) { report(report_fd, MUSTER_STEP_CHDIR); _exit(127); }

    int out = q->stdout_fd >= 0 ? q->stdout_fd : devnull;
    int err = q->stderr_fd >= 0 ? q->stderr_fd : devnull;
    if (dup2(devnull, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0) {
        report(report_fd, MUSTER_STEP_STDIO); _exit(127);
    }
    if (q->limit_capabilities && limit_capability_sets(q) < 0) { report(report_fd, MUSTER_STEP_CAPSET); _exit(127); }
    if (q->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) { report(report_fd, MUSTER_STEP_NO_NEW_PRIVS); _exit(127); }
    // With no_new_privs the filter goes on last, so it stands between the service and as few of
    // the shim's own calls as possible, and works for a child that has no capability left.
    if (q->seccomp_filter && q->no_new_privs && load_seccomp_filter(q) < 0) { report(report_fd, MUSTER_STEP_SECCOMP); _exit(127); }

    // Socket activation (sd_listen_fds): the listening socket is descriptor 3, the first after
    // stdio, and stays open across exec. A report pipe that sits at 3 moves out of the way first.
    unsigned first_closed = 3;
    if (q->pass_listen_socket) {
        if (report_fd == 3) {
            int moved = fcntl(report_fd, F_DUPFD_CLOEXEC, 4);
            if (moved < 0) { report(report_fd, MUSTER_STEP_LISTEN_SOCKET); _exit(127); }
            report_fd = moved;
        }
        int listener = q->listen_socket;
        if (listener == 3) {
            if (fcntl(3, F_SETFD, 0) < 0) { report(report_fd, MUSTER_STEP_LISTEN_SOCKET); _exit(127); }
        } else if (dup2(listener, 3) < 0) {  // dup2 leaves the copy without FD_CLOEXEC
            report(report_fd, MUSTER_STEP_LISTEN_SOCKET); _exit(127);
        }
        first_closed = 4;
    }

    // Every other descriptor closes at exec, the report pipe included: EOF tells the parent that
    // exec succeeded. Marking them CLOEXEC (rather than closing) keeps report_fd usable until then.
    if (syscall(SYS_close_range, first_closed, ~0U, CLOSE_RANGE_CLOEXEC) < 0) {
        for (int fd = (int)first_closed; fd < 65536; fd++) if (fd != report_fd) (void)close(fd);
    }

    sigset_t none;
    sigemptyset(&none);
    (void)sigprocmask(SIG_SETMASK, &none, NULL);
    execve(q->path, q->argv, q->envp);
    report(report_fd, MUSTER_STEP_EXEC);
    _exit(127);
}

struct child_args {
    const muster_spawn_request *q;
    int report_fd;
    int devnull;
    int joined_v2;
};

static int child_entry(void *raw) {
    struct child_args *a = raw;
    child_main(a->q, a->report_fd, a->devnull, a->joined_v2);
    return 127;
}

#if defined(__x86_64__) && defined(SYS_clone3)
// clone3 whose child runs fn(arg) on a stack of its own. glibc 2.36 exports no clone3 wrapper,
// and a child sharing the parent's memory (CLONE_VM) cannot return from syscall() into the
// parent's stack frame. The kernel keeps every register but rax, rcx and r11 across the call, in
// the child too, so fn travels in rdx and arg in r8 (this mirrors glibc's own __clone3).
// Returns the child's pid to the parent, or -errno.
long muster_clone3_asm(struct clone_args *args, size_t size, int (*fn)(void *), void *arg);
__asm__(
    ".text\n"
    ".globl muster_clone3_asm\n"
    ".type muster_clone3_asm,@function\n"
    "muster_clone3_asm:\n"
    "    mov %rcx, %r8\n"
    "    mov $435, %eax\n"          // __NR_clone3
    "    syscall\n"
    "    test %rax, %rax\n"
    "    jz 1f\n"
    "    ret\n"
    "1:  xor %ebp, %ebp\n"         // the child: outermost frame, on its own stack
    "    and $-16, %rsp\n"
    "    mov %r8, %rdi\n"
    "    call *%rdx\n"
    "    mov %eax, %edi\n"
    "    mov $60, %eax\n"           // __NR_exit
    "    syscall\n"
    "    hlt\n"
    ".size muster_clone3_asm, .-muster_clone3_asm\n"
);
#define MUSTER_HAVE_CLONE3_VM 1
#endif

// Starts the child with clone3(CLONE_VM | CLONE_VFORK | CLONE_PIDFD [| CLONE_INTO_CGROUP]): the
// child borrows the daemon's memory instead of copying its page tables (what a fork of a 30-60 MB
// process costs is most of a spawn), and the parent sleeps until the child has exec'd or exited,
// as with vfork. That is also why the child may touch nothing but its own stack: the parent's
// memory is shared, and the parent thread is parked, not gone.
static pid_t clone3_vm(struct child_args *a, int cgroup_fd, int *pidfd) {
#ifdef MUSTER_HAVE_CLONE3_VM
    // Heap, not mmap: below malloc's mmap threshold this costs no system call, and the child only
    // needs a few kilobytes of it.
    const size_t stack_size = 64 * 1024;
    void *stack = malloc(stack_size);
    if (!stack) { errno = ENOMEM; return -1; }
    struct clone_args args;
    memset(&args, 0, sizeof args);
    args.flags = CLONE_VM | CLONE_VFORK | CLONE_PIDFD;
    // A container's service is PID 1 of a pid namespace of its own; its other namespaces are
    // unshared by the child (container.c).
    if (a->q->container_root) args.flags |= CLONE_NEWPID;
    args.pidfd = (uint64_t)(uintptr_t)pidfd;
    args.exit_signal = SIGCHLD;
    args.stack = (uint64_t)(uintptr_t)stack;
    args.stack_size = stack_size;
    if (cgroup_fd >= 0) {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = (uint64_t)cgroup_fd;
    }
    long rc = muster_clone3_asm(&args, sizeof args, child_entry, a);
    // CLONE_VFORK: by now the child has exec'd (its own memory) or exited; the stack is free.
    free(stack);
    if (rc < 0) { errno = (int)-rc; return -1; }
    return (pid_t)rc;
#else
    (void)a; (void)cgroup_fd; (void)pidfd;
    errno = ENOSYS;
    return -1;
#endif
}

int muster_spawn(const muster_spawn_request *q, muster_spawn_result *r) {
    memset(r, 0, sizeof *r);
    r->pid = -1;
    r->pidfd = -1;

    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0) { r->failed_step = MUSTER_STEP_PIPE; r->error = errno; return -1; }
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull < 0) {
        r->failed_step = MUSTER_STEP_PIPE; r->error = errno;
        close(pipefd[0]); close(pipefd[1]);
        return -1;
    }

    // Block every signal across the clone so no handler of the daemon's runs in the child before
    // it has reset the dispositions; the child unblocks just before exec.
    sigset_t all, saved;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved);

    int pidfd = -1;
    int used_clone3 = 1;
    struct child_args args = { q, pipefd[1], devnull, q->cgroup2_fd >= 0 };
    pid_t pid = clone3_vm(&args, q->cgroup2_fd, &pidfd);
    if (pid < 0 && q->cgroup2_fd >= 0 && (errno == EINVAL || errno == EOPNOTSUPP || errno == EBUSY || errno == EACCES || errno == EPERM)) {
        // A cgroup that refuses CLONE_INTO_CGROUP (threaded, or not permitted for clone): start
        // outside it and let the child join by writing cgroup.procs.
        args.joined_v2 = 0;
        pid = clone3_vm(&args, -1, &pidfd);
    }
    if (pid < 0 && !q->container_root && (errno == ENOSYS || errno == EINVAL || errno == E2BIG)) {
        // No clone3 (older kernels, other architectures): fork, joining the cgroup by writing.
        // Not for a container, which needs its pid namespace from the clone itself.
        used_clone3 = 0;
        pid = fork();
        if (pid == 0) {
            close(pipefd[0]);
            child_main(q, pipefd[1], devnull, 0);
        }
    }
    int clone_errno = errno;
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    close(pipefd[1]);
    close(devnull);

    if (pid < 0) {
        close(pipefd[0]);
        r->failed_step = MUSTER_STEP_CLONE; r->error = clone_errno;
        return -1;
    }
    if (!used_clone3) {
        pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
        // The caller holds the reaper's lock, so the child cannot have been reaped yet: pidfd_open
        // on a zombie still succeeds and refers to this very child.
    }

    struct child_report rep = { 0, 0, 0 };
    ssize_t n;
    do { n = read(pipefd[0], &rep, sizeof rep); } while (n < 0 && errno == EINTR);
    close(pipefd[0]);

    r->pid = pid;
    r->used_clone3 = used_clone3;
    if (n == (ssize_t)sizeof rep) {
        // The child failed before exec and is exiting with 127: reap it here so the exit is never
        // mistaken for a running service's.
        if (pidfd >= 0) {
            siginfo_t info;
            while (waitid((idtype_t)P_PIDFD, (id_t)pidfd, &info, WEXITED) < 0 && errno == EINTR) {}
            close(pidfd);
        } else {
            while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
        }
        r->failed_step = rep.step; r->error = rep.error; r->failed_index = rep.index;
        return -1;
    }
    if (pidfd < 0) {
        r->failed_step = MUSTER_STEP_PIDFD; r->error = errno;
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
        return -1;
    }
    r->pidfd = pidfd;
    return 0;
}

int muster_pidfd_send_signal(int pidfd, int signal) {
    return (int)syscall(SYS_pidfd_send_signal, pidfd, signal, NULL, 0);
}

int muster_pidfd_wait(int pidfd, int nohang, int *code, int *status) {
    siginfo_t info;
    memset(&info, 0, sizeof info);
    int rc;
    do { rc = waitid((idtype_t)P_PIDFD, (id_t)pidfd, &info, WEXITED | (nohang ? WNOHANG : 0)); } while (rc < 0 && errno == EINTR);
    if (rc < 0) return -1;
    if (info.si_pid == 0) return 1;
    *code = info.si_code;
    *status = info.si_status;
    return 0;
}

pid_t muster_peek_exited_child(void) {
    siginfo_t info;
    memset(&info, 0, sizeof info);
    if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) < 0) return -1;
    return info.si_pid;
}

int muster_reap(pid_t pid) {
    int rc;
    do { rc = waitpid(pid, NULL, WNOHANG); } while (rc < 0 && errno == EINTR);
    return rc;
}

int muster_set_child_subreaper(void) { return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); }


void muster_set_thread_name(const char *name) { (void)prctl(PR_SET_NAME, name, 0, 0, 0); }

int muster_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

int muster_memfd_cloexec(const char *name) { return memfd_create(name, MFD_CLOEXEC); }

int muster_hard_limit(int which, unsigned long long *value) {
    int resource = rlimit_resource(which);
    struct rlimit limit;
    if (resource < 0 || getrlimit(resource, &limit) < 0) return -1;
    *value = limit.rlim_max == RLIM_INFINITY ? ~0ULL : (unsigned long long)limit.rlim_max;
    return 0;
}

long long muster_raise_open_file_limit(void) {
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) < 0) return -1;
    if (limit.rlim_cur >= limit.rlim_max) return (long long)limit.rlim_cur;
    rlim_t original = limit.rlim_cur;
    // An unlimited (or huge) hard limit is more than the kernel lets one process open anyway.
    limit.rlim_cur = limit.rlim_max > (1 << 20) ? (1 << 20) : limit.rlim_max;
    if (limit.rlim_cur <= original) return (long long)original;
    if (setrlimit(RLIMIT_NOFILE, &limit) < 0) return -1;
    child_nofile_soft = original;
    return (long long)limit.rlim_cur;
}
