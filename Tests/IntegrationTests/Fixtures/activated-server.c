// A socket-activated HTTP server for the container tests: it serves on descriptor 3 (as
// sd_listen_fds hands it over) and never binds a port itself, so it answers only if musterd
// passed its listener in. Each answer names the host it runs on and the network interfaces it
// sees. Built static by the test, so it runs in a root with no libc.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(void) {
    const char *fds = getenv("LISTEN_FDS"), *pid = getenv("LISTEN_PID");
    if (!fds || strcmp(fds, "1") != 0 || !pid || atoi(pid) != getpid()) {
        fprintf(stderr, "activated-server: no socket passed (LISTEN_FDS=%s LISTEN_PID=%s, pid %d)\n", fds ? fds : "", pid ? pid : "", getpid());
        return 1;
    }
    char host[128] = "";
    gethostname(host, sizeof host - 1);
    for (;;) {
        int client = accept(3, NULL, NULL);
        if (client < 0) continue;
        char request[4096];
        (void)read(client, request, sizeof request);
        char interfaces[512] = "";
        FILE *dev = fopen("/proc/net/dev", "r");
        if (dev) {
            char line[256];
            int n = 0;
            while (fgets(line, sizeof line, dev)) {
                if (++n <= 2) continue;  // the two header lines
                char *colon = strchr(line, ':');
                if (!colon) continue;
                *colon = 0;
                char *name = line;
                while (*name == ' ') name++;
                strncat(interfaces, name, sizeof interfaces - strlen(interfaces) - 2);
                strcat(interfaces, " ");
            }
            fclose(dev);
        }
        char body[1024];
        int length = snprintf(body, sizeof body, "activated in %s; interfaces: %s\n", host, interfaces);
        char response[1400];
        int total = snprintf(response, sizeof response, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", length, body);
        (void)write(client, response, (size_t)total);
        close(client);
    }
}
