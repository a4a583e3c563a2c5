/* Spec format v1 (docs/shim-spec.md): NUL-terminated "key=value" records. */
#ifndef FEATHER_SPEC_H
#define FEATHER_SPEC_H

#include <stddef.h>

#include "error.h"

struct spec_bind {
  const char *src;
  const char *dst;
  int readonly;
};

struct spec_device {
  const char *host;
  const char *path;
};

struct spec {
  char *buf; /* owned: the records; every string below points into it */
  size_t len;
  const char *name, *rootfs, *upper, *work, *cwd, *state, *log;
  const char **lower;
  size_t n_lower;
  char **args; /* NULL-terminated */
  size_t n_args;
  char **env; /* NULL-terminated */
  size_t n_env;
  const char **cgroups;
  size_t n_cgroups;
  struct spec_bind *binds;
  size_t n_binds;
  struct spec_device *devices;
  size_t n_devices;
  int net_host, tty, detach, init;
  int userns;
  unsigned host_uid, host_gid, userns_size;
  int idmap; /* lower layers owned as in the image, shifted by idmapped mounts (needs userns) */
  long long log_max; /* 0: no cap */
};

/* Parse len bytes at buf; takes ownership of buf (malloc'd) even on failure. */
int spec_parse(struct spec *s, char *buf, size_t len, struct shim_err *err);

/* Read and parse a spec file. */
int spec_load(struct spec *s, const char *path, struct shim_err *err);

void spec_free(struct spec *s);

#endif
