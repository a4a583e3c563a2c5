#include "idmap.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "util.h"

int idmap_supported(void) {
  struct utsname u;
  int major = 0, minor = 0;
  if (uname(&u) < 0 || sscanf(u.release, "%d.%d", &major, &minor) != 2) return 0;
  if (major < 5 || (major == 5 && minor < 19)) return 0;
  /* EBADF means the system call exists. */
  return syscall(SYS_mount_setattr, -1, "", AT_EMPTY_PATH, NULL, 0) < 0 && errno != ENOSYS;
}

int idmap_layers(pid_t pid, const struct spec *s, int *fds, struct shim_err *err) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/ns/user", (int)pid);
  cleanup_close int userns = RETRY(open(path, O_RDONLY | O_CLOEXEC));
  if (userns < 0) return shim_err_sys(err, errno, "open", "%s", path);
  struct mount_attr attr = {.attr_set = MOUNT_ATTR_IDMAP, .userns_fd = (unsigned long long)userns};
  for (size_t i = 0; i < s->n_lower; i++) {
    fds[i] = open_tree(AT_FDCWD, s->lower[i], OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    if (fds[i] < 0) {
      int e = errno;
      while (i-- > 0) close(fds[i]);
      return shim_err_sys(err, e, "open_tree", "clone layer %s", s->lower[i]);
    }
    if (mount_setattr(fds[i], "", AT_EMPTY_PATH, &attr, sizeof attr) < 0) {
      int e = errno;
      for (size_t j = 0; j <= i; j++) close(fds[j]);
      return shim_err_sys(err, e, "mount_setattr", "idmap layer %s", s->lower[i]);
    }
  }
  return 0;
}

int idmap_stage(const struct spec *s, const int *fds, size_t n, char **paths, struct shim_err *err) {
  if (mount("tmpfs", s->rootfs, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=700,size=16k") < 0)
    return shim_err_sys(err, errno, "mount", "staging tmpfs at %s", s->rootfs);
  cleanup_close int stage = RETRY(open(s->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (stage < 0) return shim_err_sys(err, errno, "open", "staging %s", s->rootfs);
  for (size_t i = 0; i < n; i++) {
    char name[24];
    snprintf(name, sizeof name, "%zu", i);
    if (mkdirat(stage, name, 0700) < 0) return shim_err_sys(err, errno, "mkdirat", "staging %s/%s", s->rootfs, name);
    if (move_mount(fds[i], "", stage, name, MOVE_MOUNT_F_EMPTY_PATH) < 0)
      return shim_err_sys(err, errno, "move_mount", "idmapped layer %s", s->lower[i]);
    size_t len = strlen(s->rootfs) + sizeof name + 2;
    paths[i] = malloc(len);
    if (!paths[i]) return shim_err_sys(err, ENOMEM, "malloc", "layer path");
    snprintf(paths[i], len, "%s/%s", s->rootfs, name);
  }
  return 0;
}
