#include "net.h"

#include <net/if.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "util.h"

int net_loopback_up(struct shim_err *err) {
  struct ifreq ifr;
  cleanup_close int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return shim_err_sys(err, errno, "socket", "bring lo up");
  memset(&ifr, 0, sizeof ifr);
  strcpy(ifr.ifr_name, "lo");
  if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0) return shim_err_sys(err, errno, "ioctl(SIOCGIFFLAGS)", "bring lo up");
  ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
  if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0) return shim_err_sys(err, errno, "ioctl(SIOCSIFFLAGS)", "bring lo up");
  return 0;
}
