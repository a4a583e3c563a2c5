/* feather-shim: see docs/shim-spec.md. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "error.h"
#include "proctitle.h"

static const struct command {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *usage;
} commands[] = {
    {"run", cmd_run, "run SPECFILE"},
    {"version", cmd_version, "version"},
    {"features", cmd_features, "features"},
};

/* With a closed 0, 1 or 2, the next open would take its number and be clobbered by a later dup2. */
static void ensure_stdio(void) {
  for (int fd = 0; fd < 3; fd++)
    if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) != fd) _exit(EXIT_SHIM_FAILED);
}

static int usage(void) {
  fprintf(stderr, "usage:\n");
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    fprintf(stderr, "  feather-shim %s\n", commands[i].usage);
  return EXIT_SHIM_FAILED;
}

int main(int argc, char **argv) {
  ensure_stdio();
  proctitle_init(argc, argv);
  if (argc < 2) return usage();
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
  fprintf(stderr, "feather-shim: unknown command \"%s\"\n", argv[1]);
  return usage();
}
