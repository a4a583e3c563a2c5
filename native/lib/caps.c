#include "caps.h"

#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util.h"

uint64_t caps_docker_default(void) {
  static const int caps[] = {
      CAP_CHOWN,   CAP_DAC_OVERRIDE, CAP_FOWNER,     CAP_FSETID,     CAP_KILL,  CAP_SETGID,      CAP_SETUID,
      CAP_SETPCAP, CAP_NET_BIND_SERVICE, CAP_NET_RAW, CAP_SYS_CHROOT, CAP_MKNOD, CAP_AUDIT_WRITE, CAP_SETFCAP,
  };
  uint64_t m = 0;
  for (size_t i = 0; i < ARRAY_LEN(caps); i++) m |= 1ULL << caps[i];
  return m;
}

int caps_drop(uint64_t mask, struct shim_err *err) {
  /* The bounding set: every capability this kernel knows (PR_CAPBSET_READ fails past the last). */
  for (int cap = 0; cap < 64; cap++) {
    int r = prctl(PR_CAPBSET_READ, cap, 0, 0, 0);
    if (r < 0) break;
    if (r == 1 && !(mask & (1ULL << cap)) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
      return shim_err_sys(err, errno, "prctl", "drop capability %d from the bounding set", cap);
  }
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
    return shim_err_sys(err, errno, "prctl", "clear ambient capabilities");
  struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
  struct __user_cap_data_struct data[2] = {{0}};
  data[0].effective = data[0].permitted = (uint32_t)mask;
  data[1].effective = data[1].permitted = (uint32_t)(mask >> 32);
  if (syscall(SYS_capset, &hdr, data) < 0) return shim_err_sys(err, errno, "capset", "set capabilities");
  return 0;
}

int caps_no_new_privs(struct shim_err *err) {
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) return shim_err_sys(err, errno, "prctl", "set no_new_privs");
  return 0;
}
