#include "spec.h"

#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chan.h"
#include "devfilter.h"
#include "util.h"

#define SPEC_MAX_BYTES (4 << 20)

enum key_id {
  K_VERSION, K_NAME, K_ROOTFS, K_LOWER, K_UPPER, K_WORK, K_ARG, K_ENV, K_CWD, K_NETWORK,
  K_CGROUP, K_USERNS, K_IDMAP, K_TTY, K_DETACH, K_INIT, K_STATE, K_LOG, K_LOG_MAX, K_BIND, K_DEVICE,
  K_HOOK, K_HOOK_ARG, K_HOOK_ENV, K_BUNDLE, K_DEVCGROUP, K_DEVRULE,
  K_COUNT
};

struct key_def {
  const char *name;
  int required;
  int repeat;
};

static const struct key_def keys[K_COUNT] = {
    [K_VERSION] = {"version", 1, 0}, [K_NAME] = {"name", 1, 0},     [K_ROOTFS] = {"rootfs", 1, 0},
    [K_LOWER] = {"lower", 1, 1},     [K_UPPER] = {"upper", 1, 0},   [K_WORK] = {"work", 1, 0},
    [K_ARG] = {"arg", 1, 1},         [K_ENV] = {"env", 0, 1},       [K_CWD] = {"cwd", 0, 0},
    [K_NETWORK] = {"network", 0, 0}, [K_CGROUP] = {"cgroup", 0, 1}, [K_USERNS] = {"userns", 0, 0},
    [K_IDMAP] = {"idmap", 0, 0},
    [K_TTY] = {"tty", 0, 0},         [K_DETACH] = {"detach", 0, 0}, [K_INIT] = {"init", 0, 0},
    [K_STATE] = {"state", 0, 0},     [K_LOG] = {"log", 0, 0},       [K_LOG_MAX] = {"log_max", 0, 0},
    [K_BIND] = {"bind", 0, 1},       [K_DEVICE] = {"device", 0, 1},
    [K_HOOK] = {"hook", 0, 1},       [K_HOOK_ARG] = {"hook_arg", 0, 1}, [K_HOOK_ENV] = {"hook_env", 0, 1},
    [K_BUNDLE] = {"bundle", 0, 0},
    [K_DEVCGROUP] = {"devcgroup", 0, 0}, [K_DEVRULE] = {"devrule", 0, 1},
};

static const char *const hook_kinds[HOOK_KINDS] = {
    [HOOK_CREATE_RUNTIME] = "createRuntime",
    [HOOK_CREATE_CONTAINER] = "createContainer",
    [HOOK_START_CONTAINER] = "startContainer",
};

static int find_key(const char *k, size_t klen) {
  for (int i = 0; i < K_COUNT; i++)
    if (strlen(keys[i].name) == klen && memcmp(keys[i].name, k, klen) == 0) return i;
  return -1;
}

static int bad(struct shim_err *err, size_t rec, const char *key, const char *what) {
  return shim_err_new(err, EXIT_SHIM_FAILED, "spec: record %zu (%s): %s", rec, key, what);
}

static int absolute(const char *v) { return v[0] == '/'; }

/* Overlay options split on ',' and lowerdir on ':'; such paths cannot be passed. */
static int overlay_safe(const char *v) { return strpbrk(v, ",:\\") == NULL; }

static int parse_bool(const char *v, int *out) {
  if (strcmp(v, "0") == 0) *out = 0;
  else if (strcmp(v, "1") == 0) *out = 1;
  else return -1;
  return 0;
}

static int parse_uint(const char *v, unsigned long long max, unsigned long long *out) {
  unsigned long long n = 0;
  if (*v == '\0') return -1;
  for (; *v; v++) {
    if (*v < '0' || *v > '9') return -1;
    n = n * 10 + (unsigned)(*v - '0');
    if (n > max) return -1;
  }
  *out = n;
  return 0;
}

static int parse_userns(struct spec *s, char *v) {
  unsigned long long u = 0, g = 0, n = 0;
  char *c1 = strchr(v, ':');
  char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
  if (!c1 || !c2) return -1;
  *c1 = '\0';
  *c2 = '\0';
  int r = parse_uint(v, UINT32_MAX - 1, &u) | parse_uint(c1 + 1, UINT32_MAX - 1, &g) |
          parse_uint(c2 + 1, UINT32_MAX, &n);
  *c1 = ':';
  *c2 = ':';
  if (r < 0 || n == 0 || u + n > UINT32_MAX || g + n > UINT32_MAX) return -1;
  s->userns = 1;
  s->host_uid = (unsigned)u;
  s->host_gid = (unsigned)g;
  s->userns_size = (unsigned)n;
  return 0;
}

/* Split v at TABs in place into at most max fields; returns the number of fields. */
static size_t split_tabs(char *v, char **fields, size_t max) {
  size_t n = 0;
  fields[n++] = v;
  for (char *p = v; *p; p++) {
    if (*p == '\t') {
      if (n == max) return max + 1;
      *p = '\0';
      fields[n++] = p + 1;
    }
  }
  return n;
}

static int valid_name(const char *v) {
  size_t n = strlen(v);
  if (n == 0 || n > 63 || v[0] == '-' || v[0] == '.') return 0;
  for (; *v; v++) {
    char c = *v;
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
          c == '_' || c == '.'))
      return 0;
  }
  return 1;
}

/* Append v to a NULL-terminated array that grows one slot at a time (hooks have few of each). */
static int push_str(char ***arr, size_t *n, char *v) {
  char **grown = realloc(*arr, (*n + 2) * sizeof **arr);
  if (!grown) return -1;
  grown[(*n)++] = v;
  grown[*n] = NULL;
  *arr = grown;
  return 0;
}

/* hook=KIND<TAB>TIMEOUT_S<TAB>PATH; the hook_arg/hook_env records that follow belong to it. */
static int parse_hook(struct spec *s, char *v, size_t rec, struct shim_err *err) {
  char *f[4];
  unsigned long long t;
  if (split_tabs(v, f, 3) != 3) return bad(err, rec, "hook", "must be KIND<TAB>TIMEOUT_S<TAB>PATH");
  int kind = -1;
  for (int i = 0; i < HOOK_KINDS; i++)
    if (strcmp(f[0], hook_kinds[i]) == 0) kind = i;
  if (kind < 0) return bad(err, rec, "hook", "KIND must be createRuntime, createContainer or startContainer");
  if (parse_uint(f[1], 86400, &t) < 0 || t == 0) return bad(err, rec, "hook", "TIMEOUT_S must be 1-86400");
  if (!absolute(f[2])) return bad(err, rec, "hook", "PATH must be absolute");
  struct spec_hook *h = &s->hooks[s->n_hooks++];
  h->kind = (enum hook_kind)kind;
  h->timeout_s = (unsigned)t;
  h->path = f[2];
  return 0;
}

static int add_hook_item(struct spec *s, int id, char *v, size_t rec, struct shim_err *err) {
  const char *k = keys[id].name;
  if (s->n_hooks == 0) return bad(err, rec, k, "must follow a hook record");
  struct spec_hook *h = &s->hooks[s->n_hooks - 1];
  if (id == K_HOOK_ENV && (v[0] == '=' || !strchr(v, '='))) return bad(err, rec, k, "must be KEY=VALUE");
  if (push_str(id == K_HOOK_ARG ? &h->args : &h->env, id == K_HOOK_ARG ? &h->n_args : &h->n_env, v) < 0)
    return shim_err_sys(err, ENOMEM, "realloc", "spec hook");
  return 0;
}

const char *spec_hook_kind_name(enum hook_kind kind) { return kind < HOOK_KINDS ? hook_kinds[kind] : "?"; }

size_t spec_hook_count(const struct spec *s, enum hook_kind kind) {
  size_t n = 0;
  for (size_t i = 0; i < s->n_hooks; i++) n += s->hooks[i].kind == kind;
  return n;
}

static int set_value(struct spec *s, int id, char *v, size_t rec, struct shim_err *err) {
  const char *k = keys[id].name;
  unsigned long long n;
  char *f[4];
  switch (id) {
  case K_VERSION:
    if (strcmp(v, "1") != 0) return bad(err, rec, k, "unsupported spec version (this shim speaks 1)");
    return 0;
  case K_NAME:
    if (!valid_name(v)) return bad(err, rec, k, "must be 1-63 of [A-Za-z0-9._-], not starting with '-' or '.'");
    s->name = v;
    return 0;
  case K_ROOTFS: case K_UPPER: case K_WORK: case K_LOWER:
    if (!absolute(v)) return bad(err, rec, k, "must be an absolute path");
    if (id != K_ROOTFS && !overlay_safe(v)) return bad(err, rec, k, "overlay paths cannot hold ',' ':' or '\\'");
    if (id == K_ROOTFS) s->rootfs = v;
    else if (id == K_UPPER) s->upper = v;
    else if (id == K_WORK) s->work = v;
    else s->lower[s->n_lower++] = v;
    return 0;
  case K_ARG:
    if (s->n_args == 0 && *v == '\0') return bad(err, rec, k, "the program (first arg) is empty");
    s->args[s->n_args++] = v;
    return 0;
  case K_ENV:
    if (v[0] == '=' || !strchr(v, '=')) return bad(err, rec, k, "must be KEY=VALUE");
    s->env[s->n_env++] = v;
    return 0;
  case K_HOOK:
    return parse_hook(s, v, rec, err);
  case K_HOOK_ARG: case K_HOOK_ENV:
    return add_hook_item(s, id, v, rec, err);
  case K_DEVCGROUP:
    if (!absolute(v)) return bad(err, rec, k, "must be an absolute path");
    s->devcgroup = v;
    return 0;
  case K_DEVRULE:
    if (s->n_devrules == DEVFILTER_MAX_RULES) return bad(err, rec, k, "too many (at most 512)");
    if (devrule_parse(v, &s->devrules[s->n_devrules], err) < 0) return shim_err_wrap(err, "spec: record %zu (%s)", rec, k);
    s->n_devrules++;
    return 0;
  case K_CWD: case K_STATE: case K_LOG: case K_CGROUP: case K_BUNDLE:
    if (!absolute(v)) return bad(err, rec, k, "must be an absolute path");
    if (id == K_BUNDLE) s->bundle = v;
    else if (id == K_CWD) s->cwd = v;
    else if (id == K_STATE) s->state = v;
    else if (id == K_LOG) s->log = v;
    else s->cgroups[s->n_cgroups++] = v;
    return 0;
  case K_NETWORK:
    if (strcmp(v, "host") == 0) s->net_host = 1;
    else if (strcmp(v, "none") == 0) s->net_host = 0;
    else return bad(err, rec, k, "must be none or host");
    return 0;
  case K_USERNS:
    if (parse_userns(s, v) < 0) return bad(err, rec, k, "must be HOSTUID:HOSTGID:SIZE with SIZE > 0");
    return 0;
  case K_TTY: case K_DETACH: case K_INIT: case K_IDMAP: {
    int *dst = id == K_TTY ? &s->tty : id == K_DETACH ? &s->detach : id == K_INIT ? &s->init : &s->idmap;
    if (parse_bool(v, dst) < 0) return bad(err, rec, k, "must be 0 or 1");
    return 0;
  }
  case K_LOG_MAX:
    if (parse_uint(v, LLONG_MAX, &n) < 0 || n == 0) return bad(err, rec, k, "must be a positive number of bytes");
    s->log_max = (long long)n;
    return 0;
  case K_BIND: {
    if (split_tabs(v, f, 3) != 3) return bad(err, rec, k, "must be SRC<TAB>DST<TAB>ro|rw");
    if (!absolute(f[0]) || !absolute(f[1])) return bad(err, rec, k, "SRC and DST must be absolute paths");
    struct spec_bind *b = &s->binds[s->n_binds];
    if (strcmp(f[2], "ro") == 0) b->readonly = 1;
    else if (strcmp(f[2], "rw") == 0) b->readonly = 0;
    else return bad(err, rec, k, "mode must be ro or rw");
    b->src = f[0];
    b->dst = f[1];
    s->n_binds++;
    return 0;
  }
  case K_DEVICE:
    if (split_tabs(v, f, 2) != 2) return bad(err, rec, k, "must be HOSTPATH<TAB>CONTAINERPATH");
    if (!absolute(f[0]) || !absolute(f[1])) return bad(err, rec, k, "paths must be absolute");
    s->devices[s->n_devices].host = f[0];
    s->devices[s->n_devices].path = f[1];
    s->n_devices++;
    return 0;
  }
  return bad(err, rec, k, "unhandled key");
}

static int spec_has_cgroup(const struct spec *s, const char *dir) {
  for (size_t i = 0; i < s->n_cgroups; i++)
    if (strcmp(s->cgroups[i], dir) == 0) return 1;
  return 0;
}

static int alloc_arrays(struct spec *s, size_t n, struct shim_err *err) {
  s->lower = calloc(n, sizeof *s->lower);
  s->args = calloc(n + 1, sizeof *s->args);
  s->env = calloc(n + 1, sizeof *s->env);
  s->cgroups = calloc(n, sizeof *s->cgroups);
  s->binds = calloc(n, sizeof *s->binds);
  s->devices = calloc(n, sizeof *s->devices);
  s->hooks = calloc(n, sizeof *s->hooks);
  s->devrules = calloc(n, sizeof *s->devrules);
  if (!s->lower || !s->args || !s->env || !s->cgroups || !s->binds || !s->devices || !s->hooks || !s->devrules)
    return shim_err_sys(err, ENOMEM, "calloc", "spec");
  return 0;
}

int spec_parse(struct spec *s, char *buf, size_t len, struct shim_err *err) {
  int seen[K_COUNT] = {0};
  size_t nrec = 0;

  memset(s, 0, sizeof *s);
  s->buf = buf;
  s->len = len;
  if (len == 0) return shim_err_new(err, EXIT_SHIM_FAILED, "spec: empty (the first record must be version=1)");
  if (buf[len - 1] != '\0') return shim_err_new(err, EXIT_SHIM_FAILED, "spec: the last record is not NUL-terminated");
  for (size_t i = 0; i < len; i++) nrec += buf[i] == '\0';
  if (alloc_arrays(s, nrec, err) < 0) return -1;

  size_t rec = 0;
  for (char *p = buf, *next; p < buf + len; p = next) {
    next = p + strlen(p) + 1; /* before set_value splits bind/device values in place */
    rec++;
    char *eq = strchr(p, '=');
    if (!eq) return shim_err_new(err, EXIT_SHIM_FAILED, "spec: record %zu: not key=value", rec);
    int id = find_key(p, (size_t)(eq - p));
    if (id < 0)
      return shim_err_new(err, EXIT_SHIM_FAILED, "spec: record %zu: unknown key \"%.*s\"", rec,
                          (int)(eq - p > 64 ? 64 : eq - p), p);
    if (rec == 1 && id != K_VERSION)
      return shim_err_new(err, EXIT_SHIM_FAILED, "spec: the first record must be version=1");
    if (seen[id] && !keys[id].repeat) return bad(err, rec, keys[id].name, "given twice");
    seen[id]++;
    if (set_value(s, id, eq + 1, rec, err) < 0) return -1;
  }
  for (int i = 0; i < K_COUNT; i++)
    if (keys[i].required && !seen[i])
      return shim_err_new(err, EXIT_SHIM_FAILED, "spec: missing required key \"%s\"", keys[i].name);
  if (s->idmap && !s->userns)
    return shim_err_new(err, EXIT_SHIM_FAILED, "spec: idmap=1 needs userns=HOSTUID:HOSTGID:SIZE");
  if (s->idmap && s->n_lower > CHAN_MAX_FDS)
    return shim_err_new(err, EXIT_SHIM_FAILED, "spec: idmap=1 takes at most %d lower layers", CHAN_MAX_FDS);
  if (s->tty && s->detach)
    return shim_err_new(err, EXIT_SHIM_FAILED, "spec: tty=1 and detach=1 cannot be combined");
  if (s->n_devrules > 0 && !s->devcgroup)
    return shim_err_new(err, EXIT_SHIM_FAILED, "spec: devrule needs devcgroup=DIR (where the device filter is attached)");
  if (s->devcgroup && !spec_has_cgroup(s, s->devcgroup))
    return shim_err_new(err, EXIT_SHIM_FAILED,
                        "spec: devcgroup %s must also be a cgroup= record (the filter applies to the tasks in it)", s->devcgroup);
  for (size_t i = 0; i < s->n_hooks; i++) {
    struct spec_hook *h = &s->hooks[i];
    if (h->n_args == 0 && push_str(&h->args, &h->n_args, (char *)h->path) < 0)
      return shim_err_sys(err, ENOMEM, "realloc", "spec hook");
    if (!h->env && !(h->env = calloc(1, sizeof *h->env))) return shim_err_sys(err, ENOMEM, "calloc", "spec hook");
  }
  return 0;
}

int spec_load(struct spec *s, const char *path, struct shim_err *err) {
  memset(s, 0, sizeof *s);
  cleanup_close int fd = RETRY(open(path, O_RDONLY | O_CLOEXEC));
  if (fd < 0) return shim_err_sys(err, errno, "open", "spec %s", path);
  struct stat st;
  if (fstat(fd, &st) < 0) return shim_err_sys(err, errno, "fstat", "spec %s", path);
  if (st.st_size > SPEC_MAX_BYTES) return shim_err_new(err, EXIT_SHIM_FAILED, "spec %s: larger than 4 MiB", path);
  size_t cap = (size_t)st.st_size + 1;
  char *buf = malloc(cap);
  if (!buf) return shim_err_sys(err, ENOMEM, "malloc", "spec %s", path);
  ssize_t n = read_all(fd, buf, cap);
  if (n < 0) {
    int e = errno;
    free(buf);
    return shim_err_sys(err, e, "read", "spec %s", path);
  }
  if ((size_t)n == cap) {
    free(buf);
    return shim_err_new(err, EXIT_SHIM_FAILED, "spec %s: changed while being read", path);
  }
  if (spec_parse(s, buf, (size_t)n, err) < 0) return shim_err_wrap(err, "%s", path);
  return 0;
}

void spec_free(struct spec *s) {
  for (size_t i = 0; s->hooks && i < s->n_hooks; i++) {
    free(s->hooks[i].args);
    free(s->hooks[i].env);
  }
  free(s->hooks);
  s->hooks = NULL;
  free(s->devrules);
  s->devrules = NULL;
  s->n_devrules = 0;
  s->n_hooks = 0;
  free(s->buf);
  free(s->lower);
  free(s->args);
  free(s->env);
  free(s->cgroups);
  free(s->binds);
  free(s->devices);
  s->buf = NULL;
  s->lower = NULL;
  s->args = s->env = NULL;
  s->cgroups = NULL;
  s->binds = NULL;
  s->devices = NULL;
}
