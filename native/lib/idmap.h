/* idmap=1: lower layers stay owned as in the image (root = host 0); each is mounted through an
 * idmapped mount that shifts it into the container's user namespace, so no chowned copy is needed. */
#ifndef FEATHER_IDMAP_H
#define FEATHER_IDMAP_H

#include <stddef.h>
#include <sys/types.h>

#include "error.h"
#include "spec.h"

/* Whether this kernel has idmapped mounts and overlay accepts idmapped layers (5.19+). */
int idmap_supported(void);

/* Parent side, once pid's id maps are written: a detached idmapped clone of every lower layer,
 * in order, into fds[0..n_lower). */
int idmap_layers(pid_t pid, const struct spec *s, int *fds, struct shim_err *err);

/* Child side: attach the layer fds on a private tmpfs mounted at rootfs (the overlay is stacked on
 * it and the tmpfs leaves with the host's root at pivot_root). paths[i] get "<rootfs>/<i>" (malloc'd). */
int idmap_stage(const struct spec *s, const int *fds, size_t n, char **paths, struct shim_err *err);

#endif
