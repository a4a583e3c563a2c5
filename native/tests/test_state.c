/* state.json: exact JSON, atomic replacement, no temp file left behind. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "state.h"
#include "tap.h"

static char *slurp(const char *path) {
  static char buf[1024];
  FILE *f = fopen(path, "r");
  if (!f) return NULL;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = '\0';
  fclose(f);
  return buf;
}

int main(void) {
  struct shim_err err = {0};
  char buf[512], dir[] = "/tmp/feather-state-XXXXXX", path[256], tmp[300];
  struct shim_state run = {.pid = 1234, .shim_pid = 1233, .started_at = 1764859200123LL};
  struct shim_state done = {.exited = 1, .pid = 1234, .shim_pid = 1233, .started_at = 1764859200123LL,
                            .finished_at = 1764859201000LL, .exit_code = 137, .signal = 9, .oom_kills = 1};

  state_format(&run, buf, sizeof buf, &err);
  is_str(buf, "{\"version\":1,\"status\":\"running\",\"pid\":1234,\"shimPid\":1233,\"startedAt\":1764859200123}\n",
         "running state");
  state_format(&done, buf, sizeof buf, &err);
  is_str(buf,
         "{\"version\":1,\"status\":\"exited\",\"pid\":1234,\"shimPid\":1233,\"startedAt\":1764859200123,"
         "\"finishedAt\":1764859201000,\"exitCode\":137,\"signal\":9,\"oomKills\":1}\n",
         "exited state");
  ok(state_format(&done, buf, 20, &err) < 0, "a small buffer is an error");

  if (!mkdtemp(dir)) return ok(0, "mkdtemp"), tap_done();
  snprintf(path, sizeof path, "%s/state.json", dir);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  ok(state_write(path, &run, &err) == 0, "writes running");
  contains(slurp(path), "\"running\"", "file says running");
  ok(state_write(path, &done, &err) == 0, "replaces with exited");
  contains(slurp(path), "\"exitCode\":137", "file says exited");
  ok(access(tmp, F_OK) < 0, "no temp file left");
  ok(state_write("/nonexistent-dir/state.json", &run, &err) < 0, "a missing directory fails");
  contains(err.msg, "open: No such file or directory (errno 2)", "names the syscall");
  unlink(path);
  rmdir(dir);
  return tap_done();
}
