/* Device access control on cgroup v2: a BPF_PROG_TYPE_CGROUP_DEVICE program built from an
 * allow-list of rules (everything else is denied), loaded and attached to a cgroup2 directory.
 * cgroup v2 has no devices.allow/devices.deny; the kernel asks the programs attached to a task's
 * cgroup (and its ancestors) on every mknod and open of a device node. */
#ifndef FEATHER_DEVFILTER_H
#define FEATHER_DEVFILTER_H

#include <linux/bpf.h>
#include <stddef.h>

#include "error.h"

/* Access bits: the kernel's BPF_DEVCG_ACC_* values. */
enum { DEVRULE_MKNOD = 1, DEVRULE_READ = 2, DEVRULE_WRITE = 4, DEVRULE_RWM = 7 };

/* Any major or minor ('*'). */
#define DEVRULE_ANY (-1L)

/* The spec takes at most this many rules: 6 instructions each stays far below the kernel's 4096. */
#define DEVFILTER_MAX_RULES 512
/* Instructions a program of n rules can need. */
#define DEVFILTER_MAX_INSNS(n) (6 + 6 * (size_t)(n) + 2)

/* The name every feather program carries (bpf_prog_info.name), so a re-attach finds its stale ones. */
#define DEVFILTER_PROG_NAME "feather_devices"

/* One allow rule: "c 1 3 rwm", "c 136 * rwm", "b * * m", "a * * rwm". */
struct devrule {
  char type;     /* 'a' (block and char), 'b' or 'c' */
  long major;    /* DEVRULE_ANY or 0..INT32_MAX */
  long minor;    /* DEVRULE_ANY or 0..INT32_MAX */
  unsigned access; /* DEVRULE_* bits, at least one */
};

/* Parse "TYPE MAJOR MINOR ACCESS" (single spaces; '*' for any number; type a takes only '*').
 * Errors say what is wrong with the text (no system call). */
int devrule_parse(const char *text, struct devrule *out, struct shim_err *err);

/* The rule as devrule_parse reads it; the text is truncated to len. */
void devrule_format(const struct devrule *r, char *buf, size_t len);

/* Build the program into insns (room for cap instructions, DEVFILTER_MAX_INSNS(n) is enough);
 * *count is set to its length. A request is allowed when a rule matches its type, its numbers and
 * all of its access bits; otherwise denied. */
int devfilter_build(const struct devrule *rules, size_t n, struct bpf_insn *insns, size_t cap, size_t *count,
                    struct shim_err *err);

/* BPF_PROG_LOAD: *prog_fd is a new close-on-exec fd. On failure the message holds the tail of the
 * verifier's log. */
int devfilter_load(const struct bpf_insn *insns, size_t count, int *prog_fd, struct shim_err *err);

/* Attach prog_fd to the cgroup2 directory dir (BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI), then detach
 * the feather programs that were attached there before (a restarted container), leaving other
 * programs alone. */
int devfilter_attach(int prog_fd, const char *dir, struct shim_err *err);

/* Build, load and attach: from now on tasks in dir reach only the devices the rules allow. */
int devfilter_apply(const char *dir, const struct devrule *rules, size_t n, struct shim_err *err);

/* How many programs (any, *feather: ours) are attached directly to dir for BPF_CGROUP_DEVICE. */
int devfilter_count(const char *dir, size_t *total, size_t *feather, struct shim_err *err);

#endif
