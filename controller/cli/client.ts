// featherctl's HTTP client for the controller: JSON in and out, the admin token as a bearer
// token, the API's {"error":{"code","message"}} turned back into a FeatherError with that code
// (so the exit status follows it), and network failures said in one line.
import http, { type IncomingHttpHeaders } from 'node:http';
import https from 'node:https';
import type { Readable } from 'node:stream';
import { ERROR_CODES, errnoCode, FeatherError, messageOf, type ErrorCode } from '../../shared/errors.js';

export interface RawResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

export interface RequestOptions {
  query?: Record<string, string | number | boolean | undefined>;
  /** A JSON body. */
  json?: unknown;
  /** A raw body (with contentType). */
  body?: Buffer | string;
  contentType?: string;
  /** A streamed body of `length` bytes (uploads). */
  stream?: Readable;
  length?: number;
  /** Bytes of the streamed body sent so far (progress). */
  onSent?: (bytes: number) => void;
  /** Idle timeout of the socket (default 60 s). */
  timeoutMs?: number;
}

/** An error the controller answered, with its HTTP status. */
export class ApiResponseError extends FeatherError {
  constructor(readonly status: number, code: ErrorCode, message: string) {
    super(code, message);
    this.name = 'ApiResponseError';
  }
}

const isCode = (v: unknown): v is ErrorCode => typeof v === 'string' && (ERROR_CODES as readonly string[]).includes(v);

function codeForStatus(status: number): ErrorCode {
  if (status === 400 || status === 405 || status === 413 || status === 416) return 'BAD_REQUEST';
  if (status === 401 || status === 403) return 'UNAUTHORIZED';
  if (status === 404) return 'NOT_FOUND';
  if (status === 409) return 'CONFLICT';
  if (status === 507) return 'NO_SPACE';
  return 'INTERNAL';
}

export class ApiClient {
  constructor(
    readonly server: string,
    private readonly token: string | undefined,
    /** Said after a 401: how to get a token that works. */
    private readonly tokenHint: string | undefined = undefined,
  ) {}

  url(path: string, query?: RequestOptions['query']): URL {
    const u = new URL(this.server.replace(/\/+$/, '') + path);
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) u.searchParams.set(k, String(v));
    return u;
  }

  /** Any request; resolves with the response whatever its status. */
  raw(method: string, path: string, opts: RequestOptions = {}): Promise<RawResponse> {
    const u = this.url(path, opts.query);
    const headers: Record<string, string> = { accept: 'application/json', 'user-agent': 'featherctl' };
    if (this.token !== undefined) headers['authorization'] = `Bearer ${this.token}`;
    let body: Buffer | undefined;
    if (opts.json !== undefined) {
      body = Buffer.from(JSON.stringify(opts.json));
      headers['content-type'] = 'application/json';
    } else if (opts.body !== undefined) {
      body = Buffer.isBuffer(opts.body) ? opts.body : Buffer.from(opts.body);
      headers['content-type'] = opts.contentType ?? 'application/octet-stream';
    }
    if (body !== undefined) headers['content-length'] = String(body.length);
    if (opts.stream !== undefined) {
      headers['content-type'] = opts.contentType ?? 'application/octet-stream';
      if (opts.length !== undefined) headers['content-length'] = String(opts.length);
    }
    const send = u.protocol === 'https:' ? https.request : http.request;
    return new Promise<RawResponse>((resolve, reject) => {
      const req = send(u, { method, headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', (e) => reject(this.networkError(e)));
      });
      req.setTimeout(opts.timeoutMs ?? 60_000, () => req.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })));
      req.on('error', (e) => reject(this.networkError(e)));
      if (opts.stream !== undefined) {
        let sent = 0;
        opts.stream.on('data', (c: Buffer) => { sent += c.length; opts.onSent?.(sent); });
        opts.stream.on('error', (e) => req.destroy(e));
        opts.stream.pipe(req);
      } else {
        req.end(body);
      }
    });
  }

  /** A request whose 2xx JSON body is returned; anything else throws. */
  async call<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    const r = await this.raw(method, path, opts);
    if (r.status < 200 || r.status >= 300) throw this.responseError(r, method, path);
    if (r.body.length === 0) return undefined as T;
    try {
      return JSON.parse(r.body.toString('utf8')) as T;
    } catch {
      throw new FeatherError('INTERNAL', `${method} ${path}: the controller at ${this.server} answered ${r.status} with something that is not JSON; is --server the feather-controller's HTTP port?`);
    }
  }

  get<T>(path: string, query?: RequestOptions['query']): Promise<T> {
    return this.call<T>('GET', path, query === undefined ? {} : { query });
  }

  responseError(r: RawResponse, method: string, path: string): ApiResponseError {
    let code: ErrorCode = codeForStatus(r.status);
    let message = `${method} ${path}: HTTP ${r.status}`;
    try {
      const v = JSON.parse(r.body.toString('utf8')) as { error?: { code?: unknown; message?: unknown } };
      if (isCode(v.error?.code)) code = v.error.code;
      if (typeof v.error?.message === 'string') message = v.error.message;
    } catch {
      // not our JSON (a proxy?): keep the status line
    }
    if (r.status === 401) {
      message = this.token === undefined
        ? `the controller at ${this.server} needs a token: ${this.tokenHint ?? 'run featherctl login, or pass --token / FEATHERCTL_TOKEN'}`
        : `the controller at ${this.server} refused the token: ${this.tokenHint ?? 'run featherctl login again with the admin token (<dataDir>/admin-token on the controller)'}`;
    }
    return new ApiResponseError(r.status, code, message);
  }

  private networkError(e: unknown): FeatherError {
    const code = errnoCode(e);
    const why = code === 'ECONNREFUSED' ? 'connection refused: is feather-controller running, and is this its HTTP port?'
      : code === 'ENOTFOUND' || code === 'EAI_AGAIN' ? 'unknown host'
        : code === 'ETIMEDOUT' ? 'no answer in time'
          : code === 'ECONNRESET' || code === 'EPIPE' ? 'the connection was closed'
            : messageOf(e);
    return new FeatherError('INTERNAL', `cannot reach the controller at ${this.server} (${why}); set --server or FEATHERCTL_SERVER`, undefined, { cause: e });
  }
}
