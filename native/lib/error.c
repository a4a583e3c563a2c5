#include "error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

/* Append src at *off in dst (size SHIM_ERR_MAX), truncating, always NUL-terminated. */
static void append(char *dst, size_t *off, const char *src) {
  size_t n = strlen(src);
  if (*off + n > SHIM_ERR_MAX - 1) n = SHIM_ERR_MAX - 1 - *off;
  memcpy(dst + *off, src, n);
  *off += n;
  dst[*off] = '\0';
}

int shim_err_sys(struct shim_err *err, int errnum, const char *syscall, const char *fmt, ...) {
  char ctx[SHIM_ERR_MAX / 2];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(ctx, sizeof ctx, fmt, ap);
  va_end(ap);
  err->code = EXIT_SHIM_FAILED;
  err->errnum = errnum;
  char num[32];
  size_t off = 0;
  snprintf(num, sizeof num, " (errno %d)", errnum);
  append(err->msg, &off, ctx);
  append(err->msg, &off, ": ");
  append(err->msg, &off, syscall);
  append(err->msg, &off, ": ");
  append(err->msg, &off, strerror(errnum));
  append(err->msg, &off, num);
  return -1;
}

int shim_err_new(struct shim_err *err, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err->msg, sizeof err->msg, fmt, ap);
  va_end(ap);
  err->code = code;
  err->errnum = 0;
  return -1;
}

int shim_err_wrap(struct shim_err *err, const char *fmt, ...) {
  char ctx[SHIM_ERR_MAX / 2];
  char old[SHIM_ERR_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(ctx, sizeof ctx, fmt, ap);
  va_end(ap);
  size_t off = 0;
  memcpy(old, err->msg, sizeof old);
  old[sizeof old - 1] = '\0';
  append(err->msg, &off, ctx);
  append(err->msg, &off, ": ");
  append(err->msg, &off, old);
  return -1;
}

size_t shim_err_format(const struct shim_err *err, char *buf, size_t len) {
  int n = snprintf(buf, len, "feather-shim: %s\n", err->msg);
  if (n < 0) return 0;
  if ((size_t)n >= len) {
    if (len >= 2) buf[len - 2] = '\n';
    return len - 1;
  }
  return (size_t)n;
}

void shim_err_print(const struct shim_err *err) {
  char buf[SHIM_ERR_MAX + 32];
  size_t n = shim_err_format(err, buf, sizeof buf);
  (void)write_all(STDERR_FILENO, buf, n);
}
