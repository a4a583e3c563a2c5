// The controller's HTTP API, an extension of the controller (controller/main.ts loads it by
// convention: `createApiExtension`). On the controller's HTTP port (default 8080) it mounts
//   /api/v1/...        JSON API, every route behind the admin token (Authorization: Bearer)
//   /sd/prometheus     Prometheus HTTP service discovery (admin token; also /api/v1/sd/prometheus)
//   /blobs/sha256/...  content-addressed blob store: downloads open, uploads with the admin token
// beside the core's /metrics and /healthz. Routes and shapes: docs/featherctl.md, "API".
import { join } from 'node:path';
import { FeatherError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logging.js';
import { createBlobHandler } from '../blobs/http.js';
import { BlobStore } from '../blobs/store.js';
import type { ControllerContext, Extension, ExtensionFactory } from '../core/context.js';
import type { HttpHandler } from '../core/http.js';
import type { ApiContext } from './context.js';
import { deploymentRoutes } from './deployments.js';
import { deviceRoutes } from './devices.js';
import { fleetRoutes, sdBody } from './fleet.js';
import { methodNotAllowed, requireAdmin, sendError, sendJson } from './respond.js';
import { Router } from './router.js';
import { AgentRpc } from './rpc.js';

export const API_PREFIX = '/api/v1';
export const SD_PATH = '/sd/prometheus';

export interface ApiOptions {
  /** Base URL for blob URLs handed out (env FEATHER_CONTROLLER_PUBLIC_URL); default: the request's Host. */
  publicUrl?: string | undefined;
  /** Wait for an agent's reply (logs) this long by default (10 s). */
  rpcTimeoutMs?: number;
  /** Run deployments' build hooks on apply (env FEATHER_CONTROLLER_BUILD_HOOKS=1; timeout FEATHER_CONTROLLER_BUILD_HOOK_TIMEOUT_S). */
  buildHooks?: { enabled: boolean; timeoutMs?: number };
}

export interface Api extends Extension {
  readonly handler: HttpHandler;
  readonly sdHandler: HttpHandler;
  readonly blobHandler: HttpHandler;
  readonly blobs: BlobStore;
  readonly rpc: AgentRpc;
}

/** The API's handlers over a started controller context (mounted by start()). */
export function createApi(ctx: ControllerContext, opts: ApiOptions = {}): Api {
  const logger: Logger = ctx.logger.child('api');
  const rpc = new AgentRpc({ mqtt: ctx.mqtt, topicPrefix: ctx.config.topicPrefix, logger: logger.child('rpc'), ...(opts.rpcTimeoutMs !== undefined ? { timeoutMs: opts.rpcTimeoutMs } : {}) });
  const blobs = new BlobStore(join(ctx.config.dataDir, 'blobs'), logger.child('blobs'));
  const api: ApiContext = { ctx, rpc, blobs, publicUrl: opts.publicUrl, buildHooks: opts.buildHooks, logger };
  const isAdmin = (token: string): boolean => ctx.credentials.verifyAdmin(token);

  const router = new Router();
  deviceRoutes(router, api);
  deploymentRoutes(router, api);
  fleetRoutes(router, api);

  const handler: HttpHandler = async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const method = req.method ?? 'GET';
    const path = url.pathname.slice(API_PREFIX.length) || '/';
    try {
      requireAdmin(req, isAdmin);
      const m = router.match(method, path);
      const r = await m.handler({ req, res, params: m.params, query: url.searchParams, path });
      if (r !== undefined) sendJson(res, r.status ?? 200, r.body);
    } catch (e: unknown) {
      if (!req.complete) req.resume();
      sendError(res, e, logger, `${method} ${url.pathname}`);
    }
  };

  const sdHandler: HttpHandler = (req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    try {
      requireAdmin(req, isAdmin);
      if (url.pathname !== SD_PATH) throw new FeatherError('NOT_FOUND', `no route for ${url.pathname}; service discovery is at ${SD_PATH}`);
      if (req.method !== 'GET' && req.method !== 'HEAD') throw methodNotAllowed(req.method ?? '', SD_PATH, ['GET', 'HEAD']);
      sendJson(res, 200, sdBody(api, url.searchParams));
    } catch (e: unknown) {
      sendError(res, e, logger, `${req.method ?? 'GET'} ${url.pathname}`);
    }
  };

  const blobHandler = createBlobHandler({ store: blobs, isAdmin, publicUrl: opts.publicUrl, logger: logger.child('blobs') });

  return {
    name: 'api',
    handler,
    sdHandler,
    blobHandler,
    blobs,
    rpc,
    async start() {
      await blobs.init();
      rpc.start();
      ctx.http.mount(API_PREFIX, handler);
      ctx.http.mount(SD_PATH, sdHandler);
      ctx.http.mount('/blobs', blobHandler);
      logger.info('api.mounted', { routes: [API_PREFIX, SD_PATH, '/blobs'], publicUrl: opts.publicUrl ?? null });
    },
    stop() {
      rpc.stop();
    },
  };
}

/** The ExtensionFactory controller/main.ts looks for. */
export const createApiExtension: ExtensionFactory = (ctx) => {
  const publicUrl = process.env['FEATHER_CONTROLLER_PUBLIC_URL'];
  return createApi(ctx, { publicUrl: publicUrl === undefined || publicUrl === '' ? undefined : publicUrl, buildHooks: buildHooksFromEnv(process.env) });
};

/** FEATHER_CONTROLLER_BUILD_HOOKS=1|true enables build hooks; FEATHER_CONTROLLER_BUILD_HOOK_TIMEOUT_S (default 600) bounds each run. */
export function buildHooksFromEnv(env: NodeJS.ProcessEnv): { enabled: boolean; timeoutMs?: number } {
  const on = env['FEATHER_CONTROLLER_BUILD_HOOKS'];
  const enabled = on === '1' || on === 'true';
  const raw = env['FEATHER_CONTROLLER_BUILD_HOOK_TIMEOUT_S'];
  if (raw === undefined || raw === '') return { enabled };
  const s = Number(raw);
  if (!Number.isFinite(s) || s <= 0) throw new FeatherError('BAD_REQUEST', `FEATHER_CONTROLLER_BUILD_HOOK_TIMEOUT_S=${raw} must be a number of seconds above 0`);
  return { enabled, timeoutMs: Math.round(s * 1000) };
}
