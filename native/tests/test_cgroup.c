/* OOM counts (v1 memory.oom_control, v2 memory.events), cgroup removal, PATH lookup, caps mask. */
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "caps.h"
#include "cgroup.h"
#include "exec.h"
#include "tap.h"

static void put(const char *dir, const char *file, const char *text) {
  char path[256];
  snprintf(path, sizeof path, "%s/%s", dir, file);
  FILE *f = fopen(path, "w");
  fputs(text, f);
  fclose(f);
}

int main(void) {
  struct shim_err err = {0};
  long long n = -1;
  ok(cgroup_parse_oom("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n", &n) == 0 && n == 3, "v1 oom_control");
  ok(cgroup_parse_oom("low 0\nhigh 0\nmax 5\noom 2\noom_kill 2\noom_group_kill 0\n", &n) == 0 && n == 2,
     "v2 memory.events");
  ok(cgroup_parse_oom("oom 1\noom_group_kill 4\n", &n) < 0, "no oom_kill line");
  ok(cgroup_parse_oom("", &n) < 0, "empty");

  char dir[] = "/tmp/feather-cg-XXXXXX";
  if (!mkdtemp(dir)) return ok(0, "mkdtemp"), tap_done();
  ok(cgroup_oom_kills(dir, &n, &err) == 0 && n == 0, "no memory files: 0");
  put(dir, "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 7\n");
  ok(cgroup_oom_kills(dir, &n, &err) == 0 && n == 7, "reads memory.oom_control");
  put(dir, "memory.events", "oom 1\noom_kill 1\n");
  ok(cgroup_oom_kills(dir, &n, &err) == 0 && n == 1, "memory.events first");
  char f[300];
  snprintf(f, sizeof f, "%s/memory.events", dir);
  unlink(f);
  snprintf(f, sizeof f, "%s/memory.oom_control", dir);
  unlink(f);
  ok(cgroup_join(dir, 1, &err) < 0, "join needs cgroup.procs");
  contains(err.msg, "cgroup.procs: open: No such file or directory (errno 2)", "join names the file and syscall");
  ok(cgroup_remove(dir, &err) == 0 && access(dir, F_OK) < 0, "removes an empty dir");
  ok(cgroup_remove(dir, &err) == 0, "a missing dir is fine");

  char *env1[] = {"A=1", "PATH=/opt/bin:/bin", NULL};
  char *env2[] = {"A=1", NULL};
  is_str(exec_search_path(env1), "/opt/bin:/bin", "PATH from the workload env");
  is_str(exec_search_path(env2), DEFAULT_PATH, "default PATH");
  ok(caps_docker_default() == 0xa80425fbULL, "Docker's default capability mask");
  return tap_done();
}
