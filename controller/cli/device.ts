// featherctl device add ID [--rotate] | device rm ID.
// `add` prints the token alone on stdout (TOKEN=$(featherctl device add edge-01)); -o json gives
// {"id","token"}. The token is shown once: the controller keeps only hashes of it.
import type { IssuedDevice } from '../api/devices.js';
import { expectPositionals, flag, usageError } from './args.js';
import type { CommandRun } from './context.js';
import { print } from './fleet.js';

export const device: CommandRun = async (ctx) => {
  const usage = 'featherctl device add|rm ID [--rotate]';
  const [action, id] = expectPositionals(ctx.positionals, ['add|rm', 'ID'], usage);
  const client = ctx.client();
  if (action === 'add') {
    const r = await client.call<IssuedDevice>('POST', '/api/v1/devices', { json: { id, ...(flag(ctx.values, 'rotate') ? { rotate: true } : {}) } });
    print(ctx, { id: r.id, token: r.token }, () => r.token);
    if (ctx.output === 'table' && ctx.stderrTTY) {
      const host = new URL(client.server).hostname;
      ctx.err(`# on the device: feather-agent daemon --broker mqtt://${host}:1883 --device-id ${r.id} --username ${r.id} --password <the token above>`);
    }
    return 0;
  }
  if (action === 'rm' || action === 'remove' || action === 'delete') {
    if (flag(ctx.values, 'rotate')) throw usageError('--rotate goes with device add');
    const r = await client.call<{ id: string; revoked: number; removed: boolean }>('DELETE', `/api/v1/devices/${encodeURIComponent(id as string)}`, { timeoutMs: 60_000 });
    print(ctx, r, () => `device/${r.id} removed (${r.revoked} token${r.revoked === 1 ? '' : 's'} revoked)`);
    return 0;
  }
  throw usageError(`unknown device action "${action ?? ''}"; usage: ${usage}`);
};
