#ifndef FEATHER_EXEC_H
#define FEATHER_EXEC_H

#include "error.h"

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* The PATH of envp, or DEFAULT_PATH. */
const char *exec_search_path(char *const envp[]);

/* execve argv with exactly envp; a program without '/' is looked up in envp's PATH.
 * Returns only on failure: err->code is 127 (not found) or 126 (cannot be executed). */
int exec_workload(char *const argv[], char *const envp[], struct shim_err *err);

#endif
