// A unix datagram socket that receives StatsD datagrams from one container.
//
// One socket per container (<runDir>/containers/<name>/statsd.sock, which the runtime exposes
// inside the container as /run/feather/statsd.sock): the agent knows the sender from the socket,
// and one container's flood cannot crowd out another's metrics.
//
// Reading. socket(AF_UNIX, SOCK_DGRAM|SOCK_NONBLOCK|SOCK_CLOEXEC), bind, then non-blocking
// recv() through koffi. What wakes us:
//   - 'poll' (default when koffi has it): koffi.node.poll puts the descriptor in libuv's epoll
//     set, level-triggered. The callback runs in the poll phase like any socket, reads at most
//     `batch` datagrams and returns; if more wait, epoll reports the descriptor again on the next
//     loop turn, after timers and other I/O had theirs. No latency, no idle wake-ups.
//   - 'timer' (fallback): every timerIntervalMs, read up to the budget. Costs a wake-up per
//     interval per socket even when idle, and a burst larger than the kernel queue between two
//     ticks is refused to the sender (see below).
//
// Bounds. Each callback or tick reads at most `batch` datagrams, so the event loop is never held
// for longer than batch × (recv + handler). A token bucket (maxDatagramsPerSecond, burst of
// one second) bounds the agent's total work per socket; when it is empty the socket stops
// reading until the bucket refills (counted as `throttled`). The kernel then holds at most
// net.unix.max_dgram_qlen datagrams (default 10) and refuses further ones to the sender:
// EAGAIN for a non-blocking sender (the DogStatsD clients drop and count), a wait for a blocking
// one. AF_UNIX datagram sockets never drop silently, so that refusal is the "kernel drop", seen
// by the sender; SO_RCVBUF plays no part for AF_UNIX datagrams and is left alone. Datagrams
// longer than maxDatagramBytes are dropped whole and counted (`truncated`).
import { chmodSync, chownSync, closeSync, constants as fsc, lstatSync, mkdirSync, openSync, statSync, unlinkSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { FeatherError, errnoCode } from '../../shared/errors.js';
import { createLogger, type Logger } from '../../shared/logging.js';
import {
  AF_UNIX, EAGAIN, EINTR, MSG_TRUNC, SOCK_CLOEXEC, SOCK_DGRAM, SOCK_NONBLOCK, SUN_PATH_MAX,
  libc, pollFn, sockaddrUn, type PollHandle,
} from './libc.js';

export type StatsdDriver = 'poll' | 'timer';

export interface StatsdSocketOptions {
  /** File mode of the socket (default 0o666: any uid, including user-namespaced ones, may send). */
  mode?: number;
  /** Owner to chown the socket to (the container's host uid under a user namespace). */
  uid?: number;
  gid?: number;
  /** Larger datagrams are dropped and counted (default 8192, DogStatsD's UDS default). */
  maxDatagramBytes?: number;
  /** Datagrams read per readiness callback or timer tick (default 64). */
  batch?: number;
  /** Token-bucket rate of datagrams handled per second (default 20 000). */
  maxDatagramsPerSecond?: number;
  /** Default: 'poll' when koffi provides it, else 'timer'. */
  driver?: StatsdDriver;
  /** Timer driver period (default 20 ms). */
  timerIntervalMs?: number;
  logger?: Logger;
  /** Monotonic milliseconds (tests). */
  now?: () => number;
}

export interface StatsdSocketStats {
  /** Datagrams handed to onDatagram. */
  received: number;
  bytes: number;
  /** Datagrams longer than maxDatagramBytes, dropped. */
  truncated: number;
  /** Times the token bucket ran dry and reading paused. */
  throttled: number;
  /** recv errors other than EAGAIN/EINTR, and handler exceptions. */
  errors: number;
}

export interface StatsdSocket {
  readonly path: string;
  readonly driver: StatsdDriver;
  stats(): StatsdSocketStats;
  /** Stop reading, close the descriptor and remove the socket file (if it is still ours). */
  close(): void;
}

/** The handler gets its own copy of each datagram. */
export type DatagramHandler = (data: Buffer) => void;

/**
 * Bind a unix datagram socket at `path` (removing a stale socket there) and call onDatagram for
 * every datagram. Creates the parent directory (0755) if needed. Paths longer than the 107 bytes
 * sockaddr_un allows are bound through /proc/self/fd/<dir>/<name>.
 */
export function openStatsdSocket(path: string, onDatagram: DatagramHandler, opts: StatsdSocketOptions = {}): StatsdSocket {
  const c = libc();
  const log = opts.logger ?? createLogger('agent:telemetry:statsd');
  const maxBytes = opts.maxDatagramBytes ?? 8192;
  const batch = Math.max(1, opts.batch ?? 64);
  const rate = Math.max(1, opts.maxDatagramsPerSecond ?? 20_000);
  const burst = rate; // one second's worth
  const now = opts.now ?? (() => performance.now());
  const poll = opts.driver === 'timer' ? undefined : pollFn();
  if (opts.driver === 'poll' && poll === undefined) throw new FeatherError('RUNTIME_ERROR', 'this koffi build has no node.poll; use the timer driver');
  const driver: StatsdDriver = poll === undefined ? 'timer' : 'poll';

  mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  removeStale(path);

  const fd = c.socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw sysError('socket', c.errno(), path);
  let inode: { dev: number; ino: number };
  try {
    bindPath(fd, path);
    if (opts.uid !== undefined || opts.gid !== undefined) chownSync(path, opts.uid ?? -1, opts.gid ?? -1);
    chmodSync(path, opts.mode ?? 0o666);
    const st = statSync(path);
    inode = { dev: st.dev, ino: st.ino };
  } catch (e: unknown) {
    c.close(fd);
    throw e;
  }

  const stats: StatsdSocketStats = { received: 0, bytes: 0, truncated: 0, throttled: 0, errors: 0 };
  const buf = Buffer.allocUnsafe(maxBytes + 1);
  let tokens = burst;
  let lastRefill = now();
  let closed = false;
  let handle: PollHandle | undefined;
  let timer: NodeJS.Timeout | undefined;
  let resumeTimer: NodeJS.Timeout | undefined;

  /** Count an error; log the 1st, 2nd, 4th, 8th… so a persistent one cannot flood the log. */
  const failed = (event: string, fields: Record<string, unknown>): void => {
    stats.errors++;
    if ((stats.errors & (stats.errors - 1)) === 0) log.warn(event, { path, errors: stats.errors, ...fields });
  };

  const refill = (): void => {
    const t = now();
    tokens = Math.min(burst, tokens + ((t - lastRefill) * rate) / 1000);
    lastRefill = t;
  };

  /** Read up to `limit` datagrams; true when the socket is (for now) empty. */
  const drain = (limit: number): boolean => {
    for (let i = 0; i < limit; i++) {
      const n = c.recv(fd, buf, buf.length, MSG_TRUNC);
      if (n < 0) {
        const errno = c.errno();
        if (errno === EAGAIN) return true;
        if (errno === EINTR) { i--; continue; }
        failed('statsd.recv_failed', { errno });
        return true;
      }
      tokens--;
      if (n > maxBytes) { stats.truncated++; continue; }
      stats.received++;
      stats.bytes += n;
      try {
        onDatagram(Buffer.from(buf.subarray(0, n)));
      } catch (e: unknown) {
        failed('statsd.handler_failed', { error: e });
      }
    }
    return false;
  };

  /** Pause until the bucket holds a batch again. */
  const pause = (): void => {
    stats.throttled++;
    handle?.stop();
    const waitMs = Math.max(1, Math.ceil(((Math.min(batch, burst) - tokens) * 1000) / rate));
    resumeTimer = setTimeout(() => {
      resumeTimer = undefined;
      if (!closed) startPolling();
    }, waitMs);
    resumeTimer.unref();
  };

  const onReadable = (limitPerCall: number): void => {
    if (closed) return;
    refill();
    const limit = Math.min(limitPerCall, Math.floor(tokens));
    const empty = limit > 0 ? drain(limit) : false;
    if (!empty && tokens < 1) pause();
  };

  const onPoll = (status: number): void => {
    if (status < 0) {
      failed('statsd.poll_failed', { status });
      return;
    }
    onReadable(batch);
  };

  const startPolling = (): void => {
    if (poll === undefined) return;
    if (handle === undefined) {
      handle = poll(fd, { readable: true }, onPoll);
      handle.unref(); // the socket alone does not keep the agent alive
    } else {
      handle.start({ readable: true }, onPoll);
    }
  };

  if (driver === 'poll') {
    startPolling();
  } else {
    const intervalMs = opts.timerIntervalMs ?? 20;
    // Enough per tick to sustain the rate, still a fixed bound on one tick's work.
    const perTick = Math.max(batch, Math.ceil((rate * intervalMs) / 1000));
    timer = setInterval(() => {
      if (resumeTimer === undefined) onReadable(perTick);
    }, intervalMs);
    timer.unref();
  }

  return {
    path,
    driver,
    stats: () => ({ ...stats }),
    close(): void {
      if (closed) return;
      closed = true;
      if (timer !== undefined) clearInterval(timer);
      if (resumeTimer !== undefined) clearTimeout(resumeTimer);
      handle?.close(); // stops polling before the descriptor goes away
      c.close(fd);
      try {
        const st = statSync(path);
        if (st.dev === inode.dev && st.ino === inode.ino) unlinkSync(path);
      } catch (e: unknown) {
        if (errnoCode(e) !== 'ENOENT') log.warn('statsd.unlink_failed', { path, error: e });
      }
    },
  };

  function bindPath(sock: number, p: string): void {
    if (Buffer.byteLength(p) <= SUN_PATH_MAX) {
      if (c.bind(sock, sockaddrUn(p), 2 + Buffer.byteLength(p) + 1) !== 0) throw sysError('bind', c.errno(), p);
      return;
    }
    // Too long for sun_path: go through the directory's descriptor.
    const dirFd = openSync(dirname(p), fsc.O_RDONLY | fsc.O_DIRECTORY);
    try {
      const short = `/proc/self/fd/${dirFd}/${basename(p)}`;
      if (Buffer.byteLength(short) > SUN_PATH_MAX) throw new FeatherError('BAD_REQUEST', `socket name too long: ${basename(p)}`);
      if (c.bind(sock, sockaddrUn(short), 2 + Buffer.byteLength(short) + 1) !== 0) throw sysError('bind', c.errno(), p);
    } finally {
      closeSync(dirFd);
    }
  }
}

function removeStale(path: string): void {
  let st;
  try {
    st = lstatSync(path);
  } catch (e: unknown) {
    if (errnoCode(e) === 'ENOENT') return;
    throw e;
  }
  if (!st.isSocket()) throw new FeatherError('CONFLICT', `${path} exists and is not a socket; remove it and retry`);
  unlinkSync(path);
}

function sysError(call: string, errno: number, path: string): FeatherError {
  return new FeatherError('RUNTIME_ERROR', `${call}(${path}) failed with errno ${errno}`, { call, errno, path });
}
