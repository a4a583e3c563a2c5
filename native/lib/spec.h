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

/* OCI hooks the shim runs itself (docs/shim-spec.md); poststart/poststop are the agent's. */
enum hook_kind { HOOK_CREATE_RUNTIME, HOOK_CREATE_CONTAINER, HOOK_START_CONTAINER, HOOK_KINDS };

struct devrule; /* devfilter.h */

struct spec_hook {
  enum hook_kind kind;
  unsigned timeout_s;
  const char *path;
  char **args; /* owned array, NULL-terminated; { path } when no hook_arg was given */
  char **env;  /* owned array, NULL-terminated */
  size_t n_args, n_env;
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
  struct spec_hook *hooks;
  size_t n_hooks;
  const char *bundle; /* the OCI bundle directory named in the hooks' state */
  const char *devcgroup;    /* cgroup2 dir that gets the device filter (devfilter.h), or NULL */
  struct devrule *devrules; /* its allow-list; everything else is denied */
  size_t n_devrules;
};

/* "createRuntime", "createContainer", "startContainer". */
const char *spec_hook_kind_name(enum hook_kind kind);

/* How many hooks of this kind the spec holds. */
size_t spec_hook_count(const struct spec *s, enum hook_kind kind);

/* Parse len bytes at buf; takes ownership of buf (malloc'd) even on failure. */
int spec_parse(struct spec *s, char *buf, size_t len, struct shim_err *err);

/* Read and parse a spec file. */
int spec_load(struct spec *s, const char *path, struct shim_err *err);

void spec_free(struct spec *s);

#endif
