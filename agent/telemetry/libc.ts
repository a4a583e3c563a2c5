// The few libc calls the statsd socket needs, through koffi (Node's dgram has no AF_UNIX).
// Linux only; the constants below are the same on x86_64, aarch64 and riscv64.
import koffi, { type LibraryHandle } from 'koffi';
import { FeatherError } from '../../shared/errors.js';

export const AF_UNIX = 1;
export const SOCK_DGRAM = 2;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;
export const MSG_TRUNC = 0x20;
export const EINTR = 4;
export const EAGAIN = 11;
/** sizeof(struct sockaddr_un): sa_family_t (2 bytes) + sun_path[108]. */
export const SOCKADDR_UN_SIZE = 110;
export const SUN_PATH_MAX = 107;

export interface Libc {
  socket(domain: number, type: number, protocol: number): number;
  bind(fd: number, addr: Buffer, len: number): number;
  recv(fd: number, buf: Buffer, len: number, flags: number): number;
  close(fd: number): number;
  errno(): number;
}

export interface PollEvents { readable: boolean; writable: boolean; disconnect: boolean }
export interface PollHandle {
  start(opts: { readable: boolean }, cb: (status: number, events: PollEvents) => void): void;
  stop(): void;
  close(): void;
  unref(): void;
  ref(): void;
}
/**
 * koffi.node.poll: a libuv uv_poll_t on the descriptor (epoll, level-triggered), so the event
 * loop tells us when a datagram waits. Koffi marks the API as not yet documented; its
 * callback receives (status, events), not what index.d.ts says, hence this local type.
 */
export type PollFn = (fd: number, opts: { readable: boolean }, cb: (status: number, events: PollEvents) => void) => PollHandle;

let cached: Libc | undefined;

function loadLibrary(): LibraryHandle {
  const errors: string[] = [];
  // glibc first; null (the process's own global symbols) covers musl and anything else.
  for (const name of ['libc.so.6', null]) {
    try {
      return koffi.load(name);
    } catch (e: unknown) {
      errors.push(e instanceof Error ? e.message : String(e));
    }
  }
  throw new FeatherError('RUNTIME_ERROR', `cannot load libc through koffi (${errors.join('; ')}); the statsd socket needs Linux with glibc or musl`);
}

export function libc(): Libc {
  if (cached !== undefined) return cached;
  const lib = loadLibrary();
  const socket = lib.func('int socket(int domain, int type, int protocol)') as (d: number, t: number, p: number) => number;
  const bind = lib.func('int bind(int fd, const void *addr, uint32_t len)') as (fd: number, a: Buffer, l: number) => number;
  const recv = lib.func('intptr_t recv(int fd, void *buf, size_t len, int flags)') as (fd: number, b: Buffer, l: number, f: number) => number | bigint;
  const close = lib.func('int close(int fd)') as (fd: number) => number;
  cached = {
    socket,
    bind,
    recv: (fd, buf, len, flags) => Number(recv(fd, buf, len, flags)),
    close,
    errno: () => koffi.errno(),
  };
  return cached;
}

/** koffi's libuv poll, when this koffi build has it. */
export function pollFn(): PollFn | undefined {
  const node = (koffi as { node?: { poll?: unknown } }).node;
  return typeof node?.poll === 'function' ? (node.poll as PollFn) : undefined;
}

/** struct sockaddr_un for a path (native byte order for sun_family). */
export function sockaddrUn(path: string): Buffer {
  const bytes = Buffer.from(path, 'utf8');
  if (bytes.length > SUN_PATH_MAX) throw new RangeError(`unix socket path longer than ${SUN_PATH_MAX} bytes: ${path}`);
  const addr = Buffer.alloc(SOCKADDR_UN_SIZE);
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] === 1) addr.writeUInt16LE(AF_UNIX, 0);
  else addr.writeUInt16BE(AF_UNIX, 0);
  bytes.copy(addr, 2);
  return addr;
}
