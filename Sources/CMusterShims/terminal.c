// TIOCGWINSZ for `musterctl top`: ioctl(2) is variadic and Swift imports no variadic C function.
#include <sys/ioctl.h>

#include "CMusterShims.h"

int muster_window_size(int fd, int *rows, int *columns) {
    struct winsize size;
    if (ioctl(fd, TIOCGWINSZ, &size) != 0) return -1;
    *rows = size.ws_row;
    *columns = size.ws_col;
    return 0;
}
