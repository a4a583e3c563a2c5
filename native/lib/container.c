#include "container.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cgroup.h"
#include "chan.h"
#include "devfilter.h"
#include "hooks.h"
#include "idmap.h"
#include "userns.h"
#include "util.h"

static int clone_flags(const struct spec *s) {
  int f = CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC;
  if (!s->net_host) f |= CLONE_NEWNET;
  if (s->userns) f |= CLONE_NEWUSER;
  return f;
}

/* Before the child goes on: its id maps, the device filter, then its cgroups (so it never runs
 * unlimited, and never meets a device node unfiltered). */
static int prepare_child(pid_t pid, const struct spec *s, int chan, struct shim_err *err) {
  int layers[CHAN_MAX_FDS];
  size_t n = 0;
  if (s->userns && userns_write_maps(pid, s, err) < 0) return -1;
  if (s->devcgroup && devfilter_apply(s->devcgroup, s->devrules, s->n_devrules, err) < 0) return -1;
  for (size_t i = 0; i < s->n_cgroups; i++)
    if (cgroup_join(s->cgroups[i], pid, err) < 0) return -1;
  if (s->idmap) {
    if (idmap_layers(pid, s, layers, err) < 0) return -1;
    n = s->n_lower;
  }
  int rc = chan_send_go(chan, (int)pid, layers, n, err);
  for (size_t i = 0; i < n; i++) close(layers[i]);
  return rc;
}

/* The child's root is mounted: run the createRuntime hooks here, in the shim's namespaces. */
static int run_runtime_hooks(const struct container *c, const struct spec *s, int chan, struct shim_err *err) {
  if (hooks_run(s, HOOK_CREATE_RUNTIME, c->pid, "creating", s->bundle, err) < 0) return -1;
  return chan_send_go(chan, (int)c->pid, NULL, 0, err);
}

/* Read the child's messages until EOF (exec done) or an error report. */
static int await_exec(struct container *c, const struct spec *s, int chan, struct shim_err *err) {
  struct chan_msg m;
  for (;;) {
    int fd = -1;
    int r = chan_recv(chan, &m, &fd, err);
    if (r <= 0) return r;
    if (m.type == CHAN_PTY && fd >= 0) {
      c->pty_master = fd;
    } else if (m.type == CHAN_HOOKS) {
      if (fd >= 0) close(fd);
      if (run_runtime_hooks(c, s, chan, err) < 0) return -1;
    } else if (m.type == CHAN_ERR) {
      shim_err_new(err, m.code ? m.code : EXIT_SHIM_FAILED, "%s", m.msg);
      err->errnum = m.errnum;
      return -1;
    } else {
      if (fd >= 0) close(fd);
      return shim_err_new(err, EXIT_SHIM_FAILED, "container channel: unexpected message %d", m.type);
    }
  }
}

static void reap(pid_t pid, int kill_it) {
  if (kill_it) kill(pid, SIGKILL);

  while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
  }
}

int container_start(struct container *c, const struct spec *s, enum io_mode io, const sigset_t *oldmask,
                    struct shim_err *err) {
  int sv[2];
  int outp[2] = {-1, -1}, errp[2] = {-1, -1};
  memset(c, 0, sizeof *c);
  c->pty_master = c->out_r = c->err_r = -1;
  if (chan_pair(sv, err) < 0) return -1;
  cleanup_close int chan = sv[0];
  cleanup_close int child_chan = sv[1];
  if (io == IO_PIPES && (pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0)) {
    int e = errno;
    close_fd(&outp[0]);
    close_fd(&outp[1]);
    return shim_err_sys(err, e, "pipe2", "workload output");
  }
  c->out_r = outp[0];
  c->err_r = errp[0];
  cleanup_close int out_w = outp[1];
  cleanup_close int err_w = errp[1];

  pid_t pid = (pid_t)syscall(SYS_clone, (unsigned long)clone_flags(s) | SIGCHLD, NULL, NULL, NULL, 0);
  if (pid < 0) return shim_err_sys(err, errno, "clone", "container %s", s->name);
  if (pid == 0) {
    close(chan);
    if (c->out_r >= 0) close(c->out_r);
    if (c->err_r >= 0) close(c->err_r);
    struct child_ctx ctx = {.spec = s, .chan = child_chan, .io = io, .out_w = out_w, .err_w = err_w, .oldmask = oldmask};
    container_child(&ctx);
  }
  close_fd(&child_chan);
  close_fd(&out_w);
  close_fd(&err_w);
  c->pid = pid;
  if (prepare_child(pid, s, chan, err) < 0) {
    reap(pid, 1);
    return -1;
  }
  if (await_exec(c, s, chan, err) < 0) {
    reap(pid, 1); /* after an error report the child is exiting anyway */
    return -1;
  }
  c->started_at = now_ms();
  return 0;
}

void container_close(struct container *c) {
  close_fd(&c->pty_master);
  close_fd(&c->out_r);
  close_fd(&c->err_r);
}
