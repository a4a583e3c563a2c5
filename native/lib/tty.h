/* tty=1: a pseudo-terminal made in the container's own devpts; the shim relays it. */
#ifndef FEATHER_TTY_H
#define FEATHER_TTY_H

#include <termios.h>

#include "error.h"

/* Child, after pivot_root: open /dev/ptmx, hand the master to the shim over chan; returns the slave fd. */
int tty_create(int chan, struct shim_err *err);

/* Child, right before exec: new session, slave as controlling terminal and as fds 0, 1, 2. */
int tty_attach(int slave, struct shim_err *err);

struct tty_saved {
  int active;
  struct termios tio;
};

/* Shim: put fd in raw mode when it is a terminal (remembering how it was). */
int tty_raw(int fd, struct tty_saved *saved, struct shim_err *err);
void tty_restore(int fd, struct tty_saved *saved);

/* Copy the window size of from (a terminal) to to; 24x80 when from is not a terminal. */
void tty_copy_winsize(int from, int to);

#endif
