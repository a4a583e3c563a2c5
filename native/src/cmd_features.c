#include <stdio.h>
#include <string.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "commands.h"
#include "idmap.h"

#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif

static const char *cgroup_mode(void) {
  struct statfs fs;
  if (statfs("/sys/fs/cgroup", &fs) == 0 && fs.f_type == CGROUP2_SUPER_MAGIC) return "v2";
  if (statfs("/sys/fs/cgroup/unified", &fs) == 0 && fs.f_type == CGROUP2_SUPER_MAGIC) return "hybrid";
  return "v1";
}

/* Overlay may be mounted inside a user namespace from Linux 5.11 on. */
static int kernel_at_least(int major, int minor) {
  struct utsname u;
  int ma = 0, mi = 0;
  if (uname(&u) < 0 || sscanf(u.release, "%d.%d", &ma, &mi) != 2) return 0;
  return ma > major || (ma == major && mi >= minor);
}

int cmd_features(int argc, char **argv) {
  (void)argc;
  (void)argv;
  int userns = access("/proc/self/ns/user", F_OK) == 0;
  printf("{\"spec\":[1],\"version\":\"%s\",\"idmap\":%s,\"cgroupns\":%s,\"userns\":%s,"
         "\"overlayInUserns\":%s,\"cgroup\":\"%s\",\"tty\":true,\"init\":true}\n",
         SHIM_VERSION, idmap_supported() ? "true" : "false",
         access("/proc/self/ns/cgroup", F_OK) == 0 ? "true" : "false", userns ? "true" : "false",
         userns && kernel_at_least(5, 11) ? "true" : "false", cgroup_mode());
  return 0;
}
