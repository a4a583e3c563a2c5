// <dataDir>/desired.json: the last valid desired payload and the generation reached, so an agent
// that restarts without a broker still reconciles to what it was last told. Written atomically
// (temp file, fsync, rename): a reader sees the old file or the new one, never half of one.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../../shared/logging.js';
import { messageOf } from '../../shared/errors.js';
import type { DataPaths } from '../paths.js';
import { readJson, writeFileAtomic } from '../runtime/state.js';
import { nothingDesired, validateDesired, type DesiredState } from '../../shared/protocol/desired.js';

export interface PersistedDesired {
  version: 1;
  /** The payload as decoded (contract form), or null for an empty one. */
  payload: unknown;
  /** Generation of the last desired state fully applied. */
  reached: number;
  savedAt: number;
}

export function desiredFile(paths: DataPaths): string {
  return join(paths.root, 'desired.json');
}

export interface LoadedDesired {
  /** undefined when nothing was saved or the file is unusable: the desired state is unknown. */
  desired: DesiredState | undefined;
  payload: unknown;
  reached: number;
}

export function loadDesired(paths: DataPaths, log: Logger): LoadedDesired {
  const file = desiredFile(paths);
  let saved: PersistedDesired | undefined;
  try {
    saved = readJson<PersistedDesired>(file, 'desired state');
  } catch (e: unknown) {
    log.warn('desired.load.failed', { file, error: messageOf(e) });
    return { desired: undefined, payload: null, reached: 0 };
  }
  if (!saved) return { desired: undefined, payload: null, reached: 0 };
  const reached = Number.isSafeInteger(saved.reached) && saved.reached >= 0 ? saved.reached : 0;
  try {
    const desired = saved.payload === null ? nothingDesired() : validateDesired(saved.payload);
    return { desired, payload: saved.payload, reached };
  } catch (e: unknown) {
    // Unknown beats wrong: an empty desired state would stop every owned container.
    log.warn('desired.load.invalid', { file, error: messageOf(e) });
    return { desired: undefined, payload: null, reached };
  }
}

export function saveDesired(paths: DataPaths, payload: unknown, reached: number): void {
  mkdirSync(paths.root, { recursive: true });
  const doc: PersistedDesired = { version: 1, payload, reached, savedAt: Date.now() };
  writeFileAtomic(desiredFile(paths), JSON.stringify(doc, null, 2) + '\n');
}
