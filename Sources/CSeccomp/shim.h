#ifndef MUSTER_CSECCOMP_SHIM_H
#define MUSTER_CSECCOMP_SHIM_H
#include <seccomp.h>
#endif
