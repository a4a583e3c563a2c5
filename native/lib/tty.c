#include "tty.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "chan.h"
#include "util.h"

int tty_create(int chan, struct shim_err *err) {
  char name[64];
  cleanup_close int master = RETRY(open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (master < 0) return shim_err_sys(err, errno, "open", "/dev/ptmx");
  if (unlockpt(master) < 0) return shim_err_sys(err, errno, "unlockpt", "/dev/ptmx");
  int r = ptsname_r(master, name, sizeof name);
  if (r != 0) return shim_err_sys(err, r, "ptsname_r", "/dev/ptmx");
  int slave = RETRY(open(name, O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (slave < 0) return shim_err_sys(err, errno, "open", "%s", name);
  if (chan_send_fd(chan, master, err) < 0) {
    close(slave);
    return -1;
  }
  return slave;
}

int tty_attach(int slave, struct shim_err *err) {
  if (setsid() < 0) return shim_err_sys(err, errno, "setsid", "terminal session");
  if (ioctl(slave, TIOCSCTTY, 0) < 0) return shim_err_sys(err, errno, "ioctl(TIOCSCTTY)", "controlling terminal");
  for (int fd = 0; fd < 3; fd++)
    if (dup2(slave, fd) < 0) return shim_err_sys(err, errno, "dup2", "terminal to fd %d", fd);
  if (slave > 2) close(slave);
  return 0;
}

int tty_raw(int fd, struct tty_saved *saved, struct shim_err *err) {
  saved->active = 0;
  if (!isatty(fd)) return 0;
  if (tcgetattr(fd, &saved->tio) < 0) return shim_err_sys(err, errno, "tcgetattr", "terminal");
  struct termios raw = saved->tio;
  cfmakeraw(&raw);
  if (tcsetattr(fd, TCSANOW, &raw) < 0) return shim_err_sys(err, errno, "tcsetattr", "raw mode");
  saved->active = 1;
  return 0;
}

void tty_restore(int fd, struct tty_saved *saved) {
  if (saved->active) (void)tcsetattr(fd, TCSANOW, &saved->tio);
  saved->active = 0;
}

void tty_copy_winsize(int from, int to) {
  struct winsize ws = {.ws_row = 24, .ws_col = 80};
  if (ioctl(from, TIOCGWINSZ, &ws) < 0 || ws.ws_row == 0) ws = (struct winsize){.ws_row = 24, .ws_col = 80};
  (void)ioctl(to, TIOCSWINSZ, &ws);
}
