/* Error messages: "feather-shim: <context>: <syscall>: <strerror> (errno N)". */
#include <errno.h>
#include <string.h>

#include "error.h"
#include "tap.h"

int main(void) {
  struct shim_err err = {0};
  char line[SHIM_ERR_MAX + 32];

  ok(shim_err_sys(&err, ENOENT, "mount", "overlay at %s", "/c/rootfs") < 0, "returns < 0");
  is_str(err.msg, "overlay at /c/rootfs: mount: No such file or directory (errno 2)", "names context, syscall, errno");
  ok(err.code == EXIT_SHIM_FAILED && err.errnum == ENOENT, "code 125 and errno kept");
  shim_err_format(&err, line, sizeof line);
  is_str(line, "feather-shim: overlay at /c/rootfs: mount: No such file or directory (errno 2)\n", "printed form");

  shim_err_wrap(&err, "container %s", "web");
  is_str(err.msg, "container web: overlay at /c/rootfs: mount: No such file or directory (errno 2)", "wrap prefixes");

  shim_err_new(&err, EXIT_NOT_FOUND, "exec %s: not found", "foo");
  ok(err.code == 127 && err.errnum == 0, "plain errors carry their exit code");

  char big[3000];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  shim_err_sys(&err, EPERM, "open", "%s", big);
  ok(strlen(err.msg) < SHIM_ERR_MAX, "a long context is truncated");
  shim_err_wrap(&err, "%s", big);
  ok(strlen(err.msg) == SHIM_ERR_MAX - 1, "a long wrap is truncated");
  size_t n = shim_err_format(&err, line, 64);
  ok(n == 63 && line[62] == '\n', "format truncates and keeps the newline");
  return tap_done();
}
