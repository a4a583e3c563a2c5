/* Errors: every library function returns int (< 0 on failure) and fills a struct shim_err.
 * The message reads "<context>: <syscall>: <strerror> (errno N)"; printing prefixes "feather-shim: ". */
#ifndef FEATHER_ERROR_H
#define FEATHER_ERROR_H

#include <stddef.h>

#define SHIM_ERR_MAX 1024

/* Exit codes of docs/shim-spec.md. */
enum { EXIT_SHIM_FAILED = 125, EXIT_CANNOT_EXEC = 126, EXIT_NOT_FOUND = 127 };

struct shim_err {
  int code;   /* exit code this failure maps to (125, 126, 127) */
  int errnum; /* errno of the failing system call, 0 when none */
  char msg[SHIM_ERR_MAX];
};

/* A failing system call: context (printf format), then the syscall name and errno. Returns -1. */
int shim_err_sys(struct shim_err *err, int errnum, const char *syscall, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* A failure that is not a system call (bad spec, protocol). Returns -1. */
int shim_err_new(struct shim_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefix more context: "<context>: <previous message>". Returns -1. */
int shim_err_wrap(struct shim_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* "feather-shim: <msg>\n" into buf; returns its length (truncated to len - 1). */
size_t shim_err_format(const struct shim_err *err, char *buf, size_t len);

/* Write the formatted error to stderr. */
void shim_err_print(const struct shim_err *err);

#endif
