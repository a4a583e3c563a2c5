// Latency lines to the agent's StatsD socket: a unix DATAGRAM socket (Node's dgram has no
// AF_UNIX, so socket/connect/send come from libc through koffi). Lines are batched, several per
// datagram separated by "\n", for at most flushMs; a datagram never exceeds maxDatagramBytes.
// The socket is non-blocking: when the agent's queue is full the datagram is dropped and
// counted, and an inference never waits on telemetry.
import koffi from 'koffi';

/** One inference's latency, as the agent reads it: `inference.latency:12.7|ms|#model:resnet18`. */
export function latencyLine(ms: number, model: string): string {
  const value = Number(Math.max(0, ms).toFixed(3)).toString();
  return `inference.latency:${value}|ms|#model:${model}`;
}

export type SendOutcome = 'sent' | 'dropped';

/** Where datagrams go (the unix socket; tests pass a fake). */
export interface DatagramSink {
  send(data: Buffer): SendOutcome;
  close(): void;
}

export interface StatsdCounters {
  lines: number;
  datagrams: number;
  /** Lines in datagrams the socket refused (agent queue full, no socket yet). */
  droppedLines: number;
}

export interface StatsdClientOptions {
  flushMs: number;
  maxDatagramBytes: number;
}

export class StatsdClient {
  private pending: string[] = [];
  private pendingBytes = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly counters: StatsdCounters = { lines: 0, datagrams: 0, droppedLines: 0 };

  constructor(private readonly sink: DatagramSink, private readonly opts: StatsdClientOptions) {}

  counts(): StatsdCounters {
    return { ...this.counters };
  }

  /** Queue a line; sends a datagram when the batch is full or flushMs is 0. */
  add(line: string): void {
    const bytes = Buffer.byteLength(line);
    const joined = this.pendingBytes + (this.pending.length > 0 ? 1 : 0) + bytes;
    if (this.pending.length > 0 && joined > this.opts.maxDatagramBytes) this.flush();
    this.pending.push(line);
    this.pendingBytes += (this.pending.length > 1 ? 1 : 0) + bytes;
    this.counters.lines++;
    if (this.opts.flushMs === 0 || this.pendingBytes >= this.opts.maxDatagramBytes) {
      this.flush();
    } else if (this.timer === undefined) {
      this.timer = setTimeout(() => this.flush(), this.opts.flushMs);
      this.timer.unref();
    }
  }

  flush(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.pending.length === 0) return;
    const lines = this.pending.length;
    const data = Buffer.from(this.pending.join('\n'));
    this.pending = [];
    this.pendingBytes = 0;
    if (this.sink.send(data) === 'sent') this.counters.datagrams++;
    else this.counters.droppedLines += lines;
  }

  close(): void {
    this.flush();
    this.sink.close();
  }
}

const AF_UNIX = 1;
const SOCK_DGRAM = 2;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const MSG_NOSIGNAL = 0x4000;
const EINTR = 4;
const EAGAIN = 11;
const SUN_PATH_MAX = 107;
const RECONNECT_MS = 1000;

interface LibcSocket {
  socket(domain: number, type: number, protocol: number): number;
  connect(fd: number, addr: Buffer, len: number): number;
  send(fd: number, buf: Buffer, len: number, flags: number): number;
  close(fd: number): number;
  errno(): number;
}

function loadLibc(): LibcSocket {
  let lib: ReturnType<typeof koffi.load> | undefined;
  const errors: string[] = [];
  for (const name of ['libc.so.6', null]) {
    try {
      lib = koffi.load(name);
      break;
    } catch (e: unknown) {
      errors.push(e instanceof Error ? e.message : String(e));
    }
  }
  if (lib === undefined) throw new Error(`cannot load libc through koffi: ${errors.join('; ')}`);
  const send = lib.func('intptr_t send(int fd, const void *buf, size_t len, int flags)') as (fd: number, b: Buffer, l: number, f: number) => number | bigint;
  return {
    socket: lib.func('int socket(int domain, int type, int protocol)') as (d: number, t: number, p: number) => number,
    connect: lib.func('int connect(int fd, const void *addr, uint32_t len)') as (fd: number, a: Buffer, l: number) => number,
    send: (fd, buf, len, flags) => Number(send(fd, buf, len, flags)),
    close: lib.func('int close(int fd)') as (fd: number) => number,
    errno: () => koffi.errno(),
  };
}

function sockaddrUn(path: string): Buffer {
  const bytes = Buffer.from(path);
  if (bytes.length > SUN_PATH_MAX) throw new Error(`statsd socket path longer than ${SUN_PATH_MAX} bytes: ${path}`);
  const addr = Buffer.alloc(2 + bytes.length + 1);
  // sa_family_t in native byte order.
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] === 1) addr.writeUInt16LE(AF_UNIX, 0);
  else addr.writeUInt16BE(AF_UNIX, 0);
  bytes.copy(addr, 2);
  return addr;
}

export interface UnixSinkEvents {
  /** A connect or send failed (errno); called for the first failure after each success. */
  onError?(call: 'socket' | 'connect' | 'send', errno: number): void;
}

/**
 * A connected, non-blocking unix datagram socket. Connects lazily and again after a failure
 * (at most once a second): the agent binds the socket before the workload starts, and binds a
 * new one at the same path when it restarts, which a connected socket sees as ECONNREFUSED.
 */
export class UnixDatagramSink implements DatagramSink {
  private readonly c = loadLibc();
  private readonly addr: Buffer;
  private fd = -1;
  private lastAttempt = -Infinity;
  private failing = false;

  constructor(readonly path: string, private readonly events: UnixSinkEvents = {}) {
    this.addr = sockaddrUn(path);
  }

  private fail(call: 'socket' | 'connect' | 'send', errno: number): SendOutcome {
    if (!this.failing) this.events.onError?.(call, errno);
    this.failing = true;
    return 'dropped';
  }

  private connect(): boolean {
    if (this.fd >= 0) return true;
    const now = performance.now();
    if (now - this.lastAttempt < RECONNECT_MS) return false;
    this.lastAttempt = now;
    const fd = this.c.socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      this.fail('socket', this.c.errno());
      return false;
    }
    if (this.c.connect(fd, this.addr, this.addr.length) !== 0) {
      this.fail('connect', this.c.errno());
      this.c.close(fd);
      return false;
    }
    this.fd = fd;
    return true;
  }

  send(data: Buffer): SendOutcome {
    if (!this.connect()) return 'dropped';
    for (;;) {
      if (this.c.send(this.fd, data, data.length, MSG_NOSIGNAL) >= 0) {
        this.failing = false;
        return 'sent';
      }
      const errno = this.c.errno();
      if (errno === EINTR) continue;
      // EAGAIN: the agent's queue is full; ECONNREFUSED/ENOTCONN: its socket is gone.
      if (errno !== EAGAIN) {
        this.c.close(this.fd);
        this.fd = -1;
      }
      return this.fail('send', errno);
    }
  }

  close(): void {
    if (this.fd >= 0) this.c.close(this.fd);
    this.fd = -1;
  }
}
