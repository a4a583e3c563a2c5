/* After pivot_root: hide what Docker hides by default (its masked and read-only paths). */
#include <errno.h>
#include <sys/mount.h>

#include "mounts.h"
#include "util.h"

static const char *const masked_files[] = {
    "/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/proc/latency_stats",
};
static const char *const masked_dirs[] = {
    "/sys/firmware", "/proc/acpi", "/proc/scsi", "/sys/devices/virtual/powercap",
};
static const char *const readonly[] = {
    "/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus",
};

#define PROC_FLAGS (MS_NOSUID | MS_NODEV | MS_NOEXEC)

int mounts_mask(struct shim_err *err) {
  for (size_t i = 0; i < ARRAY_LEN(masked_files); i++)
    if (mount("/dev/null", masked_files[i], NULL, MS_BIND, NULL) < 0 && errno != ENOENT)
      return shim_err_sys(err, errno, "mount", "mask %s", masked_files[i]);
  for (size_t i = 0; i < ARRAY_LEN(masked_dirs); i++)
    if (mount("tmpfs", masked_dirs[i], "tmpfs", MS_RDONLY | PROC_FLAGS, "mode=555,size=4k") < 0 && errno != ENOENT)
      return shim_err_sys(err, errno, "mount", "mask %s", masked_dirs[i]);
  for (size_t i = 0; i < ARRAY_LEN(readonly); i++) {
    if (mount(readonly[i], readonly[i], NULL, MS_BIND | MS_REC, NULL) < 0) {
      if (errno == ENOENT) continue;
      return shim_err_sys(err, errno, "mount", "bind %s", readonly[i]);
    }
    if (mount(NULL, readonly[i], NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | PROC_FLAGS, NULL) < 0)
      return shim_err_sys(err, errno, "mount", "remount %s read-only", readonly[i]);
  }
  return 0;
}
