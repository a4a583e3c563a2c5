// A fake libnvidia-ml.so.1 for tests on machines without an NVIDIA GPU: compiled from C at test
// time (cc -shared -fPIC) into a fake host root, exporting the NVML calls the agent makes with
// nvml.h's signatures and returning fixed GPUs. It is the "fake device tree" of a library.
//
// GPUs: 0000:01:00.0 (12 GiB, 1 GiB used) and 0000:41:00.0 (24 GiB, 3 GiB used). Environment,
// read at call time: FAKE_NVML_INIT_RC makes nvmlInit_v2 return that code; FAKE_NVML_USED_MIB
// sets every GPU's used memory; FAKE_NVML_GPUS=1 leaves only the first GPU. Calls before nvmlInit_v2 (or after the matching nvmlShutdown)
// return NVML_ERROR_UNINITIALIZED, as the real library does; fake_nvml_state() reports init and
// shutdown counts so a test can see that sessions are closed.
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

const SOURCE = String.raw`
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int nvmlReturn_t;
typedef struct nvmlDevice_st { unsigned domain, bus, dev, fn; unsigned long long total, used; } *nvmlDevice_t;
typedef struct { unsigned long long total, free, used; } nvmlMemory_t;

enum { OK = 0, UNINITIALIZED = 1, INVALID_ARGUMENT = 2, NOT_FOUND = 6 };
#define GIB (1024ULL * 1024 * 1024)

static struct nvmlDevice_st gpus[] = {
  { 0, 0x01, 0, 0, 12 * GIB, 1 * GIB },
  { 0, 0x41, 0, 0, 24 * GIB, 3 * GIB },
};
static int refs, inits, shutdowns;

/* FAKE_NVML_GPUS=1: only the first GPU. */
static size_t ngpus(void) {
  const char *v = getenv("FAKE_NVML_GPUS");
  size_t all = sizeof gpus / sizeof gpus[0];
  return v && (size_t)atoi(v) < all ? (size_t)atoi(v) : all;
}
#define NGPUS ngpus()

__attribute__((unused)) static unsigned long long used_of(const struct nvmlDevice_st *d) {
  const char *v = getenv("FAKE_NVML_USED_MIB");
  return v ? strtoull(v, NULL, 10) * 1024 * 1024 : d->used;
}

nvmlReturn_t nvmlInit_v2(void) {
  const char *rc = getenv("FAKE_NVML_INIT_RC");
  if (rc && atoi(rc) != 0) return atoi(rc);
  refs++;
  inits++;
  return OK;
}

nvmlReturn_t nvmlShutdown(void) {
  if (refs == 0) return UNINITIALIZED;
  refs--;
  shutdowns++;
  return OK;
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) {
  if (refs == 0) return UNINITIALIZED;
  if (!count) return INVALID_ARGUMENT;
  *count = NGPUS;
  return OK;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
  if (refs == 0) return UNINITIALIZED;
  if (!device || index >= NGPUS) return INVALID_ARGUMENT;
  *device = &gpus[index];
  return OK;
}

/* "domain:bus:device.function", hex, as NVML takes it ("0000:01:00.0" or "00000000:01:00.0"). */
nvmlReturn_t nvmlDeviceGetHandleByPciBusId_v2(const char *pciBusId, nvmlDevice_t *device) {
  unsigned domain, bus, dev, fn;
  if (refs == 0) return UNINITIALIZED;
  if (!pciBusId || !device || sscanf(pciBusId, "%x:%x:%x.%x", &domain, &bus, &dev, &fn) != 4) return INVALID_ARGUMENT;
  for (size_t i = 0; i < NGPUS; i++) {
    if (gpus[i].domain == domain && gpus[i].bus == bus && gpus[i].dev == dev && gpus[i].fn == fn) {
      *device = &gpus[i];
      return OK;
    }
  }
  return NOT_FOUND;
}

nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory) {
  if (refs == 0) return UNINITIALIZED;
  if (!device || !memory) return INVALID_ARGUMENT;
  memory->total = device->total;
  memory->used = used_of(device);
  memory->free = device->total - memory->used;
  return OK;
}

const char *nvmlErrorString(nvmlReturn_t result) {
  switch (result) {
  case OK: return "Success";
  case UNINITIALIZED: return "Uninitialized";
  case INVALID_ARGUMENT: return "Invalid Argument";
  case NOT_FOUND: return "Not Found";
  case 9: return "Driver Not Loaded";
  default: return "Unknown Error";
  }
}

/* Test only: "inits shutdowns refs". */
const char *fake_nvml_state(void) {
  static char buf[64];
  snprintf(buf, sizeof buf, "%d %d %d", inits, shutdowns, refs);
  return buf;
}
`;

export interface FakeNvmlOptions {
  /** Leave out nvmlDeviceGetMemoryInfo (a library the agent cannot bind). */
  withoutMemoryInfo?: boolean;
}

/** Compile the fake library to `path` (a file under a fake host root). Throws when there is no cc. */
export function buildFakeNvml(path: string, opts: FakeNvmlOptions = {}): void {
  mkdirSync(dirname(path), { recursive: true });
  const src = join(dirname(path), 'fake-nvml.c');
  const text = opts.withoutMemoryInfo === true ? SOURCE.replace(/nvmlReturn_t nvmlDeviceGetMemoryInfo[\s\S]*?\n}\n/, '') : SOURCE;
  writeFileSync(src, text);
  execFileSync('cc', ['-shared', '-fPIC', '-O1', '-Wall', '-Werror', '-o', path, src], { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Whether a C compiler is there to build it. */
export function haveCc(): boolean {
  try {
    execFileSync('cc', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
