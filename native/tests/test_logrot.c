/* The detached log: append, cap at log_max, rotate to log.1 replacing the older one. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "logrot.h"
#include "tap.h"

static char *slurp(const char *path) {
  static char buf[4096];
  FILE *f = fopen(path, "r");
  if (!f) return NULL;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = '\0';
  fclose(f);
  return buf;
}

int main(void) {
  struct shim_err err = {0};
  struct logrot l;
  char dir[] = "/tmp/feather-log-XXXXXX", path[256], path1[300];
  if (!mkdtemp(dir)) return ok(0, "mkdtemp"), tap_done();
  snprintf(path, sizeof path, "%s/log", dir);
  snprintf(path1, sizeof path1, "%s/log.1", dir);

  ok(logrot_open(&l, path, 10, &err) == 0, "opens");
  ok(logrot_write(&l, "hello\n", 6, &err) == 0, "writes");
  is_str(slurp(path), "hello\n", "appended");
  ok(access(path1, F_OK) < 0, "no rotation under the cap");
  ok(logrot_write(&l, "world\n", 6, &err) == 0, "writes past the cap");
  is_str(slurp(path1), "hello\nworl", "log.1 holds exactly the cap");
  is_str(slurp(path), "d\n", "log has the rest");
  ok(logrot_write(&l, "0123456789abcdefghij", 20, &err) == 0, "a write twice the cap");
  is_str(slurp(path1), "89abcdefgh", "log.1 replaced by the newest full file");
  is_str(slurp(path), "ij", "log holds the tail");
  logrot_close(&l);

  ok(logrot_open(&l, path, 10, &err) == 0, "reopens");
  ok(l.size == 2, "size from the existing file");
  ok(logrot_write(&l, "abc", 3, &err) == 0 && strcmp(slurp(path), "ijabc") == 0, "appends to an existing log");
  logrot_close(&l);
  ok(logrot_open(&l, path, 0, &err) == 0, "opens uncapped");
  for (int i = 0; i < 100; i++) logrot_write(&l, "0123456789", 10, &err);
  struct stat st;
  ok(stat(path, &st) == 0 && st.st_size == 1005, "uncapped never rotates");
  logrot_close(&l);

  ok(logrot_open(&l, "/nonexistent-dir/log", 10, &err) < 0, "a missing directory fails");
  contains(err.msg, "log /nonexistent-dir/log: open:", "names the file and syscall");
  logrot_close(&l);
  unlink(path);
  unlink(path1);
  rmdir(dir);
  return tap_done();
}
