/* init=1: the container's PID 1 forks the workload, forwards signals to it, reaps every
 * zombie, and exits with the workload's exit code (128+N when a signal N killed it). */
#ifndef FEATHER_INIT_H
#define FEATHER_INIT_H

#include <signal.h>
#include <sys/types.h>

/* waitset: the signals init has blocked (SIGCHLD and the forwarded ones). Returns the exit code. */
int init_supervise(pid_t workload, const sigset_t *waitset);

/* 128+N for a signal, the exit code otherwise. */
int wait_status_code(int status);

#endif
