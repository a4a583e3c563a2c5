#include "chan.h"

#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "util.h"

int chan_pair(int sv[2], struct shim_err *err) {
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
    return shim_err_sys(err, errno, "socketpair", "container channel");
  return 0;
}

union fd_ctl {
  char buf[CMSG_SPACE(sizeof(int) * CHAN_MAX_FDS)];
  struct cmsghdr align;
};

static int send_msg(int fd, const struct chan_msg *m, size_t len, const int *fds, size_t nfds) {
  struct iovec iov = {.iov_base = (void *)m, .iov_len = len};
  union fd_ctl ctl;
  struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
  if (nfds > CHAN_MAX_FDS) {
    errno = E2BIG;
    return -1;
  }
  if (nfds > 0) {
    memset(&ctl, 0, sizeof ctl);
    mh.msg_control = ctl.buf;
    mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
  }
  return RETRY(sendmsg(fd, &mh, MSG_NOSIGNAL)) < 0 ? -1 : 0;
}

/* One message and the fds that came with it (at most max; extra ones are closed). */
static ssize_t recv_msg(int fd, struct chan_msg *m, int *fds, size_t max, size_t *nfds) {
  union fd_ctl ctl;
  struct iovec iov = {.iov_base = m, .iov_len = sizeof *m};
  struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
  memset(m, 0, sizeof *m);
  *nfds = 0;
  ssize_t n = RETRY(recvmsg(fd, &mh, MSG_CMSG_CLOEXEC));
  if (n <= 0) return n;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; i++) {
      int got;
      memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      if (*nfds < max) fds[(*nfds)++] = got;
      else close(got);
    }
  }
  return n;
}

int chan_send_go(int fd, int value, const int *fds, size_t n, struct shim_err *err) {
  struct chan_msg m = {.type = CHAN_GO, .code = value};
  if (send_msg(fd, &m, offsetof(struct chan_msg, msg), fds, n) < 0)
    return shim_err_sys(err, errno, "sendmsg", "signal the container to start");
  return 0;
}

int chan_wait_go(int fd, int *value, int *fds, size_t *n, struct shim_err *err) {
  struct chan_msg m;
  ssize_t got = recv_msg(fd, &m, fds, CHAN_MAX_FDS, n);
  if (got < 0) return shim_err_sys(err, errno, "recvmsg", "wait for the shim");
  if (got == 0) return 0;
  if (m.type != CHAN_GO) return shim_err_new(err, EXIT_SHIM_FAILED, "wait for the shim: unexpected message");
  if (value) *value = m.code;
  return 1;
}

int chan_send_hooks(int fd, struct shim_err *err) {
  struct chan_msg m = {.type = CHAN_HOOKS};
  if (send_msg(fd, &m, offsetof(struct chan_msg, msg), NULL, 0) < 0)
    return shim_err_sys(err, errno, "sendmsg", "ask the shim to run the createRuntime hooks");
  return 0;
}

void chan_send_err(int fd, const struct shim_err *e) {
  struct chan_msg m = {.type = CHAN_ERR, .code = e->code, .errnum = e->errnum};
  size_t n = strnlen(e->msg, sizeof m.msg - 1);
  memcpy(m.msg, e->msg, n);
  m.msg[n] = '\0';
  (void)send_msg(fd, &m, offsetof(struct chan_msg, msg) + n + 1, NULL, 0);
}

int chan_send_fd(int fd, int passfd, struct shim_err *err) {
  struct chan_msg m = {.type = CHAN_PTY};
  if (send_msg(fd, &m, offsetof(struct chan_msg, msg), &passfd, 1) < 0)
    return shim_err_sys(err, errno, "sendmsg", "hand the terminal to the shim");
  return 0;
}

int chan_recv(int fd, struct chan_msg *m, int *passfd, struct shim_err *err) {
  size_t nfds;
  ssize_t n = recv_msg(fd, m, passfd, 1, &nfds);
  if (n < 0) return shim_err_sys(err, errno, "recvmsg", "container channel");
  if (n == 0) return 0;
  if ((size_t)n < offsetof(struct chan_msg, msg))
    return shim_err_new(err, EXIT_SHIM_FAILED, "container channel: short message");
  m->msg[sizeof m->msg - 1] = '\0';
  return 1;
}
