// The rest of /api/v1:
//   GET /info                 version, broker, counts (featherctl login checks its token here)
//   GET /models[/:name]       models from the store and from deployments, with measured p95
//   GET /events               newest first; ?device=ID&type=T&limit=N&before=ID
//   GET /sd/prometheus        Prometheus HTTP service discovery (also at /sd/prometheus)
//   GET /mosquitto-files      {"passwd","acl"} for an external Mosquitto
//   GET /blobs                stored blobs with their names and URLs
//   POST /blobs/:digest/names {"name"}   name a stored blob (featherctl push of a known blob)
import { packageVersion } from '../../shared/version.js';
import { FeatherError } from '../../shared/errors.js';
import { mosquittoAclFile, mosquittoPasswordFile } from '../broker/mosquitto.js';
import { isExternalBroker } from '../config.js';
import { blobPath } from '../blobs/http.js';
import { parseDigest } from '../blobs/store.js';
import { boolParam, intParam, type ApiContext } from './context.js';
import { readJsonObject, requestBase } from './respond.js';
import type { Router } from './router.js';
import { prometheusTargets } from './sd.js';
import { modelViews } from './views.js';

export interface InfoReply {
  version: string;
  topicPrefix: string;
  broker: { mode: 'embedded' | 'external'; url: string | null; ports: { mqtt: number; mqtts: number | null; ws: number | null } | null; connected: boolean };
  http: { port: number };
  devices: { online: number; offline: number };
  deployments: number;
  adminTokenFile: string;
}

export interface BlobView {
  digest: string;
  size: number;
  createdAt: number;
  names: string[];
  url: string;
}

export function fleetRoutes(router: Router, api: ApiContext): void {
  const { ctx } = api;
  const { store } = ctx;

  router.add('GET', '/info', () => {
    const external = isExternalBroker(ctx.config);
    const ports = ctx.broker?.ports;
    const reply: InfoReply = {
      version: packageVersion(),
      topicPrefix: ctx.config.topicPrefix,
      broker: {
        mode: external ? 'external' : 'embedded',
        url: external ? ctx.config.broker.url : null,
        ports: ports === undefined ? null : { mqtt: ports.mqtt, mqtts: ports.mqtts ?? null, ws: ports.ws ?? null },
        connected: ctx.mqtt.connected,
      },
      http: { port: ctx.http.port },
      devices: deviceCounts(store.listDevices()),
      deployments: store.listDeployments().length,
      adminTokenFile: ctx.adminTokenFile,
    };
    return { body: reply };
  });

  router.add('GET', '/models', () => ({ body: { items: modelViews(store) } }));
  router.add('GET', '/models/:name', ({ params }) => {
    const m = modelViews(store).find((x) => x.name === params['name']);
    if (m === undefined) throw new FeatherError('NOT_FOUND', `no model ${params['name'] ?? ''}; featherctl get models lists them`);
    return { body: m };
  });

  router.add('GET', '/events', ({ query }) => {
    const filter: Parameters<typeof store.listEvents>[0] = { limit: intParam(query, 'limit', 1, 10_000, 100) };
    const device = query.get('device');
    const type = query.get('type');
    const before = intParam(query, 'before', 1, Number.MAX_SAFE_INTEGER);
    if (device !== null && device !== '') filter.deviceId = device;
    if (type !== null && type !== '') filter.type = type;
    if (before !== undefined) filter.beforeId = before;
    return { body: { items: store.listEvents(filter) } };
  });

  router.add('GET', '/sd/prometheus', ({ query }) => ({ body: sdBody(api, query) }));

  router.add('GET', '/mosquitto-files', () => {
    const passwd = mosquittoPasswordFile(store);
    return {
      body: {
        passwd,
        acl: mosquittoAclFile(store, { topicPrefix: ctx.config.topicPrefix }),
        users: passwd.split('\n').filter((l) => l !== '' && !l.startsWith('#')).length,
      },
    };
  });

  router.add('GET', '/blobs', async ({ req }) => {
    const base = requestBase(req, api.publicUrl);
    const names = await api.blobs.names();
    const items: BlobView[] = (await api.blobs.list()).map((b) => ({
      ...b, names: names.filter((n) => n.digest === b.digest).map((n) => n.name), url: `${base}${blobPath(b.digest)}`,
    }));
    return { body: { items } };
  });

  router.add('POST', '/blobs/:digest/names', async ({ req, params }) => {
    const body = await readJsonObject(req);
    if (typeof body['name'] !== 'string') throw new FeatherError('BAD_REQUEST', 'body must be {"name": "<blob name>"}');
    const named = await api.blobs.tag(body['name'], parseDigest(params['digest'] as string));
    return { body: { ...named, url: `${requestBase(req, api.publicUrl)}${blobPath(named.digest)}` } };
  });
}

function deviceCounts(devices: ReadonlyArray<{ online: boolean }>): { online: number; offline: number } {
  const online = devices.filter((d) => d.online).length;
  return { online, offline: devices.length - online };
}

/** The service-discovery document (?online=true keeps online devices only). */
export function sdBody(api: ApiContext, query: URLSearchParams): ReturnType<typeof prometheusTargets> {
  return prometheusTargets(api.ctx.store.listDevices(), { onlineOnly: boolParam(query, 'online') === true });
}
