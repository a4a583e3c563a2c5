#include "hooks.h"

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

/* What a failing hook said: its last bytes are the ones that usually explain. */
#define HOOK_OUTPUT_MAX 600
#define STATE_MAX 8192

/* JSON string body of v (quotes, backslashes and control bytes escaped); 0 when it did not fit. */
static size_t json_escape(char *out, size_t cap, const char *v) {
  size_t n = 0;
  for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
    char tmp[8];
    size_t k;
    if (*p == '"' || *p == '\\') k = (size_t)snprintf(tmp, sizeof tmp, "\\%c", *p);
    else if (*p < 0x20) k = (size_t)snprintf(tmp, sizeof tmp, "\\u%04x", *p);
    else {
      tmp[0] = (char)*p;
      k = 1;
    }
    if (n + k >= cap) return 0;
    memcpy(out + n, tmp, k);
    n += k;
  }
  out[n] = '\0';
  return n + 1;
}

static int state_json(char *buf, size_t cap, const struct spec *s, pid_t pid, const char *status,
                      struct shim_err *err) {
  char bundle[PATH_MAX * 2];
  if (!json_escape(bundle, sizeof bundle, s->bundle ? s->bundle : ""))
    return shim_err_new(err, EXIT_SHIM_FAILED, "hook state: bundle path too long");
  int n = snprintf(buf, cap, "{\"ociVersion\":\"1.0.2\",\"id\":\"%s\",\"status\":\"%s\",\"pid\":%d,\"bundle\":\"%s\","
                   "\"annotations\":{}}", s->name, status, (int)pid, bundle);
  if (n < 0 || (size_t)n >= cap) return shim_err_new(err, EXIT_SHIM_FAILED, "hook state: too long");
  return n;
}

static long long mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The hook process: state on stdin, output to the capture pipe, a clean signal state, umask 022. */
__attribute__((noreturn)) static void hook_child(const struct spec_hook *h, int in, int out, const char *dir) {
  sigset_t none;
  sigemptyset(&none);
  struct sigaction dfl = {.sa_handler = SIG_DFL};
  for (int sig = 1; sig < NSIG; sig++)
    if (sig != SIGKILL && sig != SIGSTOP) sigaction(sig, &dfl, NULL);
  sigprocmask(SIG_SETMASK, &none, NULL);
  umask(022);
  if (dup2(in, STDIN_FILENO) < 0 || dup2(out, STDOUT_FILENO) < 0 || dup2(out, STDERR_FILENO) < 0) _exit(126);
  if (dir && chdir(dir) < 0) {
    dprintf(STDERR_FILENO, "chdir %s: %s", dir, strerror(errno));
    _exit(126);
  }
  execve(h->path, h->args, h->env);
  dprintf(STDERR_FILENO, "execve: %s (errno %d)", strerror(errno), errno);
  _exit(errno == ENOENT ? 127 : 126);
}

/* Keep the last HOOK_OUTPUT_MAX bytes of the hook's output. */
static void keep_tail(char *tail, size_t *len, const char *buf, size_t n) {
  if (n >= HOOK_OUTPUT_MAX) {
    memcpy(tail, buf + n - HOOK_OUTPUT_MAX, HOOK_OUTPUT_MAX);
    *len = HOOK_OUTPUT_MAX;
    return;
  }
  if (*len + n > HOOK_OUTPUT_MAX) {
    size_t drop = *len + n - HOOK_OUTPUT_MAX;
    memmove(tail, tail + drop, *len - drop);
    *len -= drop;
  }
  memcpy(tail + *len, buf, n);
  *len += n;
}

static void drain(int *fd, char *tail, size_t *len) {
  char buf[4096];
  for (;;) {
    ssize_t n = RETRY(read(*fd, buf, sizeof buf));
    if (n > 0) {
      keep_tail(tail, len, buf, (size_t)n);
      continue;
    }
    if (n == 0) close_fd(fd); /* EOF; EAGAIN leaves it open */
    return;
  }
}

/* Wait for pid until deadline, reading its output meanwhile. 1: exited (*status), 0: timed out. */
static int wait_hook(pid_t pid, int *out, char *tail, size_t *len, long long deadline, int *status,
                     struct shim_err *err) {
  /* A pidfd wakes us when the hook exits even if a child of it keeps the output pipe open. */
  cleanup_close int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  for (;;) {
    pid_t w = RETRY(waitpid(pid, status, WNOHANG));
    if (w == pid) return 1;
    if (w < 0) return shim_err_sys(err, errno, "waitpid", "hook");
    long long left = deadline - mono_ms();
    if (left <= 0) return 0;
    struct pollfd p[2] = {{.fd = pidfd, .events = POLLIN}, {.fd = *out, .events = POLLIN}};
    /* Without pidfds (Linux < 5.3) or once the output is closed, look again every 5 ms. */
    int slice = pidfd >= 0 && *out >= 0 ? (int)(left > 60000 ? 60000 : left) : (int)(left < 5 ? left : 5);
    if (RETRY(poll(p, 2, slice)) < 0) return shim_err_sys(err, errno, "poll", "hook");
    if (*out >= 0 && p[1].revents) drain(out, tail, len);
  }
}

static int run_one(const struct spec_hook *h, const char *state, size_t state_len,
                   const char *dir, struct shim_err *err) {
  const char *kind = spec_hook_kind_name(h->kind);
  int in[2], out[2];
  /* The state is written before the hook starts: it fits in the pipe, and a hook that never reads
   * its stdin cannot make the shim block or take a SIGPIPE. */
  if (pipe2(in, O_CLOEXEC) < 0) return shim_err_sys(err, errno, "pipe2", "%s hook %s: stdin", kind, h->path);
  cleanup_close int in_r = in[0];
  {
    cleanup_close int in_w = in[1];
    if (write_all(in_w, state, state_len) < 0)
      return shim_err_sys(err, errno, "write", "%s hook %s: state", kind, h->path);
  }
  if (pipe2(out, O_CLOEXEC) < 0) return shim_err_sys(err, errno, "pipe2", "%s hook %s: output", kind, h->path);
  cleanup_close int out_r = out[0];
  cleanup_close int out_w = out[1];
  if (fcntl(out_r, F_SETFL, O_NONBLOCK) < 0)
    return shim_err_sys(err, errno, "fcntl", "%s hook %s: output", kind, h->path);
  long long deadline = mono_ms() + (long long)h->timeout_s * 1000;
  pid_t pid = fork();
  if (pid < 0) return shim_err_sys(err, errno, "fork", "%s hook %s", kind, h->path);
  if (pid == 0) hook_child(h, in_r, out_w, dir);
  close_fd(&out_w);
  close_fd(&in_r);
  char tail[HOOK_OUTPUT_MAX + 1];
  size_t len = 0;
  int status = 0;
  int done = wait_hook(pid, &out_r, tail, &len, deadline, &status, err);
  if (done < 0 || done == 0) {
    kill(pid, SIGKILL);
    RETRY(waitpid(pid, &status, 0));
    if (done < 0) return shim_err_wrap(err, "%s hook %s", kind, h->path);
  } else if (out_r >= 0) {
    drain(&out_r, tail, &len);
  }
  tail[len] = '\0';
  while (len > 0 && (tail[len - 1] == '\n' || tail[len - 1] == ' ')) tail[--len] = '\0';
  const char *sep = len ? ": " : "";
  if (done == 0)
    return shim_err_new(err, EXIT_SHIM_FAILED, "%s hook %s: killed after its timeout of %us%s%s", kind, h->path,
                        h->timeout_s, sep, tail);
  if (WIFSIGNALED(status))
    return shim_err_new(err, EXIT_SHIM_FAILED, "%s hook %s: killed by signal %d%s%s", kind, h->path,
                        WTERMSIG(status), sep, tail);
  if (WEXITSTATUS(status) != 0)
    return shim_err_new(err, EXIT_SHIM_FAILED, "%s hook %s: exited with status %d%s%s", kind, h->path,
                        WEXITSTATUS(status), sep, tail);
  return 0;
}

int hooks_run(const struct spec *s, enum hook_kind kind, pid_t pid, const char *status, const char *dir,
              struct shim_err *err) {
  if (spec_hook_count(s, kind) == 0) return 0;
  char state[STATE_MAX];
  int n = state_json(state, sizeof state, s, pid, status, err);
  if (n < 0) return -1;
  for (size_t i = 0; i < s->n_hooks; i++)
    if (s->hooks[i].kind == kind && run_one(&s->hooks[i], state, (size_t)n, dir, err) < 0) return -1;
  return 0;
}
