// /api/v1/devices: the fleet as the controller knows it, device tokens, and logs from an agent.
//   GET    /devices                                   summaries
//   POST   /devices {"id","rotate"?}                  a token for a new device -> 201 {"id","token"}
//   GET    /devices/:id                               detail: inventory, what runs, latency, events
//   DELETE /devices/:id                               revoke its token and forget it
//   GET    /devices/:id/containers/:name/logs?tail=N  container.logs over MQTT
import { setTimeout as sleep } from 'node:timers/promises';
import { FeatherError, messageOf } from '../../shared/errors.js';
import { Topics } from '../../shared/protocol/topics.js';
import { intParam, type ApiContext } from './context.js';
import { readJsonObject } from './respond.js';
import type { Router } from './router.js';
import { deviceDetail, deviceSummary } from './views.js';

export interface IssuedDevice {
  id: string;
  token: string;
}

export function deviceRoutes(router: Router, api: ApiContext): void {
  const { ctx } = api;
  const { store } = ctx;

  router.add('GET', '/devices', () => ({ body: { items: store.listDevices().map((d) => deviceSummary(d, store)) } }));

  router.add('POST', '/devices', async ({ req }) => {
    const body = await readJsonObject(req);
    const id = body['id'];
    if (typeof id !== 'string' || id === '') throw new FeatherError('BAD_REQUEST', 'body must be {"id": "<device id>"} (and "rotate": true to replace an existing token)');
    if (body['rotate'] !== undefined && typeof body['rotate'] !== 'boolean') throw new FeatherError('BAD_REQUEST', 'rotate must be true or false');
    const active = store.activeCredentials(id).filter((c) => c.kind === 'device');
    if (active.length > 0 && body['rotate'] !== true) {
      throw new FeatherError('CONFLICT', `device ${id} already has a token; featherctl device add ${id} --rotate issues a new one (the old one stops working), featherctl device rm ${id} removes the device`);
    }
    const issued = await ctx.credentials.issue(id);
    const reply: IssuedDevice = { id: issued.identity, token: issued.token };
    return { status: 201, body: reply };
  });

  router.add('GET', '/devices/:id', ({ params }) => {
    const d = store.getDevice(params['id'] as string);
    if (d === undefined) throw new FeatherError('NOT_FOUND', `no device ${params['id'] ?? ''}; featherctl get devices lists them`);
    return { body: deviceDetail(d, store) };
  });

  router.add('DELETE', '/devices/:id', async ({ params }) => {
    const id = params['id'] as string;
    const known = store.getDevice(id) !== undefined;
    const tokens = store.activeCredentials(id).filter((c) => c.kind === 'device').length;
    if (!known && tokens === 0) throw new FeatherError('NOT_FOUND', `no device ${id}; featherctl get devices lists them`);
    const revoked = ctx.credentials.revoke(id); // the embedded broker closes its connections now
    // Its will (status offline, retained) comes when the broker closes the connection: let it land
    // before clearing, or it would be retained again after us.
    const deadline = Date.now() + 3000;
    while (store.getDevice(id)?.online === true && ctx.broker !== undefined && Date.now() < deadline) await sleep(25);
    let retainedCleared = false;
    if (ctx.mqtt.connected) {
      // Clear what the broker keeps for it, or the retained status would bring it back.
      try {
        await ctx.desired.clearDesired(id);
        const t = new Topics(ctx.config.topicPrefix, id);
        for (const topic of [t.status, t.inventory, t.reported]) await ctx.mqtt.publish(topic, '', { qos: 1, retain: true });
        await api.rpc.barrier(id); // the registry has seen the cleared topics before the row goes
        retainedCleared = true;
      } catch (e: unknown) {
        api.logger.warn('device.retained_not_cleared', { deviceId: id, error: messageOf(e), action: 'the device may show again as offline; delete it again' });
      }
    }
    store.deleteDevice(id);
    api.logger.info('device.removed', { deviceId: id, revoked, retainedCleared });
    await ctx.deployments.replan(`device ${id} removed`);
    return { body: { id, revoked, removed: known, retainedCleared } };
  });

  router.add('GET', '/devices/:id/containers/:name/logs', async ({ params, query }) => {
    const id = params['id'] as string;
    const name = params['name'] as string;
    const d = store.getDevice(id);
    if (d === undefined) throw new FeatherError('NOT_FOUND', `no device ${id}; featherctl get devices lists them`);
    if (!d.online) throw new FeatherError('CONFLICT', `device ${id} is offline${d.lastSeen > 0 ? ` (last seen ${new Date(d.lastSeen).toISOString()})` : ''}: logs are read from its agent; try again when it is online`);
    const tail = intParam(query, 'tail', 1, 10_000, 100);
    const timeoutMs = intParam(query, 'timeoutMs', 100, 120_000);
    const result = await api.rpc.call(id, 'container.logs', { name, tail }, timeoutMs === undefined ? {} : { timeoutMs });
    const lines = typeof result === 'object' && result !== null && Array.isArray((result as { lines?: unknown }).lines)
      ? ((result as { lines: unknown[] }).lines).map((l) => String(l))
      : [];
    return { body: { device: id, container: name, lines } };
  });
}
