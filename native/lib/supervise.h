/* The shim's side while the workload runs: forward signals, relay output, reap. */
#ifndef FEATHER_SUPERVISE_H
#define FEATHER_SUPERVISE_H

#include <signal.h>

#include "container.h"
#include "error.h"
#include "logrot.h"

/* SIGINT SIGTERM SIGHUP SIGQUIT SIGUSR1 SIGUSR2: what the shim passes on to the container. */
void supervise_forwarded(sigset_t *set);

struct supervise_io {
  int sigfd;           /* signalfd of the blocked set (forwarded + SIGCHLD [+ SIGWINCH]) */
  struct logrot *log;  /* IO_PIPES: where the pipes go (NULL: drained and dropped) */
  int tty_in, tty_out; /* IO_PTY: the shim's stdin/stdout */
};

/* Run until the container's PID 1 is reaped and its output drained; *status is its wait status. */
int supervise(struct container *c, const struct supervise_io *io, int *status, struct shim_err *err);

#endif
