#include "cgroup.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

int cgroup_join(const char *dir, pid_t pid, struct shim_err *err) {
  char path[PATH_MAX], num[16];
  if (snprintf(path, sizeof path, "%s/cgroup.procs", dir) >= (int)sizeof path)
    return shim_err_new(err, EXIT_SHIM_FAILED, "cgroup %s: path too long", dir);
  int n = snprintf(num, sizeof num, "%d", (int)pid);
  cleanup_close int fd = RETRY(open(path, O_WRONLY | O_CLOEXEC));
  if (fd < 0) return shim_err_sys(err, errno, "open", "join cgroup %s", path);
  if (write_all(fd, num, (size_t)n) < 0) return shim_err_sys(err, errno, "write", "join cgroup %s", path);
  return 0;
}

int cgroup_parse_oom(const char *text, long long *out) {
  static const char key[] = "oom_kill ";
  const char *p = text;
  while (p && *p) {
    if (strncmp(p, key, sizeof key - 1) == 0) {
      const char *d = p + sizeof key - 1;
      long long n = 0;
      if (*d < '0' || *d > '9') return -1;
      for (; *d >= '0' && *d <= '9'; d++) n = n * 10 + (*d - '0');
      *out = n;
      return 0;
    }
    p = strchr(p, '\n');
    if (p) p++;
  }
  return -1;
}

static int read_small(const char *path, char *buf, size_t len) {
  cleanup_close int fd = RETRY(open(path, O_RDONLY | O_CLOEXEC));
  if (fd < 0) return -1;
  ssize_t n = read_all(fd, buf, len - 1);
  if (n < 0) return -1;
  buf[n] = '\0';
  return 0;
}

int cgroup_oom_kills(const char *dir, long long *out, struct shim_err *err) {
  static const char *files[] = {"memory.events", "memory.oom_control"};
  char path[PATH_MAX], text[1024];
  *out = 0;
  for (size_t i = 0; i < ARRAY_LEN(files); i++) {
    snprintf(path, sizeof path, "%s/%s", dir, files[i]);
    if (read_small(path, text, sizeof text) < 0) {
      if (errno == ENOENT) continue;
      return shim_err_sys(err, errno, "read", "oom count %s", path);
    }
    if (cgroup_parse_oom(text, out) == 0) return 0;
  }
  return 0;
}

int cgroup_remove(const char *dir, struct shim_err *err) {
  struct timespec pause = {0, 2 * 1000 * 1000};
  for (int tries = 0;; tries++) {
    if (rmdir(dir) == 0 || errno == ENOENT) return 0;
    if (errno != EBUSY || tries == 250) return shim_err_sys(err, errno, "rmdir", "remove cgroup %s", dir);
    nanosleep(&pause, NULL);
  }
}
