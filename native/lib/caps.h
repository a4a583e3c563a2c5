/* Capabilities and no_new_privs. */
#ifndef FEATHER_CAPS_H
#define FEATHER_CAPS_H

#include <stdint.h>

#include "error.h"

/* Docker's default set: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP
 * NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP = 0xa80425fb. */
uint64_t caps_docker_default(void);

/* Bounding set cut to mask, ambient cleared, effective = permitted = mask, inheritable empty. */
int caps_drop(uint64_t mask, struct shim_err *err);

int caps_no_new_privs(struct shim_err *err);

#endif
