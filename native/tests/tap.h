/* A few TAP helpers for the C unit tests: ok/is/contains, then tap_done() prints the plan. */
#ifndef FEATHER_TAP_H
#define FEATHER_TAP_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tap_count, tap_failures;

__attribute__((format(printf, 2, 3), unused)) static int ok(int pass, const char *fmt, ...) {
  va_list ap;
  printf("%s %d - ", pass ? "ok" : "not ok", ++tap_count);
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  printf("\n");
  if (!pass) tap_failures++;
  return pass;
}

__attribute__((unused)) static int is_str(const char *got, const char *want, const char *name) {
  int pass = got && strcmp(got, want) == 0;
  if (!ok(pass, "%s", name)) printf("#   got:  \"%s\"\n#   want: \"%s\"\n", got ? got : "(null)", want);
  return pass;
}

__attribute__((unused)) static int contains(const char *got, const char *want, const char *name) {
  int pass = got && strstr(got, want) != NULL;
  if (!ok(pass, "%s", name)) printf("#   \"%s\"\n#   does not contain \"%s\"\n", got ? got : "(null)", want);
  return pass;
}

__attribute__((unused)) static int tap_done(void) {
  printf("1..%d\n", tap_count);
  if (tap_failures) printf("# %d of %d failed\n", tap_failures, tap_count);
  return tap_failures ? 1 : 0;
}

#endif
