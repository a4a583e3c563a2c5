// /api/v1/deployments: apply (a new revision when the spec changed), list, status, delete,
// and rollouts.
//   GET    /deployments                          summaries
//   POST   /deployments                          body: a deployment file (YAML or JSON; several
//                                                YAML documents or a JSON array apply several)
//   PUT    /deployments/:name                    body: one deployment named :name
//   GET    /deployments/:name                    detail: spec, replicas (device, state, p95), rollout
//   DELETE /deployments/:name
//   GET    /deployments/:name/rollout            the rollout's phase and progress
//   POST   /deployments/:name/rollout/undo       {"toRevision"?}: apply that revision's spec again
//                                                (as a new revision, like kubectl rollout undo)
import type { IncomingMessage } from 'node:http';
import { FeatherError } from '../../shared/errors.js';
import { ModelBuilder } from '../deployments/build-hook.js';
import { MAX_DEPLOYMENT_FILE_BYTES, parseDeployment, parseDeployments, validateDeployment } from '../deployments/spec.js';
import type { DeploymentSpec } from '../model/types.js';
import type { RolloutStatus } from '../scheduler/index.js';
import type { DeploymentRecord } from '../store/types.js';
import type { ApiContext } from './context.js';
import { readBody, readJsonObject, requestBase } from './respond.js';
import type { Router } from './router.js';
import { deploymentDetail, deploymentSummary } from './views.js';

export interface ApplyItem {
  name: string;
  revision: number;
  /** created: new deployment; configured: a new revision; unchanged: the same spec again. */
  action: 'created' | 'configured' | 'unchanged';
  phase: string;
  message: string;
}

export interface UndoReply extends ApplyItem {
  /** The revision in force before, and the one whose spec was applied again. */
  from: number;
  to: number;
}

export interface RolloutReply {
  name: string;
  revision: number;
  phase: string;
  message: string;
  rollout: RolloutStatus | null;
  desired: number;
  running: number;
  updated: number;
}

function notFound(name: string): FeatherError {
  return new FeatherError('NOT_FOUND', `no deployment ${name}; featherctl get deployments lists them`);
}

export function deploymentRoutes(router: Router, api: ApiContext): void {
  const { ctx } = api;
  const { store } = ctx;

  const get = (name: string): DeploymentRecord => {
    const d = store.getDeployment(name);
    if (d === undefined) throw notFound(name);
    return d;
  };

  const builder = new ModelBuilder({
    blobs: api.blobs, enabled: api.buildHooks?.enabled ?? false, logger: api.logger.child('build'),
    ...(api.buildHooks?.timeoutMs !== undefined ? { timeoutMs: api.buildHooks.timeoutMs } : {}),
  });

  /** Variants listed in model.build built by the buildHook, then the completed spec validated again. */
  const build = async <T extends DeploymentSpec>(spec: T, req: IncomingMessage): Promise<DeploymentSpec> => {
    if ((spec.model.build ?? []).length === 0) return spec;
    return validateDeployment(await builder.complete(spec, requestBase(req, api.publicUrl)));
  };

  const apply = async (spec: DeploymentSpec): Promise<ApplyItem> => {
    const r = await ctx.deployments.apply(spec);
    const d = r.deployment;
    return { name: d.name, revision: d.revision, action: r.created ? 'created' : r.changed ? 'configured' : 'unchanged', phase: d.phase, message: d.message };
  };

  router.add('GET', '/deployments', () => ({ body: { items: store.listDeployments().map((d) => deploymentSummary(d, store)) } }));

  router.add('POST', '/deployments', async ({ req }) => {
    const parsed = parseDeployments(await readBody(req, MAX_DEPLOYMENT_FILE_BYTES));
    // Every build first: a failing hook stores none of the file's deployments.
    const specs: DeploymentSpec[] = [];
    for (const spec of parsed) specs.push(await build(spec, req));
    const items: ApplyItem[] = [];
    for (const spec of specs) items.push(await apply(spec));
    return { status: items.some((i) => i.action === 'created') ? 201 : 200, body: { items } };
  });

  router.add('PUT', '/deployments/:name', async ({ req, params }) => {
    const spec = parseDeployment(await readBody(req, MAX_DEPLOYMENT_FILE_BYTES));
    if (spec.name !== params['name']) throw new FeatherError('BAD_REQUEST', `the file names deployment ${spec.name}, the URL ${params['name'] ?? ''}; they must match`);
    const item = await apply(await build(spec, req));
    return { status: item.action === 'created' ? 201 : 200, body: item };
  });

  router.add('GET', '/deployments/:name', ({ params }) => {
    const d = get(params['name'] as string);
    return { body: deploymentDetail(d, store, store.listRevisions(d.name)) };
  });

  router.add('DELETE', '/deployments/:name', async ({ params }) => {
    const name = params['name'] as string;
    if (!(await ctx.deployments.delete(name))) throw notFound(name);
    return { body: { name, deleted: true } };
  });

  router.add('GET', '/deployments/:name/rollout', ({ params }) => {
    const d = get(params['name'] as string);
    const s = deploymentSummary(d, store);
    const reply: RolloutReply = {
      name: d.name, revision: d.revision, phase: d.phase, message: s.message, rollout: d.rollout ?? null,
      desired: s.desired, running: s.running, updated: s.updated,
    };
    return { body: reply };
  });

  router.add('POST', '/deployments/:name/rollout/undo', async ({ req, params }) => {
    const d = get(params['name'] as string);
    const body = await readJsonObject(req);
    const wanted = body['toRevision'];
    if (wanted !== undefined && (typeof wanted !== 'number' || !Number.isSafeInteger(wanted) || wanted < 1)) {
      throw new FeatherError('BAD_REQUEST', 'toRevision must be a revision number (featherctl describe deployment NAME lists them)');
    }
    const revisions = store.listRevisions(d.name);
    const current = JSON.stringify(d.spec);
    let target;
    if (wanted !== undefined) {
      target = revisions.find((r) => r.revision === wanted);
      if (target === undefined) throw new FeatherError('NOT_FOUND', `deployment ${d.name} has no revision ${wanted}; it has ${revisions.map((r) => r.revision).join(', ')}`);
    } else {
      // The rollout's stable revision when it is another one, else the newest earlier revision that differs.
      const stable = d.rollout?.stable;
      target = stable !== undefined && stable !== d.revision ? revisions.find((r) => r.revision === stable) : undefined;
      target ??= [...revisions].reverse().find((r) => r.revision < d.revision && JSON.stringify(r.spec) !== current);
      if (target === undefined) throw new FeatherError('CONFLICT', `deployment ${d.name} has no earlier revision to go back to (revision ${d.revision} is its only spec)`);
    }
    if (JSON.stringify(target.spec) === current) {
      throw new FeatherError('CONFLICT', `revision ${target.revision} of ${d.name} has the spec of revision ${d.revision}, which is in force: nothing to undo`);
    }
    const item = await apply(target.spec);
    const reply: UndoReply = { ...item, from: d.revision, to: target.revision };
    return { body: reply };
  });
}
