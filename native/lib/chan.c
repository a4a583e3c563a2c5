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

static int send_msg(int fd, const struct chan_msg *m, size_t len, int passfd) {
  struct iovec iov = {.iov_base = (void *)m, .iov_len = len};
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } ctl;
  struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
  if (passfd >= 0) {
    memset(&ctl, 0, sizeof ctl);
    mh.msg_control = ctl.buf;
    mh.msg_controllen = sizeof ctl.buf;
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &passfd, sizeof(int));
  }
  return RETRY(sendmsg(fd, &mh, MSG_NOSIGNAL)) < 0 ? -1 : 0;
}

int chan_send_go(int fd, struct shim_err *err) {
  struct chan_msg m = {.type = CHAN_GO};
  if (send_msg(fd, &m, offsetof(struct chan_msg, msg), -1) < 0)
    return shim_err_sys(err, errno, "sendmsg", "signal the container to start");
  return 0;
}

int chan_wait_go(int fd, struct shim_err *err) {
  struct chan_msg m;
  ssize_t n = RETRY(recv(fd, &m, sizeof m, 0));
  if (n < 0) return shim_err_sys(err, errno, "recv", "wait for the shim");
  if (n == 0) return 0;
  if (m.type != CHAN_GO) return shim_err_new(err, EXIT_SHIM_FAILED, "wait for the shim: unexpected message");
  return 1;
}

void chan_send_err(int fd, const struct shim_err *e) {
  struct chan_msg m = {.type = CHAN_ERR, .code = e->code, .errnum = e->errnum};
  size_t n = strnlen(e->msg, sizeof m.msg - 1);
  memcpy(m.msg, e->msg, n);
  m.msg[n] = '\0';
  (void)send_msg(fd, &m, offsetof(struct chan_msg, msg) + n + 1, -1);
}

int chan_send_fd(int fd, int passfd, struct shim_err *err) {
  struct chan_msg m = {.type = CHAN_PTY};
  if (send_msg(fd, &m, offsetof(struct chan_msg, msg), passfd) < 0)
    return shim_err_sys(err, errno, "sendmsg", "hand the terminal to the shim");
  return 0;
}

int chan_recv(int fd, struct chan_msg *m, int *passfd, struct shim_err *err) {
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } ctl;
  struct iovec iov = {.iov_base = m, .iov_len = sizeof *m};
  struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
  memset(m, 0, sizeof *m);
  ssize_t n = RETRY(recvmsg(fd, &mh, MSG_CMSG_CLOEXEC));
  if (n < 0) return shim_err_sys(err, errno, "recvmsg", "container channel");
  if (n == 0) return 0;
  if ((size_t)n < offsetof(struct chan_msg, msg))
    return shim_err_new(err, EXIT_SHIM_FAILED, "container channel: short message");
  m->msg[sizeof m->msg - 1] = '\0';
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && passfd)
      memcpy(passfd, CMSG_DATA(c), sizeof(int));
  return 1;
}
