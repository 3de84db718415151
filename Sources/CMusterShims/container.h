// Internal to the shim: the container steps of the spawn child (container.c).
#ifndef MUSTER_CONTAINER_H
#define MUSTER_CONTAINER_H

#include "CMusterShims.h"

/// In the child, after its cgroups are joined: unshares the container's namespaces, mounts its
/// overlay root, pivots into it and makes its mounts. -1 with errno, the step and its index.
int muster_enter_container(const muster_spawn_request *q, int *step, int *index);

#endif
