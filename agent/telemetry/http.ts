// The agent's HTTP endpoint: GET /metrics (Prometheus text format from the one Registry) and
// GET /healthz ({"status":"ok","mqtt":{"connected":…}}). Listens on config metrics.host:port.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { FeatherError, messageOf } from '../../shared/errors.js';
import { createLogger, type Logger } from '../../shared/logging.js';

export interface HealthState {
  mqttConnected: boolean;
}

export interface MetricsServerDeps {
  registry: Registry;
  /** Asked on every /healthz. */
  health: () => HealthState;
  logger?: Logger;
}

export interface MetricsServerOptions {
  host: string;
  /** 0 picks a free port (tests). The agent does not create the server when config metrics.port is 0. */
  port: number;
}

export class MetricsServer {
  private server: Server | undefined;
  private readonly log: Logger;

  constructor(private readonly deps: MetricsServerDeps, private readonly opts: MetricsServerOptions) {
    this.log = deps.logger ?? createLogger('agent:telemetry:http');
  }

  /** Listen; resolves with the bound address. RUNTIME_ERROR when the port is taken. */
  async start(): Promise<{ host: string; port: number }> {
    if (this.server !== undefined) return this.address();
    const server = createServer((req, res) => { void this.route(req, res); });
    server.keepAliveTimeout = 5_000;
    server.headersTimeout = 10_000;
    server.requestTimeout = 30_000;
    await new Promise<void>((resolve, reject) => {
      const onError = (e: Error): void => {
        reject(new FeatherError('RUNTIME_ERROR', `metrics server cannot listen on ${this.opts.host}:${this.opts.port}: ${e.message}; free the port or set metrics.port`, undefined, { cause: e }));
      };
      server.once('error', onError);
      server.listen(this.opts.port, this.opts.host, () => {
        server.off('error', onError);
        resolve();
      });
    });
    server.on('error', (e: Error) => this.log.error('metrics.server_error', { error: e }));
    this.server = server;
    const addr = this.address();
    this.log.info('metrics.listening', addr);
    return addr;
  }

  address(): { host: string; port: number } {
    const a = this.server?.address();
    if (a === null || a === undefined || typeof a === 'string') throw new FeatherError('INTERNAL', 'metrics server is not listening');
    return { host: (a as AddressInfo).address, port: (a as AddressInfo).port };
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (server === undefined) return;
    this.server = undefined;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeIdleConnections();
    });
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      send(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n', { allow: 'GET, HEAD' });
      return;
    }
    if (path === '/metrics') {
      try {
        const body = await this.deps.registry.metrics();
        send(res, 200, this.deps.registry.contentType, body, {}, req.method === 'HEAD');
      } catch (e: unknown) {
        this.log.error('metrics.collect_failed', { error: e });
        send(res, 500, 'text/plain; charset=utf-8', `collecting metrics failed: ${messageOf(e)}\n`);
      }
      return;
    }
    if (path === '/healthz') {
      let mqttConnected = false;
      try {
        mqttConnected = this.deps.health().mqttConnected;
      } catch (e: unknown) {
        this.log.warn('metrics.health_failed', { error: e });
      }
      const body = JSON.stringify({ status: 'ok', mqtt: { connected: mqttConnected } }) + '\n';
      send(res, 200, 'application/json', body, { 'cache-control': 'no-store' }, req.method === 'HEAD');
      return;
    }
    send(res, 404, 'text/plain; charset=utf-8', 'not found: try /metrics or /healthz\n');
  }
}

function send(res: ServerResponse, status: number, type: string, body: string, headers: Record<string, string> = {}, headOnly = false): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), ...headers });
  res.end(headOnly ? undefined : body);
}
