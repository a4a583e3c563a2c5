/* Paths inside the container root, resolved by the kernel as if the root were "/"
 * (openat2 RESOLVE_IN_ROOT), so a symlink in an image can never lead a mount outside. */
#ifndef FEATHER_FS_H
#define FEATHER_FS_H

#include "error.h"

#define FD_PATH_MAX 32

/* O_PATH fd of path inside rootfd. */
int fs_open_in_root(int rootfd, const char *path, int flags, struct shim_err *err);

/* Like fs_open_in_root, creating missing parents (0755) and the last component
 * (a directory, or an empty file when as_file). */
int fs_mkpath_in_root(int rootfd, const char *path, int as_file, struct shim_err *err);

/* "/proc/self/fd/N": a path for mount(2) that names exactly that fd's file. */
const char *fs_fd_path(char buf[FD_PATH_MAX], int fd);

#endif
