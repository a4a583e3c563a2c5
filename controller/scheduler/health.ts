// Reported health per replica, indexed once per pass.
import type { Placement } from '../model/types.js';
import type { ReplicaHealth } from './types.js';

export type HealthIndex = Map<string, ReplicaHealth[]>;

export const healthKey = (deployment: string, replica: number): string => `${deployment}\0${replica}`;

export function indexHealth(health: readonly ReplicaHealth[]): HealthIndex {
  const index: HealthIndex = new Map();
  for (const h of health) {
    const k = healthKey(h.deployment, h.replica);
    const list = index.get(k);
    if (list) list.push(h); else index.set(k, [h]);
  }
  return index;
}

/** The health reported for exactly this placement (same device, same revision). */
export function healthOf(index: HealthIndex, p: Placement): ReplicaHealth | undefined {
  return index.get(healthKey(p.deployment, p.replica))?.find((h) => h.deviceId === p.deviceId && h.revision === p.revision);
}

/** Health of the replica's container on its device at any revision (the previous one while updating). */
export function anyHealthOn(index: HealthIndex, p: Placement): ReplicaHealth | undefined {
  return index.get(healthKey(p.deployment, p.replica))?.find((h) => h.deviceId === p.deviceId);
}
