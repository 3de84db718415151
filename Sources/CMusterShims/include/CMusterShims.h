// The small C side of Muster: spawning a child the way a supervisor must (clone3 into a cgroup,
// async-signal-safe child, exec errors reported back), and thin wrappers over Linux calls that
// Swift cannot make directly (variadic `syscall`, `prctl`, `waitid(P_PIDFD)`).
#ifndef MUSTER_SHIMS_H
#define MUSTER_SHIMS_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/statfs.h>

struct muster_rlimit;

/// What the child does before exec. Every pointer must stay valid for the duration of the call.
typedef struct muster_spawn_request {
    const char *path;                 // absolute path of the program to exec
    char *const *argv;                // NULL-terminated
    char *const *envp;                // NULL-terminated; the child's whole environment
    const char *directory;            // chdir target; NULL means "/"
    int set_ids;                      // nonzero: setgroups + setgid + setuid below
    uid_t uid;
    gid_t gid;
    const gid_t *groups;              // supplementary groups (may be NULL when group_count is 0)
    size_t group_count;
    int stdout_fd;                    // -1: /dev/null
    int stderr_fd;                    // -1: /dev/null
    int cgroup2_fd;                   // directory fd of the cgroup2 leaf to start in; -1: none
    const char *cgroup2_procs_path;   // its cgroup.procs, written when clone3 placement fails
    const char *const *v1_procs_paths;// cgroup v1 `cgroup.procs` files the child joins
    size_t v1_count;

    // Container (a manifest's [container]). container_root NULL: a host process. The clone gets
    // CLONE_NEWPID (the service is PID 1 inside); the child unshares the mount, uts, ipc and
    // cgroup namespaces (and the network one for private_network) after joining its cgroups.
    const char *container_root;       // an empty folder: the overlay is mounted here, then pivot_root
    const char *overlay_options;      // "lowerdir=IMAGE,upperdir=UPPER,workdir=WORK"
    const char *hostname;             // set in the new uts namespace
    int private_network;              // a network namespace holding only loopback (brought up)
    const char *const *bind_sources;  // [[container.mounts]]: host paths, absolute ...
    const char *const *bind_targets;  // ... and their targets, absolute inside the container
    const int *bind_read_only;
    size_t bind_count;
    int pass_listen_socket;           // nonzero: listen_socket becomes descriptor 3 (LISTEN_FDS=1)
    int listen_socket;                // a listening socket musterd bound in the host's namespace

    // Isolation (a manifest's [isolation]). Zero/NULL everywhere means none.
    const struct muster_rlimit *rlimits;  // soft = hard = value, set before the ids change
    size_t rlimit_count;
    int new_mount_namespace;          // unshare(CLONE_NEWNS), "/" made private, then the mounts below
    int join_mount_namespace;         // instead: setns(mount_namespace_fd, CLONE_NEWNS), no mounts
    int mount_namespace_fd;           // a pidfd (or /proc/PID/ns/mnt) of the process to join
    int join_container_namespaces;    // with a pidfd: its mount, uts, ipc, network and cgroup namespaces
    const char *const *read_only_paths;   // each "/path", or "-/path": skipped when missing
    size_t read_only_count;
    const char *const *writable_paths;    // at most MUSTER_MAX_WRITABLE_PATHS
    size_t writable_count;
    int private_tmp;                  // a fresh tmpfs (mode 1777) on /tmp
    const char *const *inaccessible_paths;
    size_t inaccessible_count;
    int limit_capabilities;           // nonzero: bounding set, ambient, permitted/effective/inheritable
    unsigned long long keep_capabilities; // ... cut to these (bit n: capability n)
    int cap_last;                     // the kernel's highest capability (/proc/sys/kernel/cap_last_cap)
    int no_new_privs;                 // PR_SET_NO_NEW_PRIVS just before exec
    const void *seccomp_filter;       // classic BPF (struct sock_filter[]) for PR_SET_SECCOMP; NULL: none
    size_t seccomp_filter_length;     // in instructions
} muster_spawn_request;

/// One resource limit of the child.
typedef struct muster_rlimit {
    int resource;                     // MUSTER_LIMIT_*
    unsigned long long value;         // ~0ULL: unlimited (RLIM_INFINITY)
} muster_rlimit;

enum {
    MUSTER_LIMIT_NOFILE = 0,
    MUSTER_LIMIT_NPROC = 1,
    MUSTER_LIMIT_CORE = 2,
    MUSTER_LIMIT_MEMLOCK = 3,
};

/// Opens `path` below the folder `root_fd` as if that folder were "/" (openat2 with
/// RESOLVE_IN_ROOT, Linux 5.6): symlinks and ".." cannot leave it. -1 and errno as open(2).
int muster_open_in_root(int root_fd, const char *path, int flags);

/// The calling process's hard limit for a MUSTER_LIMIT_* resource (~0ULL: unlimited); -1 on error.
int muster_hard_limit(int resource, unsigned long long *value);
/// Raises musterd's soft RLIMIT_NOFILE to its hard limit (each instance holds a pidfd, two log
/// pipes and two usage files: 2,000 instances need about 10,000 descriptors, and the proxy one
/// or two a connection), and makes every later child start with the original soft limit again.
/// Call once, at start, before the first spawn. Returns the new soft limit, or -1 (errno set).
long long muster_raise_open_file_limit(void);

/// The child holds one descriptor per writable path on its small stack.
#define MUSTER_MAX_WRITABLE_PATHS 64
/// ... and one per container bind mount.
#define MUSTER_MAX_CONTAINER_BINDS 64

/// Steps of the child that can fail; reported with errno through the CLOEXEC pipe.
enum {
    MUSTER_STEP_NONE = 0,
    MUSTER_STEP_PIPE = 1,         // parent: could not create the report pipe
    MUSTER_STEP_CLONE = 2,        // parent: clone3 and fork both failed
    MUSTER_STEP_CGROUP = 3,       // child: joining a cgroup
    MUSTER_STEP_SETSID = 4,
    MUSTER_STEP_SETGROUPS = 5,
    MUSTER_STEP_SETGID = 6,
    MUSTER_STEP_SETUID = 7,
    MUSTER_STEP_CHDIR = 8,
    MUSTER_STEP_STDIO = 9,
    MUSTER_STEP_EXEC = 10,
    MUSTER_STEP_PIDFD = 11,       // parent: pidfd_open after the fork fallback
    // Isolation; `failed_index` says which entry of the step's list failed.
    MUSTER_STEP_RLIMIT = 12,          // index: into rlimits
    MUSTER_STEP_MOUNT_NAMESPACE = 13, // unshare(CLONE_NEWNS)
    MUSTER_STEP_MOUNT_PRIVATE = 14,   // making "/" recursively private
    MUSTER_STEP_READ_ONLY = 15,       // index: into read_only_paths
    MUSTER_STEP_WRITABLE = 16,        // index: into writable_paths
    MUSTER_STEP_PRIVATE_TMP = 17,
    MUSTER_STEP_INACCESSIBLE = 18,    // index: into inaccessible_paths
    MUSTER_STEP_CAPBSET = 19,         // index: the capability number
    MUSTER_STEP_AMBIENT = 20,
    MUSTER_STEP_CAPSET = 21,
    MUSTER_STEP_NO_NEW_PRIVS = 22,
    MUSTER_STEP_JOIN_MOUNT_NAMESPACE = 23,
    // Containers; `failed_index` says which path of the step failed (the container_* tables).
    MUSTER_STEP_CONTAINER_NAMESPACES = 24, // unshare of mount, uts, ipc, cgroup (and network)
    MUSTER_STEP_CONTAINER_ROOT = 25,       // the overlay on container_root
    MUSTER_STEP_CONTAINER_MOUNT = 26,      // index: into muster_container_mount_names
    MUSTER_STEP_CONTAINER_BIND = 27,       // index: into bind_targets
    MUSTER_STEP_CONTAINER_PIVOT = 28,      // pivot_root and detaching the host's root
    MUSTER_STEP_CONTAINER_HOSTNAME = 29,
    MUSTER_STEP_CONTAINER_LOOPBACK = 30,
    MUSTER_STEP_SECCOMP = 31,         // PR_SET_SECCOMP with seccomp_filter
    MUSTER_STEP_LISTEN_SOCKET = 32,   // the listening socket onto descriptor 3
};

/// What MUSTER_STEP_CONTAINER_MOUNT's index names: "/proc", "/dev", "/dev/null", … (NULL past the end).
const char *muster_container_mount_name(int index);

typedef struct muster_spawn_result {
    pid_t pid;
    int pidfd;            // owned by the caller on success
    int failed_step;      // MUSTER_STEP_NONE on success
    int error;            // errno of the failed step
    int failed_index;     // which path, limit or capability, for the steps that have a list
    int used_clone3;      // 1 when clone3 placed the child (CLONE_INTO_CGROUP when a cgroup was given)
} muster_spawn_result;

/// Starts a child per `request`. On success returns 0 with pid and pidfd; the child has exec'd.
/// On failure returns -1 with the failed step and errno; a child that failed before exec has
/// already been reaped, so the caller never sees its exit.
int muster_spawn(const muster_spawn_request *request, muster_spawn_result *result);

int muster_pidfd_send_signal(int pidfd, int signal);

/// `waitid(P_PIDFD)`: on success returns 0 and sets `code` (CLD_EXITED, CLD_KILLED, CLD_DUMPED)
/// and `status` (exit code or signal number). With `nohang`, returns 1 when the child still runs.
int muster_pidfd_wait(int pidfd, int nohang, int *code, int *status);

/// Reaps one exited child that is not otherwise watched: with `WNOWAIT` first, so the caller can
/// decide by pid (`peek`), then for real. Returns the pid, 0 if none, -1 on error (errno).
pid_t muster_peek_exited_child(void);
int muster_reap(pid_t pid);

int muster_set_child_subreaper(void);

/// pipe2(O_CLOEXEC).
int muster_pipe_cloexec(int fds[2]);

/// memfd_create(MFD_CLOEXEC), which glibc declares only with _GNU_SOURCE: the seccomp filter is
/// exported into one and read back.
int muster_memfd_cloexec(const char *name);

/// Names the calling thread (15 characters at most), as `top -H` and `ps -L` show it.
void muster_set_thread_name(const char *name);

/// `struct ucred` as the kernel lays it out for SO_PEERCRED (read through NIO's
/// unsafeGetSocketOption on the control socket's connections).
typedef struct muster_ucred {
    pid_t pid;
    uid_t uid;
    gid_t gid;
} muster_ucred;

/// accept4(listen_fd) for a non-blocking, close-on-exec connection socket; -1 and errno as accept4.
int muster_accept_nonblocking(int listen_fd);

/// The terminal's size on `fd` (TIOCGWINSZ; ioctl is variadic, so Swift cannot call it); 0, or
/// -1 and errno when `fd` is not a terminal.
int muster_window_size(int fd, int *rows, int *columns);

#endif
