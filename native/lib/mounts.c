#include "mounts.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fs.h"
#include "idmap.h"
#include "util.h"

static int mount_overlay(const struct spec *s, char *const *lowers, struct shim_err *err) {
  char opts[4096];
  size_t off = 0;
  int n = snprintf(opts, sizeof opts, "lowerdir=");
  off = (size_t)n;
  for (size_t i = 0; i < s->n_lower && off < sizeof opts; i++) {
    n = snprintf(opts + off, sizeof opts - off, "%s%s", i ? ":" : "", lowers[i]);
    off += (size_t)n;
  }
  if (off < sizeof opts) {
    n = snprintf(opts + off, sizeof opts - off, ",upperdir=%s,workdir=%s%s", s->upper, s->work,
                 s->userns ? ",userxattr" : "");
    off += (size_t)n;
  }
  if (off >= sizeof opts)
    return shim_err_new(err, EXIT_SHIM_FAILED, "overlay options longer than %zu bytes (too many layers)", sizeof opts);
  if (mount("overlay", s->rootfs, "overlay", 0, opts) < 0)
    return shim_err_sys(err, errno, "mount", "overlay at %s", s->rootfs);
  return 0;
}

/* Mount a fresh filesystem at path (inside the root), creating the directory if needed. */
static int mount_fresh(int rootfd, const char *path, const char *type, unsigned long flags, const char *data,
                       struct shim_err *err) {
  char fdp[FD_PATH_MAX];
  cleanup_close int fd = fs_mkpath_in_root(rootfd, path, 0, err);
  if (fd < 0) return -1;
  if (mount(type, fs_fd_path(fdp, fd), type, flags, data) < 0)
    return shim_err_sys(err, errno, "mount", "%s at %s", type, path);
  return 0;
}

/* Keep the flags a less privileged namespace may not clear (they are locked on bind mounts). */
static unsigned long locked_flags(int fd) {
  struct statvfs sv;
  unsigned long f = 0;
  if (fstatvfs(fd, &sv) < 0) return 0;
  if (sv.f_flag & ST_NOSUID) f |= MS_NOSUID;
  if (sv.f_flag & ST_NODEV) f |= MS_NODEV;
  if (sv.f_flag & ST_NOEXEC) f |= MS_NOEXEC;
  if (sv.f_flag & ST_NOATIME) f |= MS_NOATIME;
  if (sv.f_flag & ST_NODIRATIME) f |= MS_NODIRATIME;
  if (sv.f_flag & ST_RELATIME) f |= MS_RELATIME;
  return f;
}

static int bind_into(int rootfd, const char *src, const char *dst, int readonly, struct shim_err *err) {
  char fdp[FD_PATH_MAX];
  struct stat st;
  if (stat(src, &st) < 0) return shim_err_sys(err, errno, "stat", "bind source %s", src);
  cleanup_close int fd = fs_mkpath_in_root(rootfd, dst, !S_ISDIR(st.st_mode), err);
  if (fd < 0) return -1;
  if (mount(src, fs_fd_path(fdp, fd), NULL, MS_BIND | MS_REC, NULL) < 0)
    return shim_err_sys(err, errno, "mount", "bind %s at %s", src, dst);
  if (!readonly) return 0;
  /* Reopen: the fd names the directory under the new mount, the remount needs its root. */
  cleanup_close int top = fs_open_in_root(rootfd, dst, O_PATH, err);
  if (top < 0) return -1;
  unsigned long flags = MS_BIND | MS_REMOUNT | MS_RDONLY | locked_flags(top);
  if (mount(NULL, fs_fd_path(fdp, top), NULL, flags, NULL) < 0)
    return shim_err_sys(err, errno, "mount", "remount %s read-only", dst);
  return 0;
}

static int mount_sys(int rootfd, const struct spec *s, struct shim_err *err) {
  unsigned long flags = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC;
  if (mount_fresh(rootfd, "/sys", "sysfs", flags, NULL, err) == 0) return 0;
  /* A user namespace may not mount sysfs for the host's network namespace: bind it read-only. */
  if (!(s->userns && s->net_host && err->errnum == EPERM)) return -1;
  if (bind_into(rootfd, "/sys", "/sys", 1, err) < 0) return -1;
  /* The recursive bind brings the host's cgroup hierarchies: cover them. */
  char fdp[FD_PATH_MAX];
  cleanup_close int cg = fs_open_in_root(rootfd, "/sys/fs/cgroup", O_PATH | O_DIRECTORY, err);
  if (cg < 0) return err->errnum == ENOENT ? 0 : -1;
  if (mount("tmpfs", fs_fd_path(fdp, cg), "tmpfs", flags, "mode=555,size=4k") < 0)
    return shim_err_sys(err, errno, "mount", "cover /sys/fs/cgroup");
  return 0;
}

/* The overlay's lower layers: the spec's paths, or the idmapped clones staged at rootfs. */
static int overlay_root(const struct spec *s, const int *layer_fds, size_t n_fds, struct shim_err *err) {
  if (n_fds == 0) return mount_overlay(s, (char *const *)s->lower, err);
  char **staged = calloc(n_fds, sizeof *staged);
  if (!staged) return shim_err_sys(err, ENOMEM, "calloc", "layer paths");
  int rc = idmap_stage(s, layer_fds, n_fds, staged, err);
  if (rc == 0) rc = mount_overlay(s, staged, err);
  for (size_t i = 0; i < n_fds; i++) free(staged[i]);
  free(staged);
  return rc;
}

int mounts_build_root(const struct spec *s, const int *layer_fds, size_t n_fds, struct shim_err *err) {
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
    return shim_err_sys(err, errno, "mount", "make / private");
  if (overlay_root(s, layer_fds, n_fds, err) < 0) return -1;
  cleanup_close int rootfd = RETRY(open(s->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (rootfd < 0) return shim_err_sys(err, errno, "open", "root %s", s->rootfs);
  if (mount_fresh(rootfd, "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, err) < 0) return -1;
  if (mount_sys(rootfd, s, err) < 0) return -1;
  if (dev_setup(rootfd, !s->userns || s->userns_size > 5, err) < 0) return -1;
  for (size_t i = 0; i < s->n_binds; i++)
    if (bind_into(rootfd, s->binds[i].src, s->binds[i].dst, s->binds[i].readonly, err) < 0) return -1;
  for (size_t i = 0; i < s->n_devices; i++)
    if (bind_into(rootfd, s->devices[i].host, s->devices[i].path, 0, err) < 0) return -1;
  return take_fd(&rootfd);
}

int mounts_pivot(int rootfd, struct shim_err *err) {
  if (fchdir(rootfd) < 0) return shim_err_sys(err, errno, "fchdir", "enter the container root");
  if (syscall(SYS_pivot_root, ".", ".") < 0) return shim_err_sys(err, errno, "pivot_root", "container root");
  if (umount2(".", MNT_DETACH) < 0) return shim_err_sys(err, errno, "umount2", "detach the host root");
  if (chdir("/") < 0) return shim_err_sys(err, errno, "chdir", "/");
  return 0;
}
