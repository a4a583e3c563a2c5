/* Small helpers shared by every file: scope-bound cleanup, EINTR retry, I/O loops. */
#ifndef FEATHER_UTIL_H
#define FEATHER_UTIL_H

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Retry a system call while it fails with EINTR; evaluates to its result. */
#define RETRY(expr)                                                  \
  (__extension__({                                                   \
    __typeof__(expr) _r;                                             \
    do {                                                             \
      _r = (expr);                                                   \
    } while (_r == -1 && errno == EINTR);                            \
    _r;                                                              \
  }))

static inline void cleanup_closep(int *fd) {
  if (*fd >= 0) {
    int saved = errno;
    close(*fd);
    errno = saved;
  }
}
static inline void cleanup_freep(void *p) { free(*(void **)p); }

#define cleanup_close __attribute__((cleanup(cleanup_closep)))
#define cleanup_free __attribute__((cleanup(cleanup_freep)))

/* Hand an fd out of a cleanup_close scope. */
static inline int take_fd(int *fd) {
  int r = *fd;
  *fd = -1;
  return r;
}

/* Close and mark closed; keeps errno. */
static inline void close_fd(int *fd) { cleanup_closep(fd); *fd = -1; }

/* Leaf I/O loops: return 0 (or bytes read) or -1 with errno set; callers name the syscall. */
int write_all(int fd, const void *buf, size_t len);
ssize_t read_all(int fd, void *buf, size_t len);

/* Unix time in milliseconds. */
long long now_ms(void);

#endif
