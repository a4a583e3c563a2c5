#include "state.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <unistd.h>

#include "util.h"

int state_format(const struct shim_state *st, char *buf, size_t len, struct shim_err *err) {
  int n;
  if (!st->exited)
    n = snprintf(buf, len, "{\"version\":1,\"status\":\"running\",\"pid\":%d,\"shimPid\":%d,\"startedAt\":%lld}\n",
                 (int)st->pid, (int)st->shim_pid, st->started_at);
  else
    n = snprintf(buf, len,
                 "{\"version\":1,\"status\":\"exited\",\"pid\":%d,\"shimPid\":%d,\"startedAt\":%lld,"
                 "\"finishedAt\":%lld,\"exitCode\":%d,\"signal\":%d,\"oomKills\":%lld}\n",
                 (int)st->pid, (int)st->shim_pid, st->started_at, st->finished_at, st->exit_code, st->signal,
                 st->oom_kills);
  if (n < 0 || (size_t)n >= len) return shim_err_new(err, EXIT_SHIM_FAILED, "state: buffer too small");
  return n;
}

int state_write(const char *path, const struct shim_state *st, struct shim_err *err) {
  char json[512];
  char tmp[PATH_MAX];
  int n = state_format(st, json, sizeof json, err);
  if (n < 0) return -1;
  if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
    return shim_err_new(err, EXIT_SHIM_FAILED, "state %s: path too long", path);
  cleanup_close int fd = RETRY(open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (fd < 0) return shim_err_sys(err, errno, "open", "state %s", tmp);
  if (write_all(fd, json, (size_t)n) < 0) return shim_err_sys(err, errno, "write", "state %s", tmp);
  if (close(take_fd(&fd)) < 0) return shim_err_sys(err, errno, "close", "state %s", tmp);
  if (rename(tmp, path) < 0) return shim_err_sys(err, errno, "rename", "state %s to %s", tmp, path);
  return 0;
}
