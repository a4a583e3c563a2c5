#ifndef FEATHER_NET_H
#define FEATHER_NET_H

#include "error.h"

/* Bring the loopback interface of the current network namespace up. */
int net_loopback_up(struct shim_err *err);

#endif
