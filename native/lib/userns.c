#include "userns.h"

#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <unistd.h>

#include "util.h"

static int write_map(pid_t pid, const char *file, unsigned host, unsigned size, struct shim_err *err) {
  char path[64], line[64];
  snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, file);
  int n = snprintf(line, sizeof line, "0 %u %u\n", host, size);
  cleanup_close int fd = RETRY(open(path, O_WRONLY | O_CLOEXEC));
  if (fd < 0) return shim_err_sys(err, errno, "open", "%s", path);
  if (write_all(fd, line, (size_t)n) < 0) return shim_err_sys(err, errno, "write", "%s", path);
  return 0;
}

int userns_write_maps(pid_t pid, const struct spec *s, struct shim_err *err) {
  if (write_map(pid, "uid_map", s->host_uid, s->userns_size, err) < 0) return -1;
  return write_map(pid, "gid_map", s->host_gid, s->userns_size, err);
}

int userns_become_root(struct shim_err *err) {
  if (setresgid(0, 0, 0) < 0) return shim_err_sys(err, errno, "setresgid", "become root of the user namespace");
  if (setgroups(0, NULL) < 0) return shim_err_sys(err, errno, "setgroups", "drop supplementary groups");
  if (setresuid(0, 0, 0) < 0) return shim_err_sys(err, errno, "setresuid", "become root of the user namespace");
  return 0;
}
