/* Spec format v1: well-formed specs and every kind of malformed one. */
#include <stdlib.h>
#include <string.h>

#include "devfilter.h"
#include "spec.h"
#include "tap.h"

/* Build a NUL-separated buffer from a NULL-terminated list of records. */
static char *records(size_t *len, const char *const *recs) {
  size_t n = 0;
  for (const char *const *r = recs; *r; r++) n += strlen(*r) + 1;
  char *buf = malloc(n + 1), *p = buf;
  for (const char *const *r = recs; *r; r++) {
    size_t l = strlen(*r) + 1;
    memcpy(p, *r, l);
    p += l;
  }
  *len = n;
  return buf;
}

#define BASE "version=1", "name=web-1", "rootfs=/c/rootfs", "lower=/l/top", "lower=/l/base", "upper=/c/u", "work=/c/w"

static int parse(struct spec *s, struct shim_err *err, const char *const *recs) {
  size_t len;
  char *buf = records(&len, recs);
  return spec_parse(s, buf, len, err);
}

static void expect_bad(const char *name, const char *want, const char *const *recs) {
  struct spec s;
  struct shim_err err = {0};
  int r = parse(&s, &err, recs);
  if (ok(r < 0, "refuses %s", name)) contains(err.msg, want, name);
  spec_free(&s);
}

static void well_formed(void) {
  struct spec s;
  struct shim_err err = {0};
  const char *const recs[] = {BASE, "arg=sh", "arg=-c", "arg=echo a b\nc", "env=PATH=/bin", "env=A=", "cwd=/app",
                              "network=host", "cgroup=/sys/fs/cgroup/memory/f/x", "cgroup=/sys/fs/cgroup/pids/f/x",
                              "userns=100000:100000:65536", "idmap=1", "tty=1", "init=1", "state=/c/state.json",
                              "log=/c/log", "log_max=1048576", "bind=/models/a\t/models\tro", "bind=/run/x.sock\t/run/s.sock\trw",
                              "device=/dev/fuse\t/dev/fuse", NULL};
  int r = parse(&s, &err, recs);
  if (!ok(r == 0, "parses a full spec")) printf("# %s\n", err.msg);
  is_str(s.name, "web-1", "name");
  ok(s.n_lower == 2 && strcmp(s.lower[0], "/l/top") == 0 && strcmp(s.lower[1], "/l/base") == 0, "lower keeps order");
  ok(s.n_args == 3 && s.args[3] == NULL, "args NULL-terminated");
  is_str(s.args[2], "echo a b\nc", "an arg keeps spaces and newlines");
  ok(s.n_env == 2 && s.env[2] == NULL, "env NULL-terminated");
  is_str(s.cwd, "/app", "cwd");
  ok(s.net_host && s.tty && s.init && !s.detach, "flags");
  ok(s.n_cgroups == 2, "two cgroups");
  ok(s.userns && s.host_uid == 100000 && s.host_gid == 100000 && s.userns_size == 65536, "userns");
  ok(s.idmap, "idmap");
  ok(s.log_max == 1048576, "log_max");
  ok(s.n_binds == 2 && s.binds[0].readonly && !s.binds[1].readonly, "bind modes");
  is_str(s.binds[0].src, "/models/a", "bind src");
  is_str(s.binds[0].dst, "/models", "bind dst");
  ok(s.n_devices == 1, "device");
  is_str(s.devices[0].path, "/dev/fuse", "device path");
  spec_free(&s);

  const char *const minimal[] = {BASE, "arg=/bin/true", NULL};
  r = parse(&s, &err, minimal);
  ok(r == 0 && !s.net_host && !s.userns && s.cwd == NULL && s.n_env == 0 && s.env[0] == NULL, "minimal spec defaults");
  spec_free(&s);
}

static void malformed(void) {
  struct spec s;
  struct shim_err err = {0};
  ok(spec_parse(&s, calloc(1, 1), 0, &err) < 0, "refuses an empty spec");
  spec_free(&s);
  char *unterminated = malloc(9);
  memcpy(unterminated, "version=1", 9);
  ok(spec_parse(&s, unterminated, 9, &err) < 0, "refuses an unterminated record");
  contains(err.msg, "NUL-terminated", "says the record is not terminated");
  spec_free(&s);

  expect_bad("version not first", "first record must be version=1",
             (const char *const[]){"name=x", "version=1", NULL});
  expect_bad("version 2", "unsupported spec version", (const char *const[]){"version=2", NULL});
  expect_bad("an unknown key", "unknown key \"color\"", (const char *const[]){BASE, "arg=x", "color=red", NULL});
  expect_bad("a record without =", "not key=value", (const char *const[]){BASE, "arg", NULL});
  expect_bad("a missing arg", "missing required key \"arg\"", (const char *const[]){BASE, NULL});
  expect_bad("a missing lower", "missing required key \"lower\"",
             (const char *const[]){"version=1", "name=a", "rootfs=/r", "upper=/u", "work=/w", "arg=x", NULL});
  expect_bad("a repeated name", "given twice", (const char *const[]){BASE, "name=b", "arg=x", NULL});
  expect_bad("an empty program", "empty", (const char *const[]){BASE, "arg=", NULL});
  expect_bad("a bad name", "name", (const char *const[]){"version=1", "name=../x", NULL});
  expect_bad("a relative rootfs", "absolute", (const char *const[]){"version=1", "name=a", "rootfs=r", NULL});
  expect_bad("a lower with a colon", "overlay paths", (const char *const[]){BASE, "lower=/a:b", "arg=x", NULL});
  expect_bad("network=bridge", "none or host", (const char *const[]){BASE, "arg=x", "network=bridge", NULL});
  expect_bad("tty=yes", "0 or 1", (const char *const[]){BASE, "arg=x", "tty=yes", NULL});
  expect_bad("userns without size", "HOSTUID:HOSTGID:SIZE", (const char *const[]){BASE, "arg=x", "userns=1:2", NULL});
  expect_bad("userns size 0", "HOSTUID:HOSTGID:SIZE", (const char *const[]){BASE, "arg=x", "userns=1:2:0", NULL});
  expect_bad("userns overflowing", "HOSTUID:HOSTGID:SIZE",
             (const char *const[]){BASE, "arg=x", "userns=4294967000:0:65536", NULL});
  expect_bad("log_max=0", "positive", (const char *const[]){BASE, "arg=x", "log_max=0", NULL});
  expect_bad("log_max=1k", "positive", (const char *const[]){BASE, "arg=x", "log_max=1k", NULL});
  expect_bad("a bind without mode", "SRC<TAB>DST", (const char *const[]){BASE, "arg=x", "bind=/a\t/b", NULL});
  expect_bad("a bind mode rx", "ro or rw", (const char *const[]){BASE, "arg=x", "bind=/a\t/b\trx", NULL});
  expect_bad("a relative bind", "absolute", (const char *const[]){BASE, "arg=x", "bind=a\t/b\tro", NULL});
  expect_bad("a device with 3 fields", "HOSTPATH", (const char *const[]){BASE, "arg=x", "device=/a\t/b\t/c", NULL});
  expect_bad("env without =", "KEY=VALUE", (const char *const[]){BASE, "arg=x", "env=PATH", NULL});
  expect_bad("idmap without userns", "needs userns", (const char *const[]){BASE, "arg=x", "idmap=1", NULL});
  expect_bad("tty with detach", "cannot be combined", (const char *const[]){BASE, "arg=x", "tty=1", "detach=1", NULL});
}

static void hooks(void) {
  struct spec s;
  struct shim_err err = {0};
  const char *const recs[] = {BASE, "arg=sh", "bundle=/c/oci", "hook=createRuntime\t5\t/usr/bin/rt",
                              "hook=createContainer\t30\t/usr/bin/ctk", "hook_arg=nvidia-ctk", "hook_arg=update ldcache",
                              "hook_env=A=1", "hook=startContainer\t1\t/bin/st", "hook_env=B=2", NULL};
  int r = parse(&s, &err, recs);
  if (!ok(r == 0, "parses hooks")) printf("# %s\n", err.msg);
  ok(s.n_hooks == 3 && strcmp(s.bundle, "/c/oci") == 0, "three hooks and the bundle");
  ok(s.hooks[0].kind == HOOK_CREATE_RUNTIME && s.hooks[0].timeout_s == 5 && s.hooks[0].n_args == 1 &&
         strcmp(s.hooks[0].args[0], "/usr/bin/rt") == 0 && s.hooks[0].args[1] == NULL && s.hooks[0].env[0] == NULL,
     "a hook without args gets argv { path } and an empty env");
  ok(s.hooks[1].kind == HOOK_CREATE_CONTAINER && s.hooks[1].n_args == 2 &&
         strcmp(s.hooks[1].args[1], "update ldcache") == 0 && s.hooks[1].args[2] == NULL && s.hooks[1].n_env == 1 &&
         strcmp(s.hooks[1].env[0], "A=1") == 0 && s.hooks[1].env[1] == NULL,
     "hook_arg and hook_env belong to the hook before them");
  ok(s.hooks[2].kind == HOOK_START_CONTAINER && s.hooks[2].n_env == 1 && strcmp(s.hooks[2].env[0], "B=2") == 0,
     "startContainer");
  ok(spec_hook_count(&s, HOOK_CREATE_CONTAINER) == 1 && spec_hook_count(&s, HOOK_START_CONTAINER) == 1, "counts");
  ok(strcmp(spec_hook_kind_name(HOOK_START_CONTAINER), "startContainer") == 0, "kind names");
  spec_free(&s);

  expect_bad("a hook_arg before any hook", "must follow a hook", (const char *const[]){BASE, "arg=x", "hook_arg=a", NULL});
  expect_bad("a poststart hook", "KIND must be", (const char *const[]){BASE, "arg=x", "hook=poststart\t5\t/h", NULL});
  expect_bad("a hook timeout of 0", "TIMEOUT_S", (const char *const[]){BASE, "arg=x", "hook=createRuntime\t0\t/h", NULL});
  expect_bad("a relative hook path", "absolute", (const char *const[]){BASE, "arg=x", "hook=createRuntime\t5\th", NULL});
  expect_bad("a hook missing its path", "KIND<TAB>", (const char *const[]){BASE, "arg=x", "hook=createRuntime\t5", NULL});
  expect_bad("a hook_env without =", "KEY=VALUE",
             (const char *const[]){BASE, "arg=x", "hook=createRuntime\t5\t/h", "hook_env=A", NULL});
  expect_bad("a relative bundle", "absolute", (const char *const[]){BASE, "arg=x", "bundle=oci", NULL});
}

static void device_filter(void) {
  struct spec s;
  struct shim_err err = {0};
  const char *const recs[] = {BASE, "arg=sh", "cgroup=/sys/fs/cgroup/feather/web-1", "devcgroup=/sys/fs/cgroup/feather/web-1",
                              "devrule=c * * m", "devrule=c 1 3 rwm", "devrule=c 136 * rw", NULL};
  int r = parse(&s, &err, recs);
  if (!ok(r == 0, "parses devcgroup and devrules")) printf("# %s\n", err.msg);
  is_str(s.devcgroup, "/sys/fs/cgroup/feather/web-1", "devcgroup");
  ok(s.n_devrules == 3 && s.devrules[0].type == 'c' && s.devrules[0].major == DEVRULE_ANY &&
         s.devrules[0].access == DEVRULE_MKNOD,
     "devrule c * * m");
  ok(s.devrules[1].major == 1 && s.devrules[1].minor == 3 && s.devrules[1].access == DEVRULE_RWM, "devrule c 1 3 rwm");
  ok(s.devrules[2].minor == DEVRULE_ANY && s.devrules[2].access == (DEVRULE_READ | DEVRULE_WRITE), "rules keep order");
  spec_free(&s);

  const char *const deny_all[] = {BASE, "arg=sh", "cgroup=/cg/x", "devcgroup=/cg/x", NULL};
  r = parse(&s, &err, deny_all);
  ok(r == 0 && s.devcgroup && s.n_devrules == 0, "devcgroup without rules: every device denied");
  spec_free(&s);
  r = parse(&s, &err, (const char *const[]){BASE, "arg=sh", NULL});
  ok(r == 0 && s.devcgroup == NULL && s.n_devrules == 0, "no devcgroup: no filter");
  spec_free(&s);

  expect_bad("a devrule without devcgroup", "devrule needs devcgroup",
             (const char *const[]){BASE, "arg=x", "devrule=c 1 3 rwm", NULL});
  expect_bad("a devcgroup that is no cgroup record", "must also be a cgroup= record",
             (const char *const[]){BASE, "arg=x", "cgroup=/cg/a", "devcgroup=/cg/b", NULL});
  expect_bad("a relative devcgroup", "absolute", (const char *const[]){BASE, "arg=x", "devcgroup=cg", NULL});
  expect_bad("two devcgroups", "given twice",
             (const char *const[]){BASE, "arg=x", "cgroup=/cg", "devcgroup=/cg", "devcgroup=/cg", NULL});
  expect_bad("a devrule with v1 syntax", "record 11 (devrule): must be TYPE MAJOR MINOR ACCESS",
             (const char *const[]){BASE, "arg=x", "cgroup=/cg", "devcgroup=/cg", "devrule=c 1:3 rwm", NULL});
  expect_bad("a devrule access x", "(devrule): access must be some of r, w, m",
             (const char *const[]){BASE, "arg=x", "cgroup=/cg", "devcgroup=/cg", "devrule=c 1 3 rwx", NULL});
}

int main(void) {
  well_formed();
  hooks();
  device_filter();
  malformed();
  return tap_done();
}
