#include "logrot.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

static int open_log(struct logrot *l, int trunc, struct shim_err *err) {
  int flags = O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (trunc ? O_TRUNC : 0);
  l->fd = RETRY(open(l->path, flags, 0640));
  if (l->fd < 0) return shim_err_sys(err, errno, "open", "log %s", l->path);
  struct stat st;
  if (fstat(l->fd, &st) < 0) return shim_err_sys(err, errno, "fstat", "log %s", l->path);
  l->size = st.st_size;
  return 0;
}

int logrot_open(struct logrot *l, const char *path, long long max, struct shim_err *err) {
  memset(l, 0, sizeof *l);
  l->fd = -1;
  l->path = path;
  l->max = max;
  size_t n = strlen(path) + 3;
  l->path1 = malloc(n);
  if (!l->path1) return shim_err_sys(err, ENOMEM, "malloc", "log %s", path);
  snprintf(l->path1, n, "%s.1", path);
  return open_log(l, 0, err);
}

int logrot_rotate(struct logrot *l, struct shim_err *err) {
  if (rename(l->path, l->path1) < 0) return shim_err_sys(err, errno, "rename", "log %s to %s", l->path, l->path1);
  close_fd(&l->fd);
  return open_log(l, 1, err);
}

int logrot_write(struct logrot *l, const char *buf, size_t n, struct shim_err *err) {
  while (n > 0) {
    size_t chunk = n;
    if (l->max > 0) {
      if (l->size >= l->max && logrot_rotate(l, err) < 0) return -1;
      long long room = l->max - l->size;
      if ((long long)chunk > room) chunk = (size_t)room;
    }
    if (write_all(l->fd, buf, chunk) < 0) return shim_err_sys(err, errno, "write", "log %s", l->path);
    l->size += (long long)chunk;
    buf += chunk;
    n -= chunk;
  }
  return 0;
}

void logrot_close(struct logrot *l) {
  close_fd(&l->fd);
  free(l->path1);
  l->path1 = NULL;
}
