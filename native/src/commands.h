/* The verbs of feather-shim: one file each, listed in main.c's table. */
#ifndef FEATHER_COMMANDS_H
#define FEATHER_COMMANDS_H

#define SHIM_VERSION "0.1.0"

int cmd_run(int argc, char **argv);
int cmd_version(int argc, char **argv);
int cmd_features(int argc, char **argv);

#endif
