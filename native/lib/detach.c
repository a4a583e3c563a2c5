/* detach=1: the starter forks a supervisor in a new session with its stdio on /dev/null; the
 * supervisor runs the container and reports once the workload runs; the starter prints the pids. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "run.h"
#include "util.h"

static int become_supervisor(struct shim_err *err) {
  if (setsid() < 0) return shim_err_sys(err, errno, "setsid", "detach");
  cleanup_close int null = RETRY(open("/dev/null", O_RDWR | O_CLOEXEC));
  if (null < 0) return shim_err_sys(err, errno, "open", "/dev/null");
  for (int fd = 0; fd < 3; fd++)
    if (dup2(null, fd) < 0) return shim_err_sys(err, errno, "dup2", "/dev/null to fd %d", fd);
  if (chdir("/") < 0) return shim_err_sys(err, errno, "chdir", "/");
  return 0;
}

static __attribute__((noreturn)) void supervisor(const struct spec *s, int report_fd) {
  struct shim_err err = {0};
  int code = become_supervisor(&err) < 0 ? -1 : run_container(s, &report_fd, &err);
  if (code < 0 && report_fd >= 0) {
    struct start_report r = {.ok = 0, .code = err.code};
    memcpy(r.msg, err.msg, sizeof r.msg);
    (void)write_all(report_fd, &r, sizeof r);
  }
  _exit(code < 0 ? err.code : code);
}

int run_detached(const struct spec *s) {
  struct shim_err err = {0};
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0) {
    shim_err_sys(&err, errno, "pipe2", "detach");
    shim_err_print(&err);
    return EXIT_SHIM_FAILED;
  }
  pid_t pid = fork();
  if (pid < 0) {
    shim_err_sys(&err, errno, "fork", "the supervisor");
    shim_err_print(&err);
    return EXIT_SHIM_FAILED;
  }
  if (pid == 0) {
    close(p[0]);
    supervisor(s, p[1]);
  }
  close(p[1]);
  struct start_report r;
  ssize_t n = read_all(p[0], &r, sizeof r);
  close(p[0]);
  if (n != (ssize_t)sizeof r) {
    shim_err_new(&err, EXIT_SHIM_FAILED, "detach: the supervisor (pid %d) exited before the container started",
                 (int)pid);
    shim_err_print(&err);
    return EXIT_SHIM_FAILED;
  }
  if (!r.ok) {
    r.msg[sizeof r.msg - 1] = '\0';
    shim_err_new(&err, r.code, "%s", r.msg);
    shim_err_print(&err);
    return r.code ? r.code : EXIT_SHIM_FAILED;
  }
  char out[96];
  int len = snprintf(out, sizeof out, "{\"pid\":%d,\"shimPid\":%d}\n", r.pid, r.shim_pid);
  if (write_all(STDOUT_FILENO, out, (size_t)len) < 0) return EXIT_SHIM_FAILED;
  return 0;
}
