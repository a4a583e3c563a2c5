/* The hook runner with real processes: state on stdin, argv/env as given, failures and timeouts. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hooks.h"
#include "tap.h"

static char dir[] = "/tmp/feather-hooks-XXXXXX";

static struct spec one_hook(enum hook_kind kind, unsigned timeout_s, char **args, char **env) {
  static struct spec_hook h;
  struct spec s = {0};
  h = (struct spec_hook){.kind = kind, .timeout_s = timeout_s, .path = args[0], .args = args, .env = env};
  for (h.n_args = 0; args[h.n_args]; h.n_args++) {
  }
  s.name = "hooked";
  s.bundle = "/b/with \"quote\"";
  s.hooks = &h;
  s.n_hooks = 1;
  return s;
}

static char *slurp(const char *path) {
  static char buf[4096];
  FILE *f = fopen(path, "r");
  if (!f) return NULL;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  return buf;
}

int main(void) {
  struct shim_err err = {0};
  if (!mkdtemp(dir)) return 1;
  char script[1200], out[128];
  snprintf(out, sizeof out, "%s/seen", dir);

  /* The state JSON on stdin, argv and env exactly as given, cwd as asked. */
  snprintf(script, sizeof script, "cat > %s; echo \" $0 $1 $HOOKVAR $(pwd)\" >> %s", out, out);
  char *args[] = {"/bin/sh", "-c", script, "zero", "one", NULL};
  char *env[] = {"HOOKVAR=v1", NULL};
  struct spec s = one_hook(HOOK_CREATE_RUNTIME, 5, args, env);
  int r = hooks_run(&s, HOOK_CREATE_RUNTIME, 4242, "creating", dir, &err);
  if (!ok(r == 0, "a succeeding hook")) printf("# %s\n", err.msg);
  char want[1024];
  snprintf(want, sizeof want,
           "{\"ociVersion\":\"1.0.2\",\"id\":\"hooked\",\"status\":\"creating\",\"pid\":4242,\"bundle\":\"/b/with "
           "\\\"quote\\\"\",\"annotations\":{}} zero one v1 %s\n", dir);
  const char *seen = slurp(out);
  if (!ok(seen && strcmp(seen, want) == 0, "state on stdin (bundle escaped), argv, env and cwd")) printf("# got %s", seen);

  /* Other kinds are not run. */
  unlink(out);
  ok(hooks_run(&s, HOOK_START_CONTAINER, 1, "created", NULL, &err) == 0 && access(out, F_OK) != 0,
     "only hooks of the asked kind run");

  /* A failing hook: its status and the end of its output in the error. */
  char *fail_args[] = {"/bin/sh", "-c", "echo ldconfig: cannot open /etc/ld.so.cache >&2; exit 3", NULL};
  char *no_env[] = {NULL};
  s = one_hook(HOOK_CREATE_CONTAINER, 5, fail_args, no_env);
  r = hooks_run(&s, HOOK_CREATE_CONTAINER, 1, "creating", NULL, &err);
  if (ok(r < 0, "a failing hook fails the run"))
    contains(err.msg, "createContainer hook /bin/sh: exited with status 3: ldconfig: cannot open /etc/ld.so.cache",
             "names the hook, its status and its output");

  /* A hook that is not there. */
  char *missing[] = {"/nonexistent/hook", NULL};
  s = one_hook(HOOK_START_CONTAINER, 5, missing, no_env);
  r = hooks_run(&s, HOOK_START_CONTAINER, 1, "created", NULL, &err);
  if (ok(r < 0, "a missing hook fails")) contains(err.msg, "exited with status 127: execve: No such file", "says why");

  /* A hook past its timeout is killed, even while a child of it holds the output pipe open. */
  char *slow[] = {"/bin/sh", "-c", "sleep 30 & sleep 30", NULL};
  s = one_hook(HOOK_CREATE_RUNTIME, 1, slow, no_env);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  r = hooks_run(&s, HOOK_CREATE_RUNTIME, 1, "creating", NULL, &err);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double took = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  if (ok(r < 0, "a hook past its timeout fails")) contains(err.msg, "killed after its timeout of 1s", "says so");
  ok(took < 5, "and the runner returns instead of waiting for the hook's children (%.1f s)", took);

  /* A hook that exits while its background child keeps the output open does not hang the runner. */
  char *bg[] = {"/bin/sh", "-c", "sleep 3 & exit 0", NULL};
  s = one_hook(HOOK_CREATE_RUNTIME, 10, bg, no_env);
  clock_gettime(CLOCK_MONOTONIC, &t0);
  r = hooks_run(&s, HOOK_CREATE_RUNTIME, 1, "creating", NULL, &err);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  took = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  ok(r == 0 && took < 2.5, "a hook's exit ends the wait although its child holds the output (%.1f s)", took);

  unlink(out);
  rmdir(dir);
  return tap_done();
}
