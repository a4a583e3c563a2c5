// HTTP plumbing shared by the JSON API (/api/v1), the blob store (/blobs) and service discovery:
// JSON replies, the contract's errors as {"error":{"code","message"}} with a proper status,
// bearer-token checks and bounded request bodies.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { FeatherError, isFeatherError, messageOf, type ErrorCode } from '../../shared/errors.js';
import type { Logger } from '../../shared/logging.js';

/** The HTTP status each contract code answers with (an ApiError may choose another). */
export const STATUS_OF: Readonly<Record<ErrorCode, number>> = {
  BAD_REQUEST: 400,
  UNKNOWN_VERB: 400,
  NOT_FOUND: 404,
  CONFLICT: 409,
  CHECKSUM_MISMATCH: 400,
  PULL_FAILED: 502,
  NO_SPACE: 507,
  RUNTIME_ERROR: 500,
  UNAUTHORIZED: 401,
  INTERNAL: 500,
};

/** A FeatherError with an HTTP status other than its code's usual one (405, 413, 416, 504). */
export class ApiError extends FeatherError {
  readonly status: number;

  constructor(status: number, code: ErrorCode, message: string, details?: Record<string, unknown>) {
    super(code, message, details);
    this.name = 'ApiError';
    this.status = status;
  }
}

export function statusOf(e: unknown): number {
  if (e instanceof ApiError) return e.status;
  if (isFeatherError(e)) return STATUS_OF[e.code];
  return 500;
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': String(Buffer.byteLength(text)), 'cache-control': 'no-store', ...headers });
  res.end(text);
}

/**
 * Answer an error. FeatherErrors keep their code and message (and `issues` when a deployment
 * file was refused); anything else is an INTERNAL 500 and is logged.
 */
export function sendError(res: ServerResponse, e: unknown, logger?: Logger, where?: string): void {
  const status = statusOf(e);
  const code: ErrorCode = isFeatherError(e) ? e.code : 'INTERNAL';
  const error: Record<string, unknown> = { code, message: messageOf(e) };
  const issues = isFeatherError(e) ? e.details?.['issues'] : undefined;
  if (issues !== undefined) error['issues'] = issues;
  if (status >= 500) logger?.error('api.request_failed', { where, status, error: messageOf(e) });
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const headers: Record<string, string> = {};
  if (status === 401) headers['www-authenticate'] = 'Bearer realm="feather"';
  const allow = e instanceof ApiError ? e.details?.['allow'] : undefined;
  if (typeof allow === 'string') headers['allow'] = allow;
  sendJson(res, status, { error }, headers);
}

/**
 * The token of `Authorization: Bearer <token>`, or undefined. A bare `Authorization: <token>` is
 * taken too: Prometheus 2.42's http_sd_configs sends `authorization.credentials_file` without
 * the scheme unless `type: Bearer` is written out.
 */
export function bearerToken(req: IncomingMessage): string | undefined {
  const h = req.headers.authorization;
  if (typeof h !== 'string') return undefined;
  const m = /^(?:Bearer[ \t]+)?([^\s]+)[ \t]*$/i.exec(h.trim());
  if (m === null || /^(Basic|Digest|Bearer)$/i.test(m[1] ?? '')) return undefined;
  return m[1];
}

/** Throws UNAUTHORIZED (401) unless the request carries the admin token. */
export function requireAdmin(req: IncomingMessage, verify: (token: string) => boolean): void {
  const token = bearerToken(req);
  if (token === undefined) {
    throw new FeatherError('UNAUTHORIZED', 'missing token: send "Authorization: Bearer <admin token>" (the token is in <dataDir>/admin-token on the controller; featherctl login stores it)');
  }
  if (!verify(token)) throw new FeatherError('UNAUTHORIZED', 'the token was refused: use the admin token from <dataDir>/admin-token (featherctl login)');
}

/** Read a whole request body, refusing more than `limit` bytes with 413. */
export async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (Number.isFinite(declared) && declared > limit) {
    req.resume();
    throw new ApiError(413, 'BAD_REQUEST', `the request body of ${declared} bytes exceeds the ${limit} accepted here`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buf = chunk as Buffer;
    size += buf.length;
    if (size > limit) {
      req.resume();
      throw new ApiError(413, 'BAD_REQUEST', `the request body exceeds the ${limit} bytes accepted here`);
    }
    chunks.push(buf);
  }
  return Buffer.concat(chunks);
}

/** A JSON object body ({} when the body is empty). */
export async function readJsonObject(req: IncomingMessage, limit = 64 * 1024): Promise<Record<string, unknown>> {
  const body = await readBody(req, limit);
  if (body.toString('utf8').trim() === '') return {};
  let value: unknown;
  try {
    value = JSON.parse(body.toString('utf8'));
  } catch (e: unknown) {
    throw new FeatherError('BAD_REQUEST', `the request body is not JSON (${messageOf(e)})`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new FeatherError('BAD_REQUEST', 'the request body must be a JSON object');
  return value as Record<string, unknown>;
}

/** 405 naming the methods the path allows. */
export function methodNotAllowed(method: string, path: string, allowed: readonly string[]): ApiError {
  return new ApiError(405, 'BAD_REQUEST', `${method} is not allowed on ${path}; use ${allowed.join(' or ')}`, { allow: allowed.join(', ') });
}

/** The base URL clients used to reach us ("http://host:port"), for URLs we hand out. */
export function requestBase(req: IncomingMessage, publicUrl: string | undefined): string {
  if (publicUrl !== undefined && publicUrl !== '') return publicUrl.replace(/\/+$/, '');
  const host = req.headers.host;
  if (typeof host === 'string' && /^[A-Za-z0-9.\-:[\]]+$/.test(host)) return `http://${host}`;
  const addr = req.socket.localAddress ?? '127.0.0.1';
  const h = addr.includes(':') ? `[${addr}]` : addr;
  return `http://${h}:${req.socket.localPort ?? 8080}`;
}
