#include "fs.h"

#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util.h"

static int openat2_in_root(int rootfd, const char *path, int flags) {
  struct open_how how = {
      .flags = (unsigned long long)(flags | O_CLOEXEC),
      .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
  };
  while (*path == '/') path++;
  if (*path == '\0') path = ".";
  return (int)RETRY(syscall(SYS_openat2, rootfd, path, &how, sizeof how));
}

int fs_open_in_root(int rootfd, const char *path, int flags, struct shim_err *err) {
  int fd = openat2_in_root(rootfd, path, flags);
  if (fd < 0) return shim_err_sys(err, errno, "openat2", "open %s in the container root", path);
  return fd;
}

/* Create one missing component: the parent is opened inside the root, the name made there. */
static int make_component(int rootfd, char *prefix, char *slash, int as_file, struct shim_err *err) {
  const char *name = slash + 1;
  *slash = '\0';
  cleanup_close int parent = openat2_in_root(rootfd, prefix[0] ? prefix : "/", O_PATH | O_DIRECTORY);
  *slash = '/';
  if (parent < 0) return shim_err_sys(err, errno, "openat2", "open the parent of %s in the container root", prefix);
  if (as_file) {
    int fd = RETRY(openat(parent, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
    if (fd < 0 && errno != EEXIST) return shim_err_sys(err, errno, "openat", "create %s in the container root", prefix);
    if (fd >= 0) close(fd);
    return 0;
  }
  if (mkdirat(parent, name, 0755) < 0 && errno != EEXIST)
    return shim_err_sys(err, errno, "mkdirat", "create %s in the container root", prefix);
  return 0;
}

int fs_mkpath_in_root(int rootfd, const char *path, int as_file, struct shim_err *err) {
  char buf[PATH_MAX];
  int fd = openat2_in_root(rootfd, path, O_PATH);
  if (fd >= 0 || errno != ENOENT) {
    if (fd < 0) return shim_err_sys(err, errno, "openat2", "open %s in the container root", path);
    return fd;
  }
  if (snprintf(buf, sizeof buf, "/%s", path) >= (int)sizeof buf)
    return shim_err_new(err, EXIT_SHIM_FAILED, "%s: path too long", path);
  size_t len = strlen(buf);
  while (len > 1 && buf[len - 1] == '/') buf[--len] = '\0';
  /* Walk the prefixes; each missing one is created. */
  for (char *p = buf + 1;; p++) {
    if (*p != '/' && *p != '\0') continue;
    if (*p == '/' && p[-1] == '/') continue;
    int last = *p == '\0';
    char saved = *p;
    *p = '\0';
    int probe = openat2_in_root(rootfd, buf, O_PATH);
    if (probe >= 0) close(probe);
    else if (errno != ENOENT) return shim_err_sys(err, errno, "openat2", "open %s in the container root", buf);
    else if (make_component(rootfd, buf, strrchr(buf, '/'), last && as_file, err) < 0) return -1;
    *p = saved;
    if (last) break;
  }
  return fs_open_in_root(rootfd, path, O_PATH, err);
}

const char *fs_fd_path(char buf[FD_PATH_MAX], int fd) {
  snprintf(buf, FD_PATH_MAX, "/proc/self/fd/%d", fd);
  return buf;
}
