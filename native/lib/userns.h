/* userns=HOSTUID:HOSTGID:SIZE: container ids 0..SIZE-1 are host ids HOSTUID.. / HOSTGID.. */
#ifndef FEATHER_USERNS_H
#define FEATHER_USERNS_H

#include <sys/types.h>

#include "error.h"
#include "spec.h"

/* Parent side, before the child goes on: write /proc/PID/{uid,gid}_map. */
int userns_write_maps(pid_t pid, const struct spec *s, struct shim_err *err);

/* Child side, once mapped: become uid 0 / gid 0 of the namespace with no supplementary groups. */
int userns_become_root(struct shim_err *err);

#endif
