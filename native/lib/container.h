/* One container: a single clone(2) into new PID, mount, UTS, IPC, cgroup (after joining),
 * network (unless network=host) and user (with userns=) namespaces. */
#ifndef FEATHER_CONTAINER_H
#define FEATHER_CONTAINER_H

#include <signal.h>
#include <sys/types.h>

#include "error.h"
#include "spec.h"

enum io_mode {
  IO_INHERIT, /* the workload gets the shim's fds 0, 1, 2 */
  IO_PIPES,   /* stdout and stderr to pipes the shim reads (detached log) */
  IO_PTY,     /* a new pseudo-terminal; the shim gets its master */
};

struct container {
  pid_t pid; /* host pid of the container's PID 1 */
  int pty_master;
  int out_r, err_r;
  long long started_at;
};

/* Child side, in container_child.c: never returns. */
struct child_ctx {
  const struct spec *spec;
  int chan;
  enum io_mode io;
  int out_w, err_w;
  const sigset_t *oldmask; /* restored right before exec */
};
__attribute__((noreturn)) void container_child(const struct child_ctx *c);

/* Start the container and return once its workload runs (its exec succeeded).
 * On failure the child is reaped and err holds its message and exit code (125/126/127). */
int container_start(struct container *c, const struct spec *s, enum io_mode io, const sigset_t *oldmask,
                    struct shim_err *err);

/* Close the relay fds the shim still holds. */
void container_close(struct container *c);

#endif
