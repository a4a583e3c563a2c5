#include "devfilter.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util.h"

/* ---- rules ---- */

static int parse_num(const char *s, size_t len, long *out) {
  if (len == 1 && s[0] == '*') {
    *out = DEVRULE_ANY;
    return 0;
  }
  if (len == 0 || len > 10) return -1;
  long n = 0;
  for (size_t i = 0; i < len; i++) {
    if (s[i] < '0' || s[i] > '9') return -1;
    n = n * 10 + (s[i] - '0');
  }
  if (n > INT32_MAX) return -1; /* the program compares against a signed 32-bit immediate */
  *out = n;
  return 0;
}

int devrule_parse(const char *text, struct devrule *out, struct shim_err *err) {
  const char *f[4];
  size_t l[4], n = 0;
  const char *p = text;
  for (;;) {
    const char *sp = strchr(p, ' ');
    if (n == 4) {
      n++;
      break;
    }
    f[n] = p;
    l[n++] = sp ? (size_t)(sp - p) : strlen(p);
    if (!sp) break;
    p = sp + 1;
  }
  if (n != 4) return shim_err_new(err, EXIT_SHIM_FAILED, "must be TYPE MAJOR MINOR ACCESS, e.g. \"c 1 3 rwm\"");
  if (l[0] != 1 || !strchr("abc", f[0][0]))
    return shim_err_new(err, EXIT_SHIM_FAILED, "type must be a, b or c");
  if (parse_num(f[1], l[1], &out->major) < 0 || parse_num(f[2], l[2], &out->minor) < 0)
    return shim_err_new(err, EXIT_SHIM_FAILED, "major and minor must be a number (0 to 2147483647) or *");
  out->type = f[0][0];
  if (out->type == 'a' && (out->major != DEVRULE_ANY || out->minor != DEVRULE_ANY))
    return shim_err_new(err, EXIT_SHIM_FAILED, "type a (every device) takes * for major and minor");
  out->access = 0;
  for (size_t i = 0; i < l[3]; i++) {
    unsigned bit = f[3][i] == 'r' ? DEVRULE_READ : f[3][i] == 'w' ? DEVRULE_WRITE : f[3][i] == 'm' ? DEVRULE_MKNOD : 0;
    if (bit == 0 || (out->access & bit))
      return shim_err_new(err, EXIT_SHIM_FAILED, "access must be some of r, w, m, each at most once");
    out->access |= bit;
  }
  if (out->access == 0) return shim_err_new(err, EXIT_SHIM_FAILED, "access must be some of r, w, m, each at most once");
  return 0;
}

void devrule_format(const struct devrule *r, char *buf, size_t len) {
  char maj[16] = "*", min[16] = "*";
  if (r->major != DEVRULE_ANY) snprintf(maj, sizeof maj, "%ld", r->major);
  if (r->minor != DEVRULE_ANY) snprintf(min, sizeof min, "%ld", r->minor);
  snprintf(buf, len, "%c %s %s %s%s%s", r->type, maj, min, (r->access & DEVRULE_READ) ? "r" : "",
           (r->access & DEVRULE_WRITE) ? "w" : "", (r->access & DEVRULE_MKNOD) ? "m" : "");
}

/* ---- the program ----
 * Registers once the prologue ran: r2 = device type (BPF_DEVCG_DEV_*), r3 = requested access
 * (BPF_DEVCG_ACC_*, several bits for an O_RDWR open), r4 = major, r5 = minor. Each rule is a run of
 * checks that jump to the next rule on a mismatch, then "return 1". The end is "return 0": default
 * deny. The 32-bit loads zero-extend, so 64-bit compares against the rule's numbers are exact. */

static struct bpf_insn insn(uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm) {
  return (struct bpf_insn){.code = code, .dst_reg = dst, .src_reg = src, .off = off, .imm = imm};
}

static struct bpf_insn load_ctx_u32(uint8_t dst, int16_t off) {
  return insn(BPF_LDX | BPF_W | BPF_MEM, dst, BPF_REG_1, off, 0);
}

static struct bpf_insn ret_insn(void) { return insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0); }
static struct bpf_insn set_r0(int32_t v) { return insn(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, v); }

int devfilter_build(const struct devrule *rules, size_t n, struct bpf_insn *insns, size_t cap, size_t *count,
                    struct shim_err *err) {
  if (n > DEVFILTER_MAX_RULES)
    return shim_err_new(err, EXIT_SHIM_FAILED, "device filter: %zu rules (at most %d)", n, DEVFILTER_MAX_RULES);
  if (cap < DEVFILTER_MAX_INSNS(n))
    return shim_err_new(err, EXIT_SHIM_FAILED, "device filter: room for %zu instructions, %zu needed", cap,
                        DEVFILTER_MAX_INSNS(n));
  size_t k = 0;
  insns[k++] = load_ctx_u32(BPF_REG_2, offsetof(struct bpf_cgroup_dev_ctx, access_type));
  insns[k++] = insn(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_3, BPF_REG_2, 0, 0);
  insns[k++] = insn(BPF_ALU | BPF_RSH | BPF_K, BPF_REG_3, 0, 0, 16);
  insns[k++] = insn(BPF_ALU | BPF_AND | BPF_K, BPF_REG_2, 0, 0, 0xffff);
  insns[k++] = load_ctx_u32(BPF_REG_4, offsetof(struct bpf_cgroup_dev_ctx, major));
  insns[k++] = load_ctx_u32(BPF_REG_5, offsetof(struct bpf_cgroup_dev_ctx, minor));
  for (size_t i = 0; i < n; i++) {
    const struct devrule *r = &rules[i];
    struct bpf_insn checks[4];
    int nc = 0;
    if (r->type != 'a')
      checks[nc++] = insn(BPF_JMP | BPF_JNE | BPF_K, BPF_REG_2, 0, 0, r->type == 'b' ? BPF_DEVCG_DEV_BLOCK : BPF_DEVCG_DEV_CHAR);
    /* A request with any access bit the rule lacks does not match (an O_RDWR open needs r and w). */
    if ((r->access & DEVRULE_RWM) != DEVRULE_RWM)
      checks[nc++] = insn(BPF_JMP | BPF_JSET | BPF_K, BPF_REG_3, 0, 0, (int32_t)(~r->access & DEVRULE_RWM));
    if (r->major != DEVRULE_ANY) checks[nc++] = insn(BPF_JMP | BPF_JNE | BPF_K, BPF_REG_4, 0, 0, (int32_t)r->major);
    if (r->minor != DEVRULE_ANY) checks[nc++] = insn(BPF_JMP | BPF_JNE | BPF_K, BPF_REG_5, 0, 0, (int32_t)r->minor);
    /* A mismatch skips the remaining checks and this rule's "return 1" (2 instructions). */
    for (int c = 0; c < nc; c++) {
      checks[c].off = (int16_t)(nc - 1 - c + 2);
      insns[k++] = checks[c];
    }
    insns[k++] = set_r0(1);
    insns[k++] = ret_insn();
    /* A rule that matches everything ends the program: the verifier refuses unreachable code. */
    if (nc == 0) {
      *count = k;
      return 0;
    }
  }
  insns[k++] = set_r0(0);
  insns[k++] = ret_insn();
  *count = k;
  return 0;
}

/* ---- the kernel ---- */

static int sys_bpf(int cmd, union bpf_attr *attr) {
  return (int)syscall(SYS_bpf, cmd, attr, sizeof *attr);
}

static uint64_t ptr(const void *p) { return (uint64_t)(uintptr_t)p; }

/* The verifier's log in one line: its end, where it says what it refused. */
static void log_tail(const char *log, char *out, size_t len) {
  size_t n = strnlen(log, 1 << 16);
  while (n > 0 && (log[n - 1] == '\n' || log[n - 1] == ' ')) n--;
  size_t start = n > len - 1 ? n - (len - 1) : 0;
  size_t o = 0;
  for (size_t i = start; i < n && o < len - 1; i++) out[o++] = log[i] == '\n' ? '|' : log[i];
  out[o] = '\0';
}

/* The license only decides whether a program may call GPL-only helpers; this one calls no helper at
 * all, so any string loads (a NULL pointer fails with EFAULT). We name the project's own license. */
static const char devfilter_license[] = "Apache-2.0";

int devfilter_load(const struct bpf_insn *insns, size_t count, int *prog_fd, struct shim_err *err) {
  union bpf_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
  attr.insns = ptr(insns);
  attr.insn_cnt = (uint32_t)count;
  attr.license = ptr(devfilter_license);
  memcpy(attr.prog_name, DEVFILTER_PROG_NAME, sizeof DEVFILTER_PROG_NAME);
  int fd = sys_bpf(BPF_PROG_LOAD, &attr);
  if (fd < 0 && errno == EPERM) {
    /* Before Linux 5.11 programs were charged to RLIMIT_MEMLOCK. The workload was cloned already, so
     * raising the shim's limit here changes nothing for it; it is put back after the load anyway. */
    struct rlimit old, inf = {RLIM_INFINITY, RLIM_INFINITY};
    if (getrlimit(RLIMIT_MEMLOCK, &old) == 0 && setrlimit(RLIMIT_MEMLOCK, &inf) == 0) {
      fd = sys_bpf(BPF_PROG_LOAD, &attr);
      int e = errno;
      setrlimit(RLIMIT_MEMLOCK, &old);
      errno = e;
    } else {
      errno = EPERM;
    }
  }
  if (fd < 0) {
    int e = errno;
    if (e != EINVAL && e != EACCES)
      return shim_err_sys(err, e, "bpf(BPF_PROG_LOAD)", "load the device filter (%zu instructions)", count);
    /* The verifier refused it: load again with its log, to say why. */
    size_t log_len = 1 << 16;
    cleanup_free char *log = calloc(1, log_len);
    if (!log) return shim_err_sys(err, e, "bpf(BPF_PROG_LOAD)", "load the device filter (%zu instructions)", count);
    attr.log_level = 1;
    attr.log_buf = ptr(log);
    attr.log_size = (uint32_t)log_len;
    fd = sys_bpf(BPF_PROG_LOAD, &attr);
    if (fd < 0) {
      e = errno;
      char tail[320];
      log_tail(log, tail, sizeof tail);
      return shim_err_sys(err, e, "bpf(BPF_PROG_LOAD)", "load the device filter (%zu instructions; verifier: %s)",
                          count, tail[0] ? tail : "no log");
    }
  }
  /* bpf(2) fds are close-on-exec from the start. */
  *prog_fd = fd;
  return 0;
}

/* The ids of the programs attached directly to dirfd (not inherited ones); *ids is malloc'd. */
static int query(int dirfd, const char *dir, uint32_t **ids, size_t *n, struct shim_err *err) {
  uint32_t cap = 64;
  for (int tries = 0;; tries++) {
    uint32_t *buf = calloc(cap, sizeof *buf);
    if (!buf) return shim_err_sys(err, ENOMEM, "calloc", "device filter of %s", dir);
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.query.target_fd = (uint32_t)dirfd;
    attr.query.attach_type = BPF_CGROUP_DEVICE;
    attr.query.prog_ids = ptr(buf);
    attr.query.prog_cnt = cap;
    if (sys_bpf(BPF_PROG_QUERY, &attr) == 0) {
      *ids = buf;
      *n = attr.query.prog_cnt;
      return 0;
    }
    int e = errno;
    free(buf);
    /* ENOSPC: more than cap are attached, and prog_cnt says how many. */
    if (e != ENOSPC || tries == 3 || attr.query.prog_cnt <= cap)
      return shim_err_sys(err, e, "bpf(BPF_PROG_QUERY)", "device filters attached to %s%s", dir,
                          e == EBADF ? " (not a cgroup2 directory)" : "");
    cap = attr.query.prog_cnt;
  }
}

/* An fd for program id when it is one of ours, else -1 (gone meanwhile, or someone else's). */
static int ours(uint32_t id, struct shim_err *err, const char *dir) {
  union bpf_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.prog_id = id;
  cleanup_close int fd = sys_bpf(BPF_PROG_GET_FD_BY_ID, &attr);
  if (fd < 0) {
    if (errno == ENOENT) return -1;
    shim_err_sys(err, errno, "bpf(BPF_PROG_GET_FD_BY_ID)", "device filter %u attached to %s", id, dir);
    return -2;
  }
  struct bpf_prog_info info;
  memset(&info, 0, sizeof info);
  memset(&attr, 0, sizeof attr);
  attr.info.bpf_fd = (uint32_t)fd;
  attr.info.info_len = sizeof info;
  attr.info.info = ptr(&info);
  if (sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &attr) < 0) {
    shim_err_sys(err, errno, "bpf(BPF_OBJ_GET_INFO_BY_FD)", "device filter %u attached to %s", id, dir);
    return -2;
  }
  if (strncmp(info.name, DEVFILTER_PROG_NAME, sizeof info.name) != 0) return -1;
  return take_fd(&fd);
}

static int open_dir(const char *dir, struct shim_err *err) {
  int fd = RETRY(open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd < 0) shim_err_sys(err, errno, "open", "device filter: cgroup %s", dir);
  return fd;
}

/* Why BPF_F_ALLOW_MULTI: the kernel runs every program attached with it on this directory and on
 * each ancestor, and a device access passes only when all of them allow it. So our filter adds to
 * whatever the host put above us (systemd attaches its DevicePolicy programs with ALLOW_MULTI)
 * instead of overriding it, and a program someone attaches below us can only narrow ours. Without
 * the flag the directory holds one program and an ALLOW_OVERRIDE one below it would replace ours.
 * With it, attaching again adds a program rather than replacing one: a container restarted in the
 * same directory would stack filters. So after the new filter is on, the old feather ones (found by
 * their name) are detached; in between both apply, which is stricter, never looser. */
int devfilter_attach(int prog_fd, const char *dir, struct shim_err *err) {
  cleanup_close int dirfd = open_dir(dir, err);
  if (dirfd < 0) return -1;
  cleanup_free uint32_t *ids = NULL;
  size_t n = 0;
  if (query(dirfd, dir, &ids, &n, err) < 0) return -1;

  union bpf_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.target_fd = (uint32_t)dirfd;
  attr.attach_bpf_fd = (uint32_t)prog_fd;
  attr.attach_type = BPF_CGROUP_DEVICE;
  attr.attach_flags = BPF_F_ALLOW_MULTI;
  if (sys_bpf(BPF_PROG_ATTACH, &attr) < 0) {
    int e = errno;
    return shim_err_sys(err, e, "bpf(BPF_PROG_ATTACH)", "attach the device filter to %s%s", dir,
                        e == EPERM && n > 0 ? " (a program attached there without BPF_F_ALLOW_MULTI excludes ours)" : "");
  }
  for (size_t i = 0; i < n; i++) {
    cleanup_close int old = ours(ids[i], err, dir);
    if (old == -2) return -1;
    if (old < 0) continue;
    memset(&attr, 0, sizeof attr);
    attr.target_fd = (uint32_t)dirfd;
    attr.attach_bpf_fd = (uint32_t)old;
    attr.attach_type = BPF_CGROUP_DEVICE;
    if (sys_bpf(BPF_PROG_DETACH, &attr) < 0 && errno != ENOENT)
      return shim_err_sys(err, errno, "bpf(BPF_PROG_DETACH)", "detach the old device filter %u from %s", ids[i], dir);
  }
  return 0;
}

int devfilter_apply(const char *dir, const struct devrule *rules, size_t n, struct shim_err *err) {
  size_t cap = DEVFILTER_MAX_INSNS(n), count = 0;
  if (n > DEVFILTER_MAX_RULES)
    return shim_err_new(err, EXIT_SHIM_FAILED, "device filter: %zu rules (at most %d)", n, DEVFILTER_MAX_RULES);
  cleanup_free struct bpf_insn *insns = calloc(cap, sizeof *insns);
  if (!insns) return shim_err_sys(err, ENOMEM, "calloc", "device filter");
  if (devfilter_build(rules, n, insns, cap, &count, err) < 0) return -1;
  cleanup_close int fd = -1;
  if (devfilter_load(insns, count, &fd, err) < 0) return -1;
  /* Once attached, the cgroup holds the program; our fd can go. */
  return devfilter_attach(fd, dir, err);
}

int devfilter_count(const char *dir, size_t *total, size_t *feather, struct shim_err *err) {
  cleanup_close int dirfd = open_dir(dir, err);
  if (dirfd < 0) return -1;
  cleanup_free uint32_t *ids = NULL;
  if (query(dirfd, dir, &ids, total, err) < 0) return -1;
  *feather = 0;
  for (size_t i = 0; i < *total; i++) {
    cleanup_close int fd = ours(ids[i], err, dir);
    if (fd == -2) return -1;
    if (fd >= 0) (*feather)++;
  }
  return 0;
}
