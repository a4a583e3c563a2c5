/* One container's whole life in this process: start, state, supervise, clean up. */
#ifndef FEATHER_RUN_H
#define FEATHER_RUN_H

#include "error.h"
#include "spec.h"

/* The detached starter waits on this; the supervisor writes it once. */
struct start_report {
  int ok;
  int code;
  int pid;
  int shim_pid;
  char msg[SHIM_ERR_MAX];
};

/* Returns the container's exit code (>= 0), or -1 with err (err->code: 125/126/127) when it
 * could not start. *report_fd (when >= 0) gets a successful start_report and is closed. */
int run_container(const struct spec *s, int *report_fd, struct shim_err *err);

/* detach=1: fork the supervisor, wait for its report, print {"pid":P,"shimPid":S}. Returns the exit code. */
int run_detached(const struct spec *s);

#endif
