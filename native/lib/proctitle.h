/* Rename this process as seen in ps / /proc/PID/cmdline (the init must not show the host's spec path). */
#ifndef FEATHER_PROCTITLE_H
#define FEATHER_PROCTITLE_H

/* Remember where argv's strings live; call once from main. */
void proctitle_init(int argc, char **argv);

/* Overwrite argv's strings (and comm) with title; truncated to fit. */
void proctitle_set(const char *title);

#endif
