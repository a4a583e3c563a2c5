/* The container's /dev: a small tmpfs with the host's basic nodes bind-mounted (bind mounts
 * of host nodes work inside a user namespace, where mknod does not), a private devpts, /dev/shm. */
#include <fcntl.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs.h"
#include "mounts.h"
#include "util.h"

static const char *const nodes[] = {"null", "zero", "full", "random", "urandom", "tty"};

static const struct {
  const char *target;
  const char *name;
} links[] = {
    {"/proc/self/fd", "fd"},
    {"/proc/self/fd/0", "stdin"},
    {"/proc/self/fd/1", "stdout"},
    {"/proc/self/fd/2", "stderr"},
    {"pts/ptmx", "ptmx"},
};

static int bind_node(int devfd, const char *name, struct shim_err *err) {
  char host[64], dst[FD_PATH_MAX + 16];
  snprintf(host, sizeof host, "/dev/%s", name);
  snprintf(dst, sizeof dst, "/proc/self/fd/%d/%s", devfd, name);
  int fd = RETRY(openat(devfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666));
  if (fd < 0) return shim_err_sys(err, errno, "openat", "create /dev/%s", name);
  close(fd);
  if (mount(host, dst, NULL, MS_BIND, NULL) < 0) return shim_err_sys(err, errno, "mount", "bind %s", host);
  return 0;
}

static int mount_in_dev(int devfd, const char *name, mode_t mode, const char *type, unsigned long flags,
                        const char *data, struct shim_err *err) {
  char dst[FD_PATH_MAX + 16];
  if (mkdirat(devfd, name, mode) < 0) return shim_err_sys(err, errno, "mkdirat", "/dev/%s", name);
  snprintf(dst, sizeof dst, "/proc/self/fd/%d/%s", devfd, name);
  if (mount(type, dst, type, flags, data) < 0) return shim_err_sys(err, errno, "mount", "%s at /dev/%s", type, name);
  return 0;
}

int dev_setup(int rootfd, int devpts_gid5, struct shim_err *err) {
  char fdp[FD_PATH_MAX];
  {
    cleanup_close int under = fs_mkpath_in_root(rootfd, "/dev", 0, err);
    if (under < 0) return -1;
    if (mount("tmpfs", fs_fd_path(fdp, under), "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k") < 0)
      return shim_err_sys(err, errno, "mount", "tmpfs at /dev");
  }
  cleanup_close int devfd = fs_open_in_root(rootfd, "/dev", O_PATH | O_DIRECTORY, err);
  if (devfd < 0) return -1;
  for (size_t i = 0; i < ARRAY_LEN(nodes); i++)
    if (bind_node(devfd, nodes[i], err) < 0) return -1;
  const char *pts_opts = devpts_gid5 ? "newinstance,ptmxmode=0666,mode=0620,gid=5" : "newinstance,ptmxmode=0666,mode=0620";
  if (mount_in_dev(devfd, "pts", 0755, "devpts", MS_NOSUID | MS_NOEXEC, pts_opts, err) < 0) return -1;
  if (mount_in_dev(devfd, "shm", 01777, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k", err) < 0)
    return -1;
  for (size_t i = 0; i < ARRAY_LEN(links); i++)
    if (symlinkat(links[i].target, devfd, links[i].name) < 0)
      return shim_err_sys(err, errno, "symlinkat", "/dev/%s", links[i].name);
  return 0;
}
