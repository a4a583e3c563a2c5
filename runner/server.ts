// The runner's HTTP API, on a unix socket (reachable from the host through a bind-mounted
// directory, even with network "none") or a TCP port.
//   GET  /healthz    {"status":"ok","model":…}
//   GET  /v1/model   {"name","inputs":[{name,type,shape}],"outputs":[…]}
//   POST /v1/infer   body {"inputs":{"x":{"dims":[1,4],"data":[…]}}}, or empty for the synthetic
//                    input -> {"model","latencyMs","outputs":{"y":{"type","dims","data"}}}
// Errors: {"error":{"code":"BAD_REQUEST"|"NOT_FOUND"|…,"message"}} with the matching status.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { BadInput, type InferenceEngine } from './engine.js';

export interface ApiDeps {
  engine: InferenceEngine;
  model: string;
  /** Runs one inference exclusively (shared with the load loop). */
  exclusive<T>(fn: () => Promise<T>): Promise<T>;
  onLatency(ms: number): void;
  /** Extra fields for /healthz (counters). */
  health?(): Record<string, unknown>;
  maxBodyBytes?: number;
}

class HttpError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const data = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) });
  res.end(data);
}

async function readBody(req: IncomingMessage, max: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > max) throw new HttpError(413, 'BAD_REQUEST', `request body larger than ${max} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

export function createApi(deps: ApiDeps): Server {
  const max = deps.maxBodyBytes ?? 16 * 2 ** 20;

  const route = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? '/').split('?')[0];
    const method = req.method ?? 'GET';
    const allow = (methods: string[]): void => {
      if (!methods.includes(method)) throw new HttpError(405, 'BAD_REQUEST', `${method} ${String(path)}: use ${methods.join(' or ')}`);
    };
    if (path === '/healthz') {
      allow(['GET', 'HEAD']);
      send(res, 200, { status: 'ok', model: deps.model, ...(deps.health?.() ?? {}) });
    } else if (path === '/v1/model') {
      allow(['GET', 'HEAD']);
      send(res, 200, { name: deps.model, inputs: deps.engine.inputs, outputs: deps.engine.outputs });
    } else if (path === '/v1/infer') {
      allow(['POST']);
      const raw = await readBody(req, max);
      let body: unknown;
      if (raw.length > 0) {
        try {
          body = JSON.parse(raw.toString('utf8'));
        } catch {
          throw new HttpError(400, 'BAD_REQUEST', 'the body is not JSON');
        }
      }
      const feeds = deps.engine.feedsFromJson(body);
      const { outputs, ms } = await deps.exclusive(() => deps.engine.infer(feeds));
      deps.onLatency(ms);
      send(res, 200, { model: deps.model, latencyMs: Math.round(ms * 1000) / 1000, outputs });
    } else {
      throw new HttpError(404, 'NOT_FOUND', `no route ${String(path)}: GET /healthz, GET /v1/model, POST /v1/infer`);
    }
  };

  return createServer((req, res) => {
    route(req, res).catch((e: unknown) => {
      const err = e instanceof HttpError ? e
        : e instanceof BadInput ? new HttpError(400, 'BAD_REQUEST', e.message)
        : new HttpError(500, 'INTERNAL', e instanceof Error ? e.message : String(e));
      if (res.headersSent) res.destroy();
      else send(res, err.status, { error: { code: err.code, message: err.message } });
    });
  });
}
