// /blobs on the controller's HTTP port (docs/featherctl.md, "Blob store"):
//   GET|HEAD /blobs/sha256/<digest>[/<file name>]   open (agents pull with plain URLs); Range
//                                                   (206 + Content-Range, 416), ETag, If-None-Match
//   PUT|POST /blobs/sha256/<digest>[?name=NAME]     admin token; streamed, verified, then stored
//   DELETE   /blobs/sha256/<digest>                 admin token
// The optional trailing file name is ignored by the server: it lets a model URL end in the file
// name the agent gives the model inside the container (/models/<model>/<file name>).
import type { IncomingMessage, ServerResponse } from 'node:http';
import { open } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { errnoCode, FeatherError, messageOf } from '../../shared/errors.js';
import type { Logger } from '../../shared/logging.js';
import type { HttpHandler } from '../core/http.js';
import { methodNotAllowed, requestBase, requireAdmin, sendError, sendJson } from '../api/respond.js';
import { parseRange } from './range.js';
import { BlobStore, isDigest, validateBlobName } from './store.js';

export interface BlobHttpOptions {
  store: BlobStore;
  /** True for the admin token (uploads and deletes). */
  isAdmin: (token: string) => boolean;
  /** Base of the URLs handed out (default: from the request's Host header). */
  publicUrl?: string | undefined;
  logger: Logger;
}

export interface UploadReply {
  digest: string;
  size: number;
  url: string;
  created: boolean;
  name?: string;
}

export const blobPath = (digest: string): string => `/blobs/sha256/${digest}`;

const FILE_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.+-]{0,254}$/;

/** The digest a /blobs path names (and whether a file name follows), or NOT_FOUND. */
function parseBlobPath(path: string): { digest: string; withName: boolean } {
  const parts = path.split('/').filter((s) => s !== '');
  // ['blobs', 'sha256', digest, fileName?]
  if (parts[0] === 'blobs' && parts[1] === 'sha256' && (parts.length === 3 || parts.length === 4)) {
    const digest = (parts[2] as string).toLowerCase();
    if (!isDigest(digest)) throw new FeatherError('BAD_REQUEST', `"${parts[2] ?? ''}" is not a sha256 digest: /blobs/sha256/<64 hex digits>`);
    if (parts.length === 4 && !FILE_NAME_RE.test(parts[3] as string)) throw new FeatherError('BAD_REQUEST', `"${parts[3] ?? ''}" is not a file name`);
    return { digest, withName: parts.length === 4 };
  }
  throw new FeatherError('NOT_FOUND', `no blob at ${path}: blobs are at /blobs/sha256/<digest>`);
}

export function createBlobHandler(opts: BlobHttpOptions): HttpHandler {
  const { store, logger } = opts;

  async function download(req: IncomingMessage, res: ServerResponse, digest: string): Promise<void> {
    let fh;
    try {
      fh = await open(store.path(digest), 'r');
    } catch (e: unknown) {
      if (errnoCode(e) === 'ENOENT') throw new FeatherError('NOT_FOUND', `blob sha256:${digest} is not stored here; upload it with featherctl push FILE --name NAME`);
      throw e;
    }
    try {
      const size = (await fh.stat()).size;
      const etag = `"sha256:${digest}"`;
      const base: Record<string, string> = {
        'accept-ranges': 'bytes',
        etag,
        'cache-control': 'public, max-age=31536000, immutable',
        'content-type': 'application/octet-stream',
      };
      const inm = req.headers['if-none-match'];
      if (typeof inm === 'string' && (inm.trim() === '*' || inm.split(',').some((t) => t.trim().replace(/^W\//, '') === etag))) {
        res.writeHead(304, base).end();
        return;
      }
      const ifRange = req.headers['if-range'];
      const rangeHeader = typeof ifRange === 'string' && ifRange.trim() !== etag ? undefined : req.headers.range;
      const range = parseRange(rangeHeader, size);
      if (range.kind === 'unsatisfiable') {
        res.writeHead(416, { ...base, 'content-range': `bytes */${size}`, 'content-type': 'application/json; charset=utf-8' });
        res.end(JSON.stringify({ error: { code: 'BAD_REQUEST', message: `range ${rangeHeader ?? ''} is outside the blob of ${size} bytes` } }));
        return;
      }
      const start = range.kind === 'partial' ? range.start : 0;
      const end = range.kind === 'partial' ? range.end : size - 1;
      const headers = { ...base, 'content-length': String(Math.max(0, end - start + 1)) };
      if (range.kind === 'partial') {
        res.writeHead(206, { ...headers, 'content-range': `bytes ${start}-${end}/${size}` });
      } else {
        res.writeHead(200, headers);
      }
      if (req.method === 'HEAD' || size === 0) {
        res.end();
        return;
      }
      const stream = fh.createReadStream({ start, end, autoClose: false, highWaterMark: 1 << 20 });
      try {
        await pipeline(stream, res);
      } catch (e: unknown) {
        // The client went away (an agent interrupted mid-pull resumes with Range): nothing to answer.
        logger.debug('blobs.download_aborted', { digest, error: messageOf(e) });
      }
    } finally {
      await fh.close().catch(() => undefined);
    }
  }

  async function upload(req: IncomingMessage, res: ServerResponse, digest: string, query: URLSearchParams): Promise<void> {
    res.setHeader('connection', 'close'); // a refused upload must not leave a body to drain on a kept-alive socket
    requireAdmin(req, opts.isAdmin);
    const nameParam = query.get('name');
    const name = nameParam === null || nameParam === '' ? undefined : validateBlobName(nameParam);
    const lengthHeader = req.headers['content-length'];
    const size = lengthHeader === undefined ? undefined : Number(lengthHeader);
    if (size !== undefined && (!Number.isSafeInteger(size) || size < 0)) throw new FeatherError('BAD_REQUEST', `Content-Length ${String(lengthHeader)} is not a byte count`);
    const { info, created } = await store.put(digest, req, size === undefined ? {} : { size });
    if (name !== undefined) await store.tag(name, info.digest);
    res.removeHeader('connection');
    const url = `${requestBase(req, opts.publicUrl)}${blobPath(info.digest)}`;
    const reply: UploadReply = { digest: info.digest, size: info.size, url, created, ...(name !== undefined ? { name } : {}) };
    sendJson(res, created ? 201 : 200, reply, { location: blobPath(info.digest) });
  }

  async function remove(req: IncomingMessage, res: ServerResponse, digest: string): Promise<void> {
    requireAdmin(req, opts.isAdmin);
    if (!(await store.remove(digest))) throw new FeatherError('NOT_FOUND', `blob sha256:${digest} is not stored here`);
    sendJson(res, 200, { digest, deleted: true });
  }

  return async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const method = req.method ?? 'GET';
    try {
      const { digest, withName } = parseBlobPath(url.pathname);
      if (method === 'GET' || method === 'HEAD') return await download(req, res, digest);
      if (withName) throw methodNotAllowed(method, url.pathname, ['GET', 'HEAD']);
      if (method === 'PUT' || method === 'POST') return await upload(req, res, digest, url.searchParams);
      if (method === 'DELETE') return await remove(req, res, digest);
      throw methodNotAllowed(method, url.pathname, ['GET', 'HEAD', 'PUT', 'POST', 'DELETE']);
    } catch (e: unknown) {
      if (!req.complete) req.resume();
      sendError(res, e, logger, `${method} ${url.pathname}`);
    }
  };
}
