// featherctl apply | delete | rollout: changing deployments, and waiting for them.
import { readFile } from 'node:fs/promises';
import { FeatherError, errnoCode, messageOf } from '../../shared/errors.js';
import type { ApplyItem, RolloutReply, UndoReply } from '../api/deployments.js';
import type { BlobView } from '../api/fleet.js';
import type { DeploymentSummary } from '../api/views.js';
import { expectPositionals, flag, parseCount, parseDuration, str, usageError } from './args.js';
import type { CommandRun, CtlContext } from './context.js';
import { print } from './fleet.js';
import { serialize } from './render.js';
import { waitForDeployment, type Seen } from './wait.js';

const DEFAULT_WAIT = '5m';
const enc = encodeURIComponent;

async function readDeploymentFile(ctx: CtlContext, file: string): Promise<Buffer> {
  if (file === '-') return ctx.readStdin();
  try {
    return await readFile(file);
  } catch (e: unknown) {
    throw new FeatherError('BAD_REQUEST', `cannot read ${file}: ${errnoCode(e) === 'ENOENT' ? 'no such file' : messageOf(e)}`);
  }
}

/** Wait for each deployment at its revision; returns the exit code (0 when all are done). */
async function waitAll(ctx: CtlContext, targets: ReadonlyArray<{ name: string; revision: number }>): Promise<number> {
  const timeout = parseDuration(str(ctx.values, 'timeout') ?? DEFAULT_WAIT, '--timeout');
  const client = ctx.client();
  let code = 0;
  for (const t of targets) {
    const { outcome, last } = await waitForDeployment({
      poll: () => client.get<DeploymentSummary>(`/api/v1/deployments/${enc(t.name)}`),
      revision: t.revision,
      timeoutMs: timeout,
      progress: (line) => ctx.err(line),
      now: ctx.now,
      sleep: ctx.sleep,
    });
    if (outcome === 'done') {
      ctx.err(`deployment/${t.name} revision ${t.revision} is available`);
    } else {
      code = 1;
      const why = outcome === 'timeout' ? `not available after ${str(ctx.values, 'timeout') ?? DEFAULT_WAIT}` : describeFailure(last, t.revision);
      ctx.err(`featherctl: deployment/${t.name}: ${why}`);
    }
  }
  return code;
}

function describeFailure(d: Seen, revision: number): string {
  if (d.revision !== revision) return `revision ${d.revision} was applied while waiting for ${revision}`;
  if (d.rollout?.phase === 'RolledBack' || d.rollout?.phase === 'Halted') return d.rollout.message;
  return `${d.phase}: ${d.message}`;
}

function applyLine(i: ApplyItem): string {
  return `deployment/${i.name} ${i.action} (revision ${i.revision})`;
}

export const apply: CommandRun = async (ctx) => {
  expectPositionals(ctx.positionals, [], 'featherctl apply -f FILE [--wait]');
  const file = str(ctx.values, 'filename');
  if (file === undefined) throw usageError('apply needs -f FILE (a deployment in YAML or JSON; - reads stdin)');
  if (flag(ctx.values, 'wait')) parseDuration(str(ctx.values, 'timeout') ?? DEFAULT_WAIT, '--timeout');
  const body = await readDeploymentFile(ctx, file);
  const isJson = /^\s*[[{]/.test(body.toString('utf8', 0, Math.min(body.length, 64)).replace(/^\uFEFF/, ''));
  const { items } = await ctx.client().call<{ items: ApplyItem[] }>('POST', '/api/v1/deployments', {
    body, contentType: isJson ? 'application/json' : 'application/yaml', timeoutMs: 120_000,
  });
  print(ctx, items, () => items.map(applyLine).join('\n'));
  if (!flag(ctx.values, 'wait')) return 0;
  return waitAll(ctx, items.map((i) => ({ name: i.name, revision: i.revision })));
};

export const remove: CommandRun = async (ctx) => {
  const usage = 'featherctl delete deployment|blob NAME';
  const [kind, name] = expectPositionals(ctx.positionals, ['KIND', 'NAME'], usage);
  if (kind === 'blob' || kind === 'blobs') return removeBlob(ctx, name as string);
  if (kind !== 'deployment' && kind !== 'deployments' && kind !== 'deploy') throw usageError(`cannot delete "${kind ?? ''}": deployments and blobs only (featherctl device rm ID removes a device); usage: ${usage}`);
  const r = await ctx.client().call<{ name: string; deleted: boolean }>('DELETE', `/api/v1/deployments/${enc(name as string)}`, { timeoutMs: 120_000 });
  print(ctx, r, () => `deployment/${r.name} deleted`);
  return 0;
};

/** A blob by name, digest or unique digest prefix (12 hex digits as `get blobs` shows). */
async function removeBlob(ctx: CtlContext, ref: string): Promise<number> {
  const client = ctx.client();
  const { items } = await client.get<{ items: BlobView[] }>('/api/v1/blobs');
  const hex = ref.replace(/^sha256:/, '').toLowerCase();
  const matches = items.filter((b) => b.names.includes(ref) || (/^[0-9a-f]{6,64}$/.test(hex) && b.digest.startsWith(hex)));
  if (matches.length === 0) throw new FeatherError('NOT_FOUND', `no blob named or starting with ${ref}; featherctl get blobs lists them`);
  if (matches.length > 1) throw new FeatherError('BAD_REQUEST', `${ref} matches ${matches.length} blobs; give more of the digest`);
  const digest = (matches[0] as BlobView).digest;
  const r = await client.call<{ digest: string; deleted: boolean }>('DELETE', `/blobs/sha256/${digest}`);
  print(ctx, r, () => `blob/sha256:${r.digest} deleted`);
  return 0;
}

export const rollout: CommandRun = async (ctx) => {
  const usage = 'featherctl rollout status|undo NAME [--to-revision N] [--wait]';
  const [action, name] = expectPositionals(ctx.positionals, ['status|undo', 'NAME'], usage);
  const client = ctx.client();
  if (action === 'status') {
    if (str(ctx.values, 'to-revision') !== undefined) throw usageError('--to-revision goes with rollout undo');
    const r = await client.get<RolloutReply>(`/api/v1/deployments/${enc(name as string)}/rollout`);
    if (!flag(ctx.values, 'wait')) {
      print(ctx, r, () => statusText(r));
      return 0;
    }
    const code = await waitAll(ctx, [{ name: r.name, revision: r.revision }]);
    if (ctx.output !== 'table') ctx.out(serialize(await client.get<RolloutReply>(`/api/v1/deployments/${enc(r.name)}/rollout`), ctx.output) ?? '');
    return code;
  }
  if (action === 'undo') {
    const to = str(ctx.values, 'to-revision');
    const body = to === undefined ? {} : { toRevision: parseCount(to, '--to-revision', 1, Number.MAX_SAFE_INTEGER) };
    const r = await client.call<UndoReply>('POST', `/api/v1/deployments/${enc(name as string)}/rollout/undo`, { json: body, timeoutMs: 120_000 });
    print(ctx, r, () => `deployment/${r.name} rolled back to the spec of revision ${r.to} (now revision ${r.revision}, was ${r.from})`);
    if (!flag(ctx.values, 'wait')) return 0;
    return waitAll(ctx, [{ name: r.name, revision: r.revision }]);
  }
  throw usageError(`unknown rollout action "${action ?? ''}"; usage: ${usage}`);
};

function statusText(r: RolloutReply): string {
  const ro = r.rollout;
  const head = `deployment/${r.name} revision ${r.revision}: ${r.phase}, ${r.running}/${r.desired} running, ${r.updated} updated`;
  if (ro === null) return `${head}\nrollout: not planned yet`;
  const stable = ro.stable === undefined ? 'none' : String(ro.stable);
  return `${head}\nrollout: ${ro.phase} (stable revision ${stable}): ${ro.message}${ro.failureCount > 0 ? `; ${ro.failureCount} failures` : ''}`;
}
