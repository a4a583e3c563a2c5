#include "supervise.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tty.h"
#include "util.h"

void supervise_forwarded(sigset_t *set) {
  static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
  sigemptyset(set);
  for (size_t i = 0; i < ARRAY_LEN(sigs); i++) sigaddset(set, sigs[i]);
}

enum { P_SIG, P_OUT, P_ERR, P_COUNT };

struct loop {
  struct container *c;
  const struct supervise_io *io;
  struct pollfd fds[P_COUNT];
  int reaped;
  int status;
};

static int on_signals(struct loop *l, struct shim_err *err) {
  struct signalfd_siginfo si[8];
  ssize_t n = RETRY(read(l->io->sigfd, si, sizeof si));
  if (n < 0) return errno == EAGAIN ? 0 : shim_err_sys(err, errno, "read", "signalfd");
  for (size_t i = 0; i < (size_t)n / sizeof si[0]; i++) {
    int sig = (int)si[i].ssi_signo;
    if (sig == SIGWINCH && l->c->pty_master >= 0) tty_copy_winsize(l->io->tty_in, l->c->pty_master);
    else if (sig != SIGCHLD && sig != SIGWINCH) kill(l->c->pid, sig);
  }
  if (!l->reaped) {
    pid_t p = RETRY(waitpid(l->c->pid, &l->status, WNOHANG));
    if (p < 0) return shim_err_sys(err, errno, "waitpid", "container %d", (int)l->c->pid);
    l->reaped = p == l->c->pid;
  }
  return 0;
}

/* Move what is readable on fds[i]; at EOF (or EIO from a pty master) stop watching it. */
static void relay(struct loop *l, int i) {
  char buf[65536];
  struct shim_err ignored;
  int from = l->fds[i].fd;
  ssize_t n = RETRY(read(from, buf, sizeof buf));
  if (n < 0 && errno == EAGAIN) return;
  if (n <= 0) {
    if (l->c->pty_master >= 0 && from == l->io->tty_in) {
      /* The shim's stdin ended: pass an end-of-file to the terminal unless it is a terminal itself. */
      if (!isatty(from)) (void)write_all(l->c->pty_master, "\x04", 1);
    }
    l->fds[i].fd = -1;
    return;
  }
  if (l->c->pty_master >= 0) {
    int to = from == l->c->pty_master ? l->io->tty_out : l->c->pty_master;
    (void)write_all(to, buf, (size_t)n);
  } else if (l->io->log) {
    (void)logrot_write(l->io->log, buf, (size_t)n, &ignored);
  }
}

int supervise(struct container *c, const struct supervise_io *io, int *status, struct shim_err *err) {
  struct loop l = {.c = c, .io = io};
  l.fds[P_SIG] = (struct pollfd){.fd = io->sigfd, .events = POLLIN};
  if (c->pty_master >= 0) {
    l.fds[P_OUT] = (struct pollfd){.fd = c->pty_master, .events = POLLIN};
    l.fds[P_ERR] = (struct pollfd){.fd = io->tty_in, .events = POLLIN};
  } else {
    l.fds[P_OUT] = (struct pollfd){.fd = c->out_r, .events = POLLIN};
    l.fds[P_ERR] = (struct pollfd){.fd = c->err_r, .events = POLLIN};
  }
  for (;;) {
    if (l.reaped) {
      if (c->pty_master >= 0) l.fds[P_ERR].fd = -1; /* nobody left to type to */
      if (l.fds[P_OUT].fd < 0 && l.fds[P_ERR].fd < 0) break;
      l.fds[P_SIG].fd = -1;
    }
    int r = poll(l.fds, P_COUNT, -1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return shim_err_sys(err, errno, "poll", "supervise container %d", (int)c->pid);
    if (l.fds[P_SIG].revents && on_signals(&l, err) < 0) return -1;
    for (int i = P_OUT; i < P_COUNT; i++)
      if (l.fds[i].fd >= 0 && l.fds[i].revents) relay(&l, i);
  }
  *status = l.status;
  return 0;
}
