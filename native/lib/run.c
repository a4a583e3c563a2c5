#include "run.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cgroup.h"
#include "container.h"
#include "init.h"
#include "logrot.h"
#include "state.h"
#include "supervise.h"
#include "tty.h"
#include "util.h"

/* After the container is gone: OOM count, then the cgroups go. Failures here are reported
 * (stderr) but do not change the exit code: the workload's own result matters more. */
static long long finish_cgroups(const struct spec *s) {
  long long total = 0;
  struct shim_err err;
  for (size_t i = 0; i < s->n_cgroups; i++) {
    long long n = 0;
    if (cgroup_oom_kills(s->cgroups[i], &n, &err) < 0) shim_err_print(&err);
    total += n;
  }
  for (size_t i = 0; i < s->n_cgroups; i++)
    if (cgroup_remove(s->cgroups[i], &err) < 0) shim_err_print(&err);
  return total;
}

/* A starter that is gone (EPIPE) does not stop the container: state.json still names it. */
static void report_started(int *report_fd, const struct container *c) {
  if (*report_fd < 0) return;
  struct start_report r = {.ok = 1, .pid = (int)c->pid, .shim_pid = (int)getpid()};
  (void)write_all(*report_fd, &r, sizeof r);
  close_fd(report_fd);
}

static enum io_mode io_mode(const struct spec *s) {
  if (s->tty) return IO_PTY;
  if (s->detach && s->log) return IO_PIPES;
  return IO_INHERIT;
}

static int supervise_and_finish(const struct spec *s, struct container *c, int sigfd, struct shim_err *err) {
  struct logrot log = {.fd = -1};
  struct tty_saved saved = {0};
  struct supervise_io io = {.sigfd = sigfd, .tty_in = STDIN_FILENO, .tty_out = STDOUT_FILENO};
  int status = 0;
  if (c->out_r >= 0 && s->log) {
    if (logrot_open(&log, s->log, s->log_max, err) < 0) shim_err_print(err); /* keep draining */
    else io.log = &log;
  }
  if (c->pty_master >= 0) {
    tty_copy_winsize(STDIN_FILENO, c->pty_master);
    if (tty_raw(STDIN_FILENO, &saved, err) < 0) shim_err_print(err);
  }
  int rc = supervise(c, &io, &status, err);
  tty_restore(STDIN_FILENO, &saved);
  logrot_close(&log);
  if (rc < 0) return -1;
  struct shim_state st = {.exited = 1, .pid = c->pid, .shim_pid = getpid(), .started_at = c->started_at};
  st.exit_code = wait_status_code(status);
  st.signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  st.oom_kills = finish_cgroups(s);
  st.finished_at = now_ms();
  if (s->state && state_write(s->state, &st, err) < 0) shim_err_print(err);
  return st.exit_code;
}

int run_container(const struct spec *s, int *report_fd, struct shim_err *err) {
  sigset_t set, old;
  supervise_forwarded(&set);
  sigaddset(&set, SIGCHLD);
  if (s->tty) sigaddset(&set, SIGWINCH);
  if (sigprocmask(SIG_BLOCK, &set, &old) < 0) return shim_err_sys(err, errno, "sigprocmask", "block signals");
  /* A reader that went away (the starter, a closed terminal) is a failed write, not our death:
   * the container dies with this process. The workload gets SIGPIPE back (container_child.c). */
  signal(SIGPIPE, SIG_IGN);
  cleanup_close int sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sigfd < 0) return shim_err_sys(err, errno, "signalfd", "supervise signals");

  struct container c;
  if (container_start(&c, s, io_mode(s), &old, err) < 0) {
    container_close(&c);
    finish_cgroups(s);
    return -1;
  }
  struct shim_state st = {.pid = c.pid, .shim_pid = getpid(), .started_at = c.started_at};
  if (s->state && state_write(s->state, &st, err) < 0) {
    kill(c.pid, SIGKILL);
    supervise_and_finish(s, &c, sigfd, &(struct shim_err){0});
    container_close(&c);
    return -1;
  }
  report_started(report_fd, &c);
  int code = supervise_and_finish(s, &c, sigfd, err);
  container_close(&c);
  return code;
}
