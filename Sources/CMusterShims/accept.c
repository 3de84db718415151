// accept4(2) for the proxy's relay workers: glibc declares it only under _GNU_SOURCE, which the
// Swift side cannot set.
#define _GNU_SOURCE
#include <sys/socket.h>

#include "CMusterShims.h"

int muster_accept_nonblocking(int listen_fd) {
    return accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
}
