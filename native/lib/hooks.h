/* OCI hooks run by the shim itself: createRuntime (shim side, after the container's root is
 * mounted), createContainer (in the container's namespaces, before pivot_root) and startContainer
 * (in the container, right before the workload's exec). Each gets the OCI state on stdin. */
#ifndef FEATHER_HOOKS_H
#define FEATHER_HOOKS_H

#include <sys/types.h>

#include "error.h"
#include "spec.h"

/* Run the spec's hooks of this kind in order, each with {ociVersion,id,status,pid,bundle} on stdin,
 * in directory dir (NULL: the caller's). The first that fails, or outlives its timeout (then it is
 * killed), stops the rest: err names the hook and holds the end of its output. */
int hooks_run(const struct spec *s, enum hook_kind kind, pid_t pid, const char *status, const char *dir,
              struct shim_err *err);

#endif
