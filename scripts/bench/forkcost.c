// Cost of one spawn the way Muster's shim does it (Sources/CMusterShims/spawn.c) against a
// posix_spawn-style one, outside Muster: evidence for docs/benchmarks.md ("Where Muster's start-up
// time goes"). Each mode starts N `sleep 100000` into fresh cgroup leaves from a parent holding
// BALLAST_MB of touched anonymous memory (musterd holds ~30 MiB anon + ~30 MiB file pages with
// 200 instances), then kills them and removes every leaf it made.
//
//   gcc -O2 -o /tmp/forkcost scripts/bench/forkcost.c
//   /tmp/forkcost MODE [N=200] [BALLAST_MB=30]         (root, hybrid cgroup host)
//
//   a  clone3(CLONE_PIDFD|CLONE_INTO_CGROUP), a full fork; the child joins a v1 memory leaf by
//      writing cgroup.procs, setsid, execve; the parent blocks until exec (Muster today)
//   b  as a, without the v1 memory leaf
//   c  clone(CLONE_VM|CLONE_VFORK) on a small stack of its own, as glibc's posix_spawn does; the
//      child joins the v2 and the v1 memory leaf by cgroup.procs, setsid, execve
//   d  as c, without the v1 memory leaf
//   e  as c, joining no cgroup (the floor of a vfork-style spawn)
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

struct request { const char *v2_procs; const char *v1_procs; };

static void join(const char *procs) {
    int fd = open(procs, O_WRONLY | O_CLOEXEC);
    if (fd < 0) _exit(126);
    if (write(fd, "0", 1) != 1) _exit(125);
    close(fd);
}

static int child(void *arg) {
    struct request *q = arg;
    if (q->v2_procs) join(q->v2_procs);
    if (q->v1_procs) join(q->v1_procs);
    setsid();
    char *argv[] = {"/bin/sleep", "100000", NULL};
    char *envp[] = {NULL};
    execve(argv[0], argv, envp);
    _exit(127);
}

int main(int argc, char **argv) {
    if (argc < 2 || strchr("abcde", argv[1][0]) == NULL) {
        fprintf(stderr, "usage: %s a|b|c|d|e [N] [BALLAST_MB]\n", argv[0]);
        return 2;
    }
    char mode = argv[1][0];
    int n = argc > 2 ? atoi(argv[2]) : 200;
    long mb = argc > 3 ? atol(argv[3]) : 30;
    char *ballast = malloc((size_t)mb << 20);
    memset(ballast, 1, (size_t)mb << 20);

    char v2[128], v1[128], path[192], v2_procs[256], v1_procs[256];
    snprintf(v2, sizeof v2, "/sys/fs/cgroup/unified/muster-forkcost-%d", getpid());
    snprintf(v1, sizeof v1, "/sys/fs/cgroup/memory/muster-forkcost-%d", getpid());
    int use_v1 = mode == 'a' || mode == 'c';
    if (mkdir(v2, 0755) < 0 || (use_v1 && mkdir(v1, 0755) < 0)) { perror("mkdir cgroup root"); return 1; }
    pid_t *pids = calloc(n, sizeof(pid_t));
    char *stack = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);

    double t0 = now();
    int started = 0;
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/%d", v2, i);
        mkdir(path, 0755);
        snprintf(v2_procs, sizeof v2_procs, "%s/cgroup.procs", path);
        if (use_v1) {
            snprintf(path, sizeof path, "%s/%d", v1, i);
            mkdir(path, 0755);
            snprintf(v1_procs, sizeof v1_procs, "%s/cgroup.procs", path);
        }
        struct request q = { NULL, use_v1 ? v1_procs : NULL };
        pid_t pid;
        if (mode == 'a' || mode == 'b') {
            snprintf(path, sizeof path, "%s/%d", v2, i);
            int cgroup_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            int report[2];
            if (pipe2(report, O_CLOEXEC) < 0) { perror("pipe2"); break; }
            int pidfd = -1;
            struct clone_args args;
            memset(&args, 0, sizeof args);
            args.flags = CLONE_PIDFD | CLONE_INTO_CGROUP;
            args.pidfd = (uint64_t)(uintptr_t)&pidfd;
            args.exit_signal = SIGCHLD;
            args.cgroup = (uint64_t)cgroup_fd;
            pid = (pid_t)syscall(SYS_clone3, &args, sizeof args);
            if (pid == 0) { close(report[0]); child(&q); }
            close(report[1]);
            char buffer[8];
            while (pid > 0 && read(report[0], buffer, sizeof buffer) < 0 && errno == EINTR) {}
            close(report[0]);
            close(cgroup_fd);
            if (pidfd >= 0) close(pidfd);
        } else {
            if (mode != 'e') q.v2_procs = v2_procs; else q.v1_procs = NULL;
            pid = clone(child, stack + (1 << 16), CLONE_VM | CLONE_VFORK | SIGCHLD, &q);
        }
        if (pid < 0) { perror("clone"); break; }
        pids[started++] = pid;
    }
    double t1 = now();
    if (started == n)
        printf("mode %c, ballast %ld MiB: %d spawns in %.1f ms = %.2f ms each\n", mode, mb, n,
               (t1 - t0) * 1000, (t1 - t0) * 1000 / n);

    for (int i = 0; i < started; i++) { kill(pids[i], SIGKILL); waitpid(pids[i], NULL, 0); }
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/%d", v2, i);
        for (int tries = 0; tries < 50 && rmdir(path) < 0 && errno == EBUSY; tries++) usleep(10000);
        if (use_v1) {
            snprintf(path, sizeof path, "%s/%d", v1, i);
            for (int tries = 0; tries < 50 && rmdir(path) < 0 && errno == EBUSY; tries++) usleep(10000);
        }
    }
    rmdir(v2);
    if (use_v1) rmdir(v1);
    return started == n ? 0 : 1;
}
