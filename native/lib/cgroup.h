/* The container's cgroup directories (v1 per controller, or v2): join, OOM count, removal. */
#ifndef FEATHER_CGROUP_H
#define FEATHER_CGROUP_H

#include <sys/types.h>

#include "error.h"

/* Write pid to dir/cgroup.procs. */
int cgroup_join(const char *dir, pid_t pid, struct shim_err *err);

/* Find "oom_kill N" in memory.events (v2) or memory.oom_control (v1) text; 0 and *out, or -1. */
int cgroup_parse_oom(const char *text, long long *out);

/* OOM kills recorded in dir (0 when it has no memory controller files). */
int cgroup_oom_kills(const char *dir, long long *out, struct shim_err *err);

/* rmdir dir, retrying briefly while the kernel still reports EBUSY; a missing dir is fine. */
int cgroup_remove(const char *dir, struct shim_err *err);

#endif
