// Container labels the reconciler writes and reads: which containers it owns, and the hash of
// the workload spec each was started from (a different hash means the spec changed: replace).
import { createHash } from 'node:crypto';
import type { ContainerInfo } from '../runtime/types.js';
import type { Workload } from '../../shared/protocol/desired.js';

/** Marks a container as started from the desired state; containers without it are never touched. */
export const OWNER_LABEL = 'feather.owner';
export const OWNER_DESIRED = 'desired';
/** sha256 of the workload spec the container was created from (specHash). */
export const SPEC_HASH_LABEL = 'feather.spec-hash';
/** The desired generation that created the container (informational). */
export const GENERATION_LABEL = 'feather.generation';

export function isOwned(c: Pick<ContainerInfo, 'labels'>): boolean {
  return c.labels[OWNER_LABEL] === OWNER_DESIRED;
}

export function ownerLabels(workload: Workload, generation: number): Record<string, string> {
  return {
    [OWNER_LABEL]: OWNER_DESIRED,
    [SPEC_HASH_LABEL]: specHash(workload),
    [GENERATION_LABEL]: String(generation),
  };
}

/**
 * Hash of a validated workload: JSON with sorted keys, so key order in the payload does not count,
 * while defaults are already filled in by validation ("restart" absent = "no").
 *
 * Layers count by their digests, in order (topmost first): a new digest replaces the container,
 * while a new url or name for the same digest stacks the same cache/<sha256>/ and does not. No
 * layers hash exactly as before layers existed, so containers started by an older agent are not
 * replaced by the upgrade.
 */
export function specHash(workload: Workload): string {
  const { layers, ...rest } = workload;
  const hashed = layers.length > 0 ? { ...rest, layers: layers.map((l) => l.sha256) } : rest;
  return createHash('sha256').update(canonicalJson(hashed)).digest('hex');
}

export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (typeof value === 'object' && value !== null) {
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value).sort()) {
      const v = (value as Record<string, unknown>)[key];
      if (v !== undefined) out[key] = sortKeys(v);
    }
    return out;
  }
  return value;
}
