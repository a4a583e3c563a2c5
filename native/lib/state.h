/* state.json of docs/shim-spec.md, written atomically (temp file + rename). */
#ifndef FEATHER_STATE_H
#define FEATHER_STATE_H

#include <stddef.h>
#include <sys/types.h>

#include "error.h"

struct shim_state {
  int exited; /* 0: "running", 1: "exited" */
  pid_t pid;
  pid_t shim_pid;
  long long started_at;
  long long finished_at;
  int exit_code;
  int signal; /* 0 when it exited by itself */
  long long oom_kills;
};

/* One JSON line (with '\n') into buf; returns its length or -1. */
int state_format(const struct shim_state *st, char *buf, size_t len, struct shim_err *err);

/* Write path.tmp then rename it over path. */
int state_write(const char *path, const struct shim_state *st, struct shim_err *err);

#endif
