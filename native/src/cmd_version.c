#include <stdio.h>

#include "commands.h"

int cmd_version(int argc, char **argv) {
  (void)argc;
  (void)argv;
  printf("feather-shim %s spec 1\n", SHIM_VERSION);
  return 0;
}
