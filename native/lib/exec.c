#include "exec.h"

#include <limits.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

const char *exec_search_path(char *const envp[]) {
  for (char *const *e = envp; *e; e++)
    if (strncmp(*e, "PATH=", 5) == 0) return *e + 5;
  return DEFAULT_PATH;
}

static int exec_failed(struct shim_err *err, int errnum, const char *prog) {
  shim_err_sys(err, errnum, "execve", "exec %s", prog);
  err->code = errnum == ENOENT || errnum == ENOTDIR ? EXIT_NOT_FOUND : EXIT_CANNOT_EXEC;
  return -1;
}

int exec_workload(char *const argv[], char *const envp[], struct shim_err *err) {
  const char *prog = argv[0];
  if (strchr(prog, '/')) {
    execve(prog, argv, envp);
    return exec_failed(err, errno, prog);
  }
  char path[PATH_MAX];
  int denied = 0;
  size_t plen = strlen(prog);
  for (const char *p = exec_search_path(envp);; p += strcspn(p, ":") + 1) {
    size_t dlen = strcspn(p, ":");
    const char *dir = dlen ? p : "."; /* an empty entry is the working directory */
    size_t use = dlen ? dlen : 1;
    if (use + 1 + plen < sizeof path) {
      memcpy(path, dir, use);
      path[use] = '/';
      memcpy(path + use + 1, prog, plen + 1);
      execve(path, argv, envp);
      switch (errno) {
      case ENOENT: case ENOTDIR: case ELOOP: case ENAMETOOLONG: case ESTALE: case ENODEV: case ETIMEDOUT:
        break;
      case EACCES:
        denied = 1;
        break;
      default:
        return exec_failed(err, errno, path);
      }
    }
    if (p[dlen] == '\0') break;
  }
  return exec_failed(err, denied ? EACCES : ENOENT, prog);
}
