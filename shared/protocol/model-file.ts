// The name of a model file on the device: the agent stores a workload's model under it
// (models/<sha256>/<file name>, mounted at /models/<model name>/ in the container) and the
// controller tells the workload where to find it (FEATHER_MODEL_PATH), so both use this one rule.
import { basename } from 'node:path';

const MODEL_FILE_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** The file name a model is stored under: the URL's basename when it is a plain name, else "model". */
export function modelFileName(url: string): string {
  try {
    const base = basename(decodeURIComponent(new URL(url).pathname));
    return MODEL_FILE_RE.test(base) ? base : 'model';
  } catch {
    return 'model';
  }
}
