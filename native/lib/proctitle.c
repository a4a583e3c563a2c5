#include "proctitle.h"

#include <string.h>
#include <sys/prctl.h>

static char *area;
static size_t area_len;

void proctitle_init(int argc, char **argv) {
  if (argc < 1 || !argv[0]) return;
  area = argv[0];
  char *end = argv[argc - 1] + strlen(argv[argc - 1]);
  area_len = (size_t)(end - area) + 1;
}

void proctitle_set(const char *title) {
  prctl(PR_SET_NAME, title, 0, 0, 0);
  if (!area) return;
  memset(area, 0, area_len);
  size_t n = strlen(title);
  memcpy(area, title, n < area_len ? n : area_len - 1);
}
