// The small C side of Muster: spawning a child the way a supervisor must (clone3 into a cgroup,
// async-signal-safe child, exec errors reported back), and thin wrappers over Linux calls that
// Swift cannot make directly (variadic `syscall`, `prctl`, `waitid(P_PIDFD)`).
#ifndef MUSTER_SHIMS_H
#define MUSTER_SHIMS_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/epoll.h>
#include <sys/statfs.h>

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
} muster_spawn_request;

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
};

typedef struct muster_spawn_result {
    pid_t pid;
    int pidfd;            // owned by the caller on success
    int failed_step;      // MUSTER_STEP_NONE on success
    int error;            // errno of the failed step
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

/// Names the calling thread (15 characters at most), as `top -H` and `ps -L` show it.
void muster_set_thread_name(const char *name);

/// `struct ucred` as the kernel lays it out for SO_PEERCRED (read through NIO's
/// unsafeGetSocketOption on the control socket's connections).
typedef struct muster_ucred {
    pid_t pid;
    uid_t uid;
    gid_t gid;
} muster_ucred;

#endif
