// The controller's HTTP listener (http.host:http.port, default 8080): GET /metrics and
// GET /healthz here; everything else is handed to what was mounted (the HTTP API mounts
// /api/v1: ctx.http.mount('/api/v1', handler)). Unmatched paths answer 404 in JSON.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';
import { FeatherError, messageOf } from '../../shared/errors.js';
import type { Logger } from '../../shared/logging.js';

export type HttpHandler = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

export interface HttpServerOptions {
  host: string;
  /** 0 picks a free port (tests). */
  port: number;
  metrics: Registry;
  health: () => Record<string, unknown>;
  logger: Logger;
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
}

export class HttpServer {
  readonly name = 'http';
  private server: Server | undefined;
  private readonly mounts: Array<{ prefix: string; handler: HttpHandler }> = [];
  private boundPort = 0;

  constructor(private readonly opts: HttpServerOptions) {}

  /** Route requests whose path is `prefix` or starts with `prefix/` to `handler` (longest prefix wins). */
  mount(prefix: string, handler: HttpHandler): void {
    const p = prefix.replace(/\/+$/, '');
    if (!p.startsWith('/') || p === '/metrics' || p === '/healthz') throw new FeatherError('BAD_REQUEST', `cannot mount ${prefix}: use a path like /api/v1 other than /metrics and /healthz`);
    this.mounts.push({ prefix: p, handler });
    this.mounts.sort((a, b) => b.prefix.length - a.prefix.length);
  }

  get port(): number {
    return this.boundPort;
  }

  async start(): Promise<void> {
    const server = createServer((req, res) => { void this.route(req, res); });
    server.keepAliveTimeout = 5_000;
    server.headersTimeout = 10_000;
    server.requestTimeout = 60_000;
    await new Promise<void>((resolve, reject) => {
      const onError = (e: Error): void => reject(new FeatherError('INTERNAL', `the HTTP API cannot listen on ${this.opts.host}:${this.opts.port}: ${e.message}; free the port or set http.port`, undefined, { cause: e }));
      server.once('error', onError);
      server.listen(this.opts.port, this.opts.host, () => { server.off('error', onError); resolve(); });
    });
    const addr = server.address();
    this.boundPort = typeof addr === 'object' && addr !== null ? addr.port : this.opts.port;
    server.on('error', (e: Error) => this.opts.logger.error('http.server_error', { error: e.message }));
    this.server = server;
    this.opts.logger.info('http.listening', { host: this.opts.host, port: this.boundPort });
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server === undefined) return;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    try {
      if (path === '/metrics' && req.method === 'GET') {
        const text = await this.opts.metrics.metrics();
        res.writeHead(200, { 'content-type': this.opts.metrics.contentType }).end(text);
        return;
      }
      if (path === '/healthz' && req.method === 'GET') {
        sendJson(res, 200, { status: 'ok', ...this.opts.health() });
        return;
      }
      const m = this.mounts.find((x) => path === x.prefix || path.startsWith(`${x.prefix}/`));
      if (m !== undefined) {
        await m.handler(req, res);
        return;
      }
      sendJson(res, 404, { error: { code: 'NOT_FOUND', message: `no route for ${req.method ?? 'GET'} ${path}` } });
    } catch (e: unknown) {
      this.opts.logger.error('http.handler_failed', { path, error: messageOf(e) });
      if (!res.headersSent) sendJson(res, 500, { error: { code: 'INTERNAL', message: messageOf(e) } });
      else res.destroy();
    }
  }
}
