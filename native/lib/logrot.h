/* The detached workload's log: appended, capped at max bytes, rotated to <log>.1. */
#ifndef FEATHER_LOGROT_H
#define FEATHER_LOGROT_H

#include <stddef.h>

#include "error.h"

struct logrot {
  int fd;
  const char *path;
  char *path1; /* path + ".1" */
  long long size;
  long long max; /* 0: never rotate */
};

int logrot_open(struct logrot *l, const char *path, long long max, struct shim_err *err);

/* Append n bytes; a file never grows past max: the rest starts a new file after rotation. */
int logrot_write(struct logrot *l, const char *buf, size_t n, struct shim_err *err);

/* Rename path to path.1 (replacing it) and start an empty path. */
int logrot_rotate(struct logrot *l, struct shim_err *err);

void logrot_close(struct logrot *l);

#endif
