/* The shim <-> container channel: one SOCK_SEQPACKET pair, close-on-exec.
 * Parent -> child: "go" once the cgroups (and id maps) are in place, with the child's host pid;
 *   again after the createRuntime hooks ran.
 * Child -> parent: an error (then the child exits), the tty master fd, or "hooks": the root is
 *   mounted, run the createRuntime hooks and say go.
 * EOF on the parent's end means every copy of the child's end was closed: the workload exec'd. */
#ifndef FEATHER_CHAN_H
#define FEATHER_CHAN_H

#include "error.h"

enum chan_type { CHAN_GO = 1, CHAN_ERR = 2, CHAN_PTY = 3, CHAN_HOOKS = 4 };

/* At most this many fds ride on one message (idmapped layers with "go"). */
#define CHAN_MAX_FDS 64

struct chan_msg {
  int type;
  int code;
  int errnum;
  char msg[SHIM_ERR_MAX];
};

int chan_pair(int sv[2], struct shim_err *err);
/* "go" carrying value (the child's host pid, or 0), with n fds (the idmapped layers) or none. */
int chan_send_go(int fd, int value, const int *fds, size_t n, struct shim_err *err);
/* 1 when "go" arrived (its value in *value when not NULL, its fds in fds[0..*n)), 0 when the
 * parent is gone (EOF). */
int chan_wait_go(int fd, int *value, int *fds, size_t *n, struct shim_err *err);
/* Child -> parent: run the createRuntime hooks, then send go. */
int chan_send_hooks(int fd, struct shim_err *err);
/* Best effort: the child is about to exit anyway. */
void chan_send_err(int fd, const struct shim_err *e);
int chan_send_fd(int fd, int passfd, struct shim_err *err);
/* 1 with a message (and *passfd for CHAN_PTY), 0 on EOF. */
int chan_recv(int fd, struct chan_msg *m, int *passfd, struct shim_err *err);

#endif
