#include <linux/close_range.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "commands.h"
#include "error.h"
#include "run.h"
#include "spec.h"
#include "util.h"

int cmd_run(int argc, char **argv) {
  struct shim_err err = {0};
  struct spec s;
  if (argc != 2) {
    fprintf(stderr, "usage: feather-shim run SPECFILE\n");
    return EXIT_SHIM_FAILED;
  }
  /* Whatever the caller leaked to us must not reach the container. */
  syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);
  if (spec_load(&s, argv[1], &err) < 0) {
    shim_err_print(&err);
    spec_free(&s);
    return EXIT_SHIM_FAILED;
  }
  int code;
  if (s.detach) {
    code = run_detached(&s);
  } else {
    int no_report = -1;
    code = run_container(&s, &no_report, &err);
    if (code < 0) {
      shim_err_print(&err);
      code = err.code ? err.code : EXIT_SHIM_FAILED;
    }
  }
  spec_free(&s);
  return code;
}
