#include "init.h"

#include <errno.h>
#include <sys/wait.h>

int wait_status_code(int status) {
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return WEXITSTATUS(status);
}

int init_supervise(pid_t workload, const sigset_t *waitset) {
  for (;;) {
    siginfo_t si;
    int sig = sigwaitinfo(waitset, &si);
    if (sig < 0) continue; /* EINTR */
    if (sig != SIGCHLD) {
      kill(workload, sig);
      continue;
    }
    int status;
    pid_t p;
    while ((p = waitpid(-1, &status, WNOHANG)) > 0)
      if (p == workload) return wait_status_code(status);
    if (p < 0 && errno == ECHILD) return 125;
  }
}
