// What the API's route modules share: the controller's context, the agent RPC, the blob store.
import { FeatherError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logging.js';
import type { BlobStore } from '../blobs/store.js';
import type { ControllerContext } from '../core/context.js';
import type { AgentRpc } from './rpc.js';

export interface ApiContext {
  ctx: ControllerContext;
  rpc: AgentRpc;
  blobs: BlobStore;
  /** Base URL handed out in blob URLs (FEATHER_CONTROLLER_PUBLIC_URL); default: the request's Host. */
  publicUrl: string | undefined;
  /** Build hooks (docs/scheduling.md, "Build hooks"): off unless enabled; timeout per hook run. */
  buildHooks?: { enabled: boolean; timeoutMs?: number } | undefined;
  logger: Logger;
}

/** An integer query parameter within [min, max], or `fallback` when absent. */
export function intParam(query: URLSearchParams, name: string, min: number, max: number, fallback: number): number;
export function intParam(query: URLSearchParams, name: string, min: number, max: number): number | undefined;
export function intParam(query: URLSearchParams, name: string, min: number, max: number, fallback?: number): number | undefined {
  const raw = query.get(name);
  if (raw === null || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new FeatherError('BAD_REQUEST', `query parameter ${name}=${raw} must be a whole number from ${min} to ${max}`);
  return n;
}

/** A boolean query parameter ("true"/"false"/"1"/"0"), or undefined when absent. */
export function boolParam(query: URLSearchParams, name: string): boolean | undefined {
  const raw = query.get(name);
  if (raw === null || raw === '') return undefined;
  if (raw === 'true' || raw === '1') return true;
  if (raw === 'false' || raw === '0') return false;
  throw new FeatherError('BAD_REQUEST', `query parameter ${name}=${raw} must be true or false`);
}
