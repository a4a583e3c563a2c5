/* The container's filesystem, built inside its own mount namespace only. */
#ifndef FEATHER_MOUNTS_H
#define FEATHER_MOUNTS_H

#include <stddef.h>

#include "error.h"
#include "spec.h"

/* Before pivot_root: / private, overlay at rootfs, /proc, /sys, /dev, bind= and device= entries.
 * layer_fds: idmapped lower layers from the shim (idmap=1), else none. Returns an O_PATH fd of the new root. */
int mounts_build_root(const struct spec *s, const int *layer_fds, size_t n_fds, struct shim_err *err);

/* pivot_root into rootfd and detach the old root entirely. */
int mounts_pivot(int rootfd, struct shim_err *err);

/* After pivot_root: mask and write-protect the kernel files Docker hides. */
int mounts_mask(struct shim_err *err);

/* The minimal /dev, a tmpfs at devfd (an O_PATH fd of the directory). */
int dev_setup(int rootfd, int devpts_gid5, struct shim_err *err);

#endif
