// The spawn shim. The parent is a multi-threaded Swift process, so between clone and exec the
// child may only make async-signal-safe calls: another thread may have held a lock (malloc's, the
// stdio lock, the dynamic loader's) at the moment of the clone, and that lock stays held forever
// in the child. Everything below the clone uses raw system calls and stack memory only.
#define _GNU_SOURCE
#include "CMusterShims.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <stdlib.h>
#include <sys/prctl.h>
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

struct child_report { int step; int error; };

// Async-signal-safe: write(2) only. Retries on EINTR; a short write of 8 bytes to a fresh pipe
// cannot happen.
static void report(int fd, int step) {
    struct child_report r = { step, errno };
    while (write(fd, &r, sizeof r) < 0 && errno == EINTR) {}
}

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
    // Every other descriptor closes at exec, the report pipe included: EOF tells the parent that
    // exec succeeded. Marking them CLOEXEC (rather than closing) keeps report_fd usable until then.
    if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) < 0) {
        for (int fd = 3; fd < 65536; fd++) if (fd != report_fd) (void)close(fd);
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
    if (pid < 0 && (errno == ENOSYS || errno == EINVAL || errno == E2BIG)) {
        // No clone3 (older kernels, other architectures): fork, joining the cgroup by writing.
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

    struct child_report rep = { 0, 0 };
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
        r->failed_step = rep.step; r->error = rep.error;
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
