// Where blob bytes come from: file:// and http(s):// URLs, opened at a byte offset so that
// an interrupted download can resume (HTTP Range). Errors say whether a retry may help.
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { fileURLToPath } from 'node:url';
import { FeatherError, errnoCode, messageOf } from '../../shared/errors.js';

export interface OpenedSource {
  body: AsyncIterable<Buffer>;
  /** Where `body` starts in the blob: the offset asked for, or 0 when the server ignored Range. */
  start: number;
  /** The blob's whole length when known. */
  total: number | undefined;
  /** Stop reading and release the connection or file. */
  close(): void;
}

/** A failure a retry may cure: a reset connection, a 5xx, a stall, a short read. */
export class TransientError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TransientError';
  }
}

/** The server answered 416 to our Range: what we hold is as long as the blob, or longer. */
export class RangeNotSatisfiable extends Error {
  constructor(readonly total: number | undefined) {
    super('range not satisfiable');
    this.name = 'RangeNotSatisfiable';
  }
}

const TRANSIENT_ERRNO = new Set([
  'ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN',
  'ENETUNREACH', 'ENETDOWN', 'EHOSTUNREACH', 'EHOSTDOWN', 'ERR_STREAM_PREMATURE_CLOSE',
  'UND_ERR_SOCKET', 'HPE_INVALID_EOF_STATE',
]);

export function isTransientNetworkError(e: unknown): boolean {
  if (e instanceof TransientError) return true;
  const code = errnoCode(e);
  return code !== undefined && TRANSIENT_ERRNO.has(code);
}

const MAX_REDIRECTS = 5;

export function parseBlobUrl(url: string): URL {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new FeatherError('BAD_REQUEST', `"${url}" is not a URL: use file:///path, http:// or https://`);
  }
  if (u.protocol !== 'file:' && u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new FeatherError('BAD_REQUEST', `${u.protocol} URLs are not supported: use file://, http:// or https://`);
  }
  return u;
}

/** Open `url` at byte `offset`. `signal` aborts the request or read (used for cancel and stall). */
export async function openSource(url: URL, offset: number, signal: AbortSignal): Promise<OpenedSource> {
  return url.protocol === 'file:' ? openFile(url, offset, signal) : openHttp(url, offset, signal);
}

async function openFile(url: URL, offset: number, signal: AbortSignal): Promise<OpenedSource> {
  const path = fileURLToPath(url);
  let size: number;
  try {
    const st = await stat(path);
    if (!st.isFile()) throw new FeatherError('PULL_FAILED', `${path} is not a regular file`);
    size = st.size;
  } catch (e: unknown) {
    if (e instanceof FeatherError) throw e;
    throw new FeatherError('PULL_FAILED', `cannot read ${path}: ${messageOf(e)}`, undefined, { cause: e });
  }
  if (offset > size) throw new RangeNotSatisfiable(size);
  const stream = createReadStream(path, { start: offset, signal, highWaterMark: 1 << 20 });
  return { body: stream, start: offset, total: size, close: () => stream.destroy() };
}

function contentLength(res: IncomingMessage): number | undefined {
  const raw = res.headers['content-length'];
  if (raw === undefined || res.headers['content-encoding'] !== undefined) return undefined;
  const n = Number(raw);
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

/** `bytes START-END/TOTAL` (or `bytes *\/TOTAL` on a 416). */
function parseContentRange(value: string | undefined): { start: number | undefined; total: number | undefined } {
  const m = /^bytes\s+(?:(\d+)-(\d+)|\*)\/(\d+|\*)$/i.exec(value?.trim() ?? '');
  if (!m) return { start: undefined, total: undefined };
  return {
    start: m[1] === undefined ? undefined : Number(m[1]),
    total: m[3] === undefined || m[3] === '*' ? undefined : Number(m[3]),
  };
}

function get(url: URL, headers: Record<string, string>, signal: AbortSignal): Promise<IncomingMessage> {
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise<IncomingMessage>((resolve, reject) => {
    const req = send(url, { method: 'GET', headers, signal }, resolve);
    req.on('error', reject);
    req.end();
  });
}

async function openHttp(url: URL, offset: number, signal: AbortSignal): Promise<OpenedSource> {
  const headers: Record<string, string> = { 'user-agent': 'feather-agent', 'accept-encoding': 'identity' };
  if (offset > 0) headers['range'] = `bytes=${offset}-`;
  let current = url;
  for (let hop = 0; ; hop++) {
    let res: IncomingMessage;
    try {
      res = await get(current, headers, signal);
    } catch (e: unknown) {
      if (signal.aborted) throw e;
      if (isTransientNetworkError(e)) throw new TransientError(`${current.host}: ${messageOf(e)}`, { cause: e });
      throw new FeatherError('PULL_FAILED', `cannot reach ${current.host}: ${messageOf(e)}`, undefined, { cause: e });
    }
    const status = res.statusCode ?? 0;
    const close = (): void => { res.destroy(); };
    if (status >= 300 && status < 400 && res.headers.location !== undefined) {
      close();
      if (hop >= MAX_REDIRECTS) throw new FeatherError('PULL_FAILED', `${url.href}: more than ${MAX_REDIRECTS} redirects`);
      current = new URL(res.headers.location, current);
      if (current.protocol !== 'http:' && current.protocol !== 'https:') {
        throw new FeatherError('PULL_FAILED', `${url.href} redirects to ${current.protocol} which is not allowed`);
      }
      continue;
    }
    if (status === 200) {
      return { body: res, start: 0, total: contentLength(res), close };
    }
    if (status === 206 && offset > 0) {
      const range = parseContentRange(res.headers['content-range']);
      if (range.start !== offset) {
        close();
        throw new FeatherError('PULL_FAILED', `${current.href}: the server answered a Range request for byte ${offset} with "${res.headers['content-range'] ?? ''}"`);
      }
      return { body: res, start: offset, total: range.total, close };
    }
    close();
    if (status === 416) throw new RangeNotSatisfiable(parseContentRange(res.headers['content-range']).total);
    const reason = `HTTP ${status} ${res.statusMessage ?? ''}`.trim();
    if (status >= 500 || status === 408 || status === 429) throw new TransientError(`${current.href}: ${reason}`);
    throw new FeatherError('PULL_FAILED', `${current.href}: ${reason}`);
  }
}
