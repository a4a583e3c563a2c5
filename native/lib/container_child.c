/* Everything the container's first process does between clone(2) and exec(2). Each step's
 * failure goes to the shim over the channel; exit status 125/126/127 follows docs/shim-spec.md. */
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "caps.h"
#include "chan.h"
#include "container.h"
#include "exec.h"
#include "fs.h"
#include "hooks.h"
#include "init.h"
#include "mounts.h"
#include "net.h"
#include "proctitle.h"
#include "tty.h"
#include "userns.h"
#include "util.h"

/* PDEATHSIG is set after the uid change (which clears it); then make sure the shim still lives:
 * its end of the channel stays open until the workload runs. */
static int tie_to_parent(int chan, struct shim_err *err) {
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) return shim_err_sys(err, errno, "prctl", "PR_SET_PDEATHSIG");
  struct pollfd p = {.fd = chan, .events = POLLIN};
  if (RETRY(poll(&p, 1, 0)) < 0) return shim_err_sys(err, errno, "poll", "check the shim is alive");
  if (p.revents & POLLHUP) _exit(EXIT_SHIM_FAILED);
  return 0;
}

static int enter_cwd(const char *cwd, struct shim_err *err) {
  if (chdir(cwd) == 0) return 0;
  if (errno != ENOENT) return shim_err_sys(err, errno, "chdir", "cwd %s", cwd);
  cleanup_close int root = RETRY(open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (root < 0) return shim_err_sys(err, errno, "open", "/");
  cleanup_close int fd = fs_mkpath_in_root(root, cwd, 0, err);
  if (fd < 0) return -1;
  if (fchdir(fd) < 0) return shim_err_sys(err, errno, "fchdir", "cwd %s", cwd);
  return 0;
}

static int redirect_output(const struct child_ctx *c, struct shim_err *err) {
  if (dup2(c->out_w, STDOUT_FILENO) < 0) return shim_err_sys(err, errno, "dup2", "stdout to the log pipe");
  if (dup2(c->err_w, STDERR_FILENO) < 0) return shim_err_sys(err, errno, "dup2", "stderr to the log pipe");
  return 0;
}

/* Between the mounted root and pivot_root: the shim's createRuntime hooks (in its namespaces), then
 * the createContainer hooks here, in the container's namespaces, where the host's paths still resolve. */
static int creation_hooks(const struct child_ctx *c, pid_t host_pid, struct shim_err *err) {
  const struct spec *s = c->spec;
  if (spec_hook_count(s, HOOK_CREATE_RUNTIME) > 0) {
    if (chan_send_hooks(c->chan, err) < 0) return -1;
    int none[CHAN_MAX_FDS];
    size_t n_none = 0;
    int go = chan_wait_go(c->chan, NULL, none, &n_none, err);
    for (size_t i = 0; i < n_none; i++) close(none[i]);
    if (go < 0) return -1;
    if (go == 0) _exit(EXIT_SHIM_FAILED); /* the shim is gone (a failed hook ends the container) */
  }
  return hooks_run(s, HOOK_CREATE_CONTAINER, host_pid, "creating", "/", err);
}

/* Build the container up to (not including) exec. Returns the pty slave fd, or -1 when there is none. */
static int setup(const struct child_ctx *c, pid_t host_pid, const int *layers, size_t n_layers, int *slave,
                 struct shim_err *err) {
  const struct spec *s = c->spec;
  if (s->userns && userns_become_root(err) < 0) return -1;
  if (tie_to_parent(c->chan, err) < 0) return -1;
  if (unshare(CLONE_NEWCGROUP) < 0) return shim_err_sys(err, errno, "unshare", "cgroup namespace");
  if (sethostname(s->name, strlen(s->name)) < 0) return shim_err_sys(err, errno, "sethostname", "%s", s->name);
  umask(0);
  cleanup_close int rootfd = mounts_build_root(s, layers, n_layers, err);
  if (rootfd < 0) return -1;
  if (creation_hooks(c, host_pid, err) < 0) return -1;
  if (mounts_pivot(rootfd, err) < 0) return -1;
  if (mounts_mask(err) < 0) return -1;
  if (!s->net_host && net_loopback_up(err) < 0) return -1;
  umask(022);
  if (enter_cwd(s->cwd ? s->cwd : "/", err) < 0) return -1;
  if (c->io == IO_PIPES && redirect_output(c, err) < 0) return -1;
  if (c->io == IO_PTY && (*slave = tty_create(c->chan, err)) < 0) return -1;
  if (caps_drop(caps_docker_default(), err) < 0) return -1;
  return caps_no_new_privs(err);
}

/* Whatever the shim's caller ignored or handled, the workload starts with default dispositions. */
static void reset_signals(void) {
  struct sigaction dfl = {.sa_handler = SIG_DFL};
  for (int sig = 1; sig < NSIG; sig++)
    if (sig != SIGKILL && sig != SIGSTOP) sigaction(sig, &dfl, NULL); /* EINVAL past the last one is fine */
}

/* The last steps of the process that becomes the workload. */
static void exec_workload_now(const struct child_ctx *c, int slave, struct shim_err *err) {
  if (slave >= 0 && tty_attach(slave, err) < 0) return;
  reset_signals();
  if (sigprocmask(SIG_SETMASK, c->oldmask, NULL) < 0) {
    shim_err_sys(err, errno, "sigprocmask", "restore the signal mask");
    return;
  }
  exec_workload(c->spec->args, c->spec->env, err);
}

static void fail(const struct child_ctx *c, const struct shim_err *err) {
  chan_send_err(c->chan, err);
  _exit(err->code ? err->code : EXIT_SHIM_FAILED);
}

void container_child(const struct child_ctx *c) {
  struct shim_err err = {0};
  int slave = -1;
  int layers[CHAN_MAX_FDS];
  size_t n_layers = 0;
  int host_pid = 0;
  int go = chan_wait_go(c->chan, &host_pid, layers, &n_layers, &err);
  if (go <= 0) _exit(EXIT_SHIM_FAILED); /* the shim is gone */
  if (setup(c, host_pid, layers, n_layers, &slave, &err) < 0) fail(c, &err);
  for (size_t i = 0; i < n_layers; i++) close(layers[i]);
  /* startContainer: inside the container, with its capabilities, right before the workload. */
  if (hooks_run(c->spec, HOOK_START_CONTAINER, host_pid, "created", NULL, &err) < 0) fail(c, &err);
  if (!c->spec->init) {
    exec_workload_now(c, slave, &err);
    fail(c, &err);
  }
  pid_t pid = fork();
  if (pid < 0) {
    shim_err_sys(&err, errno, "fork", "the workload under init");
    fail(c, &err);
  }
  if (pid == 0) {
    exec_workload_now(c, slave, &err);
    fail(c, &err);
  }
  /* PID 1: the workload's exec closes the last copy of the channel. */
  proctitle_set("feather-init");
  syscall(SYS_close_range, 3U, ~0U, 0U); /* the channel, the pty slave, whatever the shim had open */
  sigset_t waitset;
  sigprocmask(SIG_SETMASK, NULL, &waitset);
  sigaddset(&waitset, SIGCHLD);
  _exit(init_supervise(pid, &waitset));
}
