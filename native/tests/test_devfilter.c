/* The cgroup v2 device filter: rule parsing, the program's logic (run by a small interpreter of the
 * instructions it uses), and, as root with a cgroup2 mount, the real kernel: a child in a cgroup
 * whose filter allows only /dev/null opens it and gets EPERM for /dev/zero. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "devfilter.h"
#include "tap.h"

/* ---- rules ---- */

static void parses(const char *text) {
  struct devrule r;
  struct shim_err err = {0};
  char back[64] = "";
  if (devrule_parse(text, &r, &err) == 0) devrule_format(&r, back, sizeof back);
  is_str(back, text, text);
}

static void refuses(const char *text, const char *want) {
  struct devrule r;
  struct shim_err err = {0};
  if (ok(devrule_parse(text, &r, &err) < 0, "refuses \"%s\"", text)) contains(err.msg, want, want);
}

static void rules(void) {
  parses("c 1 3 rwm");
  parses("c 136 * rwm");
  parses("b * * m");
  parses("a * * rwm");
  parses("c 4095 1048575 rw");
  parses("c 0 0 w");
  struct devrule r;
  struct shim_err err = {0};
  ok(devrule_parse("c 1 3 mwr", &r, &err) == 0 && r.access == DEVRULE_RWM && r.major == 1 && r.minor == 3,
     "access in any order");
  refuses("c 1 3", "TYPE MAJOR MINOR ACCESS");
  refuses("c 1 3 rwm x", "TYPE MAJOR MINOR ACCESS");
  refuses("c  1 3 rwm", "TYPE MAJOR MINOR ACCESS");
  refuses("c * 3", "TYPE MAJOR MINOR ACCESS");
  refuses("c x 3 rwm", "major and minor");
  refuses("x 1 3 rwm", "type must be a, b or c");
  refuses(" 1 3 rwm", "type must be a, b or c");
  refuses("c -1 3 rwm", "major and minor");
  refuses("c 1 2147483648 rwm", "major and minor");
  refuses("c 1 3 rwx", "some of r, w, m");
  refuses("c 1 3 rr", "some of r, w, m");
  refuses("c 1 3 ", "some of r, w, m");
  refuses("a 1 * rwm", "type a (every device) takes *");
}

/* ---- the program's logic ---- */

/* Runs the instructions devfilter_build emits on one request; -1 on an instruction it does not know. */
static int run(const struct bpf_insn *p, size_t n, unsigned type, unsigned access, unsigned major, unsigned minor) {
  uint64_t r[11] = {0};
  struct bpf_cgroup_dev_ctx ctx = {.access_type = (access << 16) | type, .major = major, .minor = minor};
  for (size_t pc = 0; pc < n; pc++) {
    const struct bpf_insn *i = &p[pc];
    uint64_t imm = (uint64_t)(int64_t)i->imm;
    switch (i->code) {
    case BPF_LDX | BPF_W | BPF_MEM: {
      uint32_t v;
      memcpy(&v, (const char *)&ctx + i->off, sizeof v);
      r[i->dst_reg] = v;
      break;
    }
    case BPF_ALU64 | BPF_MOV | BPF_X: r[i->dst_reg] = r[i->src_reg]; break;
    case BPF_ALU64 | BPF_MOV | BPF_K: r[i->dst_reg] = imm; break;
    case BPF_ALU | BPF_RSH | BPF_K: r[i->dst_reg] = (uint32_t)r[i->dst_reg] >> i->imm; break;
    case BPF_ALU | BPF_AND | BPF_K: r[i->dst_reg] = (uint32_t)r[i->dst_reg] & (uint32_t)i->imm; break;
    case BPF_JMP | BPF_JNE | BPF_K: if (r[i->dst_reg] != imm) pc += (size_t)i->off; break;
    case BPF_JMP | BPF_JSET | BPF_K: if (r[i->dst_reg] & imm) pc += (size_t)i->off; break;
    case BPF_JMP | BPF_EXIT: return (int)r[0];
    default: return -1;
    }
    if (pc >= n) return -1;
  }
  return -1;
}

enum { C = BPF_DEVCG_DEV_CHAR, B = BPF_DEVCG_DEV_BLOCK, R = DEVRULE_READ, W = DEVRULE_WRITE, M = DEVRULE_MKNOD };

static size_t build(const char *const *texts, struct bpf_insn *insns, size_t cap) {
  struct devrule rs[16];
  struct shim_err err = {0};
  size_t n = 0, count = 0;
  for (; texts[n]; n++)
    if (devrule_parse(texts[n], &rs[n], &err) < 0) return 0;
  if (devfilter_build(rs, n, insns, cap, &count, &err) < 0) return 0;
  return count;
}

static void logic(void) {
  struct bpf_insn p[256];
  /* Docker's baseline: mknod anything, use null/zero and the container's ptys. */
  const char *const docker[] = {"c * * m", "b * * m", "c 1 3 rwm", "c 1 5 rwm", "c 136 * rwm", "c 5 2 rw", NULL};
  size_t n = build(docker, p, 256);
  /* prologue 6; c * * m and b * * m: 2 checks + return 2; c 1 3 and c 1 5: 3 + 2; c 136 *: 2 + 2; c 5 2 rw: 4 + 2; deny 2 */
  ok(n == 6 + 4 + 4 + 5 + 5 + 4 + 6 + 2, "instruction count (%zu)", n);
  ok(run(p, n, C, R | W, 1, 3) == 1, "/dev/null read+write allowed");
  ok(run(p, n, C, R, 1, 5) == 1, "/dev/zero read allowed");
  ok(run(p, n, C, R, 1, 4) == 0, "/dev/port (c 1:4) denied");
  ok(run(p, n, C, M, 1, 4) == 1, "mknod of c 1:4 allowed");
  ok(run(p, n, B, M, 8, 0) == 1, "mknod of b 8:0 allowed");
  ok(run(p, n, B, R, 8, 0) == 0, "reading b 8:0 denied");
  ok(run(p, n, B, R, 1, 3) == 0, "b 1:3 is not c 1:3");
  ok(run(p, n, C, R | W, 136, 42) == 1, "c 136:* matches any minor");
  ok(run(p, n, C, R | W, 5, 2) == 1, "ptmx rw allowed");
  ok(run(p, n, C, M, 5, 2) == 1, "ptmx mknod via c * * m");
  ok(run(p, n, C, R | W | M, 5, 2) == 0, "a request with a bit no single rule grants is denied");

  const char *const rw_only[] = {"c 10 200 rw", NULL};
  n = build(rw_only, p, 256);
  ok(run(p, n, C, R | W, 10, 200) == 1 && run(p, n, C, W, 10, 200) == 1, "rw rule: rw and w allowed");
  ok(run(p, n, C, M, 10, 200) == 0, "rw rule: mknod denied");
  ok(run(p, n, C, R, 10, 201) == 0 && run(p, n, C, R, 11, 200) == 0, "other numbers denied");

  const char *const none[] = {NULL};
  n = build(none, p, 256);
  ok(n == 8 && run(p, n, C, R, 1, 3) == 0, "no rules: everything denied");

  const char *const all[] = {"c 1 3 r", "a * * rwm", "c 1 5 rwm", NULL};
  n = build(all, p, 256);
  ok(n == 6 + 6 + 2 && p[n - 1].code == (BPF_JMP | BPF_EXIT),
     "a rule that matches everything ends the program (no unreachable code) (%zu)", n);
  ok(run(p, n, B, R | W | M, 8, 1) == 1, "a * * rwm allows everything");

  struct devrule one = {'c', 1, 3, DEVRULE_RWM};
  struct shim_err err = {0};
  size_t count;
  ok(devfilter_build(&one, 1, p, 8, &count, &err) < 0, "refuses a buffer that is too small");
  contains(err.msg, "instructions", "says so");
  ok(devfilter_build(&one, DEVFILTER_MAX_RULES + 1, p, 256, &count, &err) < 0, "refuses too many rules");
}

/* ---- the kernel ---- */

/* The first cgroup2 mount point in /proc/self/mountinfo, or -1. */
static int cgroup2_mount(char *out, size_t len) {
  FILE *f = fopen("/proc/self/mountinfo", "re");
  if (!f) return -1;
  char line[4096];
  int found = -1;
  while (found < 0 && fgets(line, sizeof line, f)) {
    char mnt[PATH_MAX];
    const char *sep = strstr(line, " - ");
    if (sep && strncmp(sep, " - cgroup2 ", 11) == 0 && sscanf(line, "%*s %*s %*s %*s %4095s", mnt) == 1 &&
        strlen(mnt) < len && !strchr(mnt, '\\')) {
      strcpy(out, mnt);
      found = 0;
    }
  }
  fclose(f);
  return found;
}

/* In a child that joins dir: what open(path, flags) and mknod give, as errno (0 = success). */
enum probe_kind { PROBE_OPEN, PROBE_MKNOD };
static int probe(const char *dir, enum probe_kind kind, const char *path, int flags, dev_t dev) {
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    char procs[PATH_MAX];
    snprintf(procs, sizeof procs, "%s/cgroup.procs", dir);
    int cg = open(procs, O_WRONLY | O_CLOEXEC);
    if (cg < 0 || write(cg, "0", 1) != 1) _exit(200);
    close(cg);
    if (kind == PROBE_OPEN) {
      int fd = open(path, flags | O_CLOEXEC);
      _exit(fd >= 0 ? 0 : errno);
    }
    unlink(path);
    int rc = mknod(path, S_IFCHR | 0600, dev);
    int e = errno;
    unlink(path);
    _exit(rc == 0 ? 0 : e);
  }
  int status;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* A program that is not ours (another name) allowing everything, attached with BPF_F_ALLOW_MULTI. */
static int foreign_allow_all(const char *dir) {
  struct bpf_insn p[] = {{.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 1}, {.code = BPF_JMP | BPF_EXIT}};
  union bpf_attr a;
  memset(&a, 0, sizeof a);
  a.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
  a.insns = (uint64_t)(uintptr_t)p;
  a.insn_cnt = 2;
  a.license = (uint64_t)(uintptr_t) "GPL";
  memcpy(a.prog_name, "other_tool", sizeof "other_tool");
  int prog = (int)syscall(SYS_bpf, BPF_PROG_LOAD, &a, sizeof a);
  int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  int rc = -1;
  if (prog >= 0 && dirfd >= 0) {
    memset(&a, 0, sizeof a);
    a.target_fd = (uint32_t)dirfd;
    a.attach_bpf_fd = (uint32_t)prog;
    a.attach_type = BPF_CGROUP_DEVICE;
    a.attach_flags = BPF_F_ALLOW_MULTI;
    rc = (int)syscall(SYS_bpf, BPF_PROG_ATTACH, &a, sizeof a);
  }
  if (prog >= 0) close(prog);
  if (dirfd >= 0) close(dirfd);
  return rc;
}

static void kernel(void) {
  char mnt[PATH_MAX], dir[PATH_MAX + 64];
  if (geteuid() != 0) {
    ok(1, "# SKIP kernel test: not root");
    return;
  }
  if (cgroup2_mount(mnt, sizeof mnt) < 0) {
    ok(1, "# SKIP kernel test: no cgroup2 mount in /proc/self/mountinfo");
    return;
  }
  snprintf(dir, sizeof dir, "%s/feather-test-devfilter-%d", mnt, (int)getpid());
  if (!ok(mkdir(dir, 0755) == 0, "made %s", dir)) return;

  struct shim_err err = {0};
  struct devrule null_rw = {'c', 1, 3, DEVRULE_READ | DEVRULE_WRITE};
  int rc = devfilter_apply(dir, &null_rw, 1, &err);
  if (!ok(rc == 0, "attach a filter allowing only c 1:3 rw")) printf("#   %s\n", err.msg);
  if (rc == 0) {
    ok(probe(dir, PROBE_OPEN, "/dev/null", O_RDWR, 0) == 0, "a task in the cgroup opens /dev/null rw");
    ok(probe(dir, PROBE_OPEN, "/dev/zero", O_RDONLY, 0) == EPERM, "and gets EPERM for /dev/zero");
    ok(probe(dir, PROBE_MKNOD, "/tmp/feather-devfilter-null", 0, makedev(1, 3)) == EPERM,
       "and for mknod of c 1:3 (no m)");
    ok(probe(mnt, PROBE_OPEN, "/dev/zero", O_RDONLY, 0) == 0, "a task outside it still opens /dev/zero");

    /* A restart in the same cgroup: the new filter replaces ours instead of stacking on it. */
    struct devrule zero[] = {{'c', 1, 5, DEVRULE_RWM}, {'c', DEVRULE_ANY, DEVRULE_ANY, DEVRULE_MKNOD}};
    rc = devfilter_apply(dir, zero, 2, &err);
    if (!ok(rc == 0, "attach a second filter to the same cgroup")) printf("#   %s\n", err.msg);
    size_t total = 0, mine = 0;
    rc = devfilter_count(dir, &total, &mine, &err);
    ok(rc == 0 && total == 1 && mine == 1, "one program attached, not two (total %zu, feather %zu)", total, mine);
    ok(probe(dir, PROBE_OPEN, "/dev/zero", O_RDWR, 0) == 0, "now /dev/zero opens");
    ok(probe(dir, PROBE_OPEN, "/dev/null", O_RDONLY, 0) == EPERM, "and /dev/null does not");
    ok(probe(dir, PROBE_MKNOD, "/tmp/feather-devfilter-null", 0, makedev(1, 3)) == 0, "mknod is allowed (c * * m)");

    /* Someone else's program on the same cgroup stays; only ours is replaced. */
    int other = foreign_allow_all(dir);
    ok(other == 0, "attach a foreign allow-all program beside ours");
    rc = devfilter_apply(dir, zero, 2, &err);
    if (!ok(rc == 0, "attach a third filter")) printf("#   %s\n", err.msg);
    rc = devfilter_count(dir, &total, &mine, &err);
    ok(rc == 0 && total == 2 && mine == 1, "the foreign program stays, ours is replaced (total %zu, feather %zu)", total, mine);
    ok(probe(dir, PROBE_OPEN, "/dev/null", O_RDONLY, 0) == EPERM, "both run: the allow-all one does not loosen ours");
  }

  /* The verifier's own words reach the message. */
  struct bpf_insn bad[] = {{.code = BPF_JMP | BPF_EXIT}};
  int fd = -1;
  ok(devfilter_load(bad, 1, &fd, &err) < 0, "a program the verifier refuses fails to load");
  contains(err.msg, "verifier: ", "the message carries the verifier's log");
  contains(err.msg, "R0", "which names the uninitialised R0");
  contains(err.msg, "bpf(BPF_PROG_LOAD)", "and the system call");
  if (fd >= 0) close(fd);

  ok(devfilter_apply("/nonexistent-cgroup", &null_rw, 1, &err) < 0, "a missing cgroup dir fails");
  contains(err.msg, "/nonexistent-cgroup: open: No such file or directory", "naming the dir and open(2)");

  ok(rmdir(dir) == 0, "cgroup removed (its programs go with it)");
}

int main(void) {
  rules();
  logic();
  kernel();
  return tap_done();
}
