// What a container may stack above its image, by the contract: the layers of a container.run
// command or a desired workload (agent/images/layers.ts pulls and extracts them). The agent checks
// them before it pulls anything, the controller before it publishes a desired state.
import { FeatherError } from '../errors.js';
import { parseSha256 } from '../digest.js';

/** One layer as container.run names it. */
export interface LayerRef {
  name: string;
  /** http(s):// or file:// */
  url: string;
  /** sha256 of the tarball as downloaded. */
  sha256: string;
}

/** How many layers one container may stack above its image (overlayfs takes a few dozen lowers). */
export const MAX_LAYERS = 16;

/** Refuse what overlayfs cannot stack: too many layers, a digest twice, the image's own digest. */
export function checkLayers(refs: readonly LayerRef[], imageSha256?: string): void {
  if (refs.length > MAX_LAYERS) throw new FeatherError('BAD_REQUEST', `${refs.length} layers are too many: at most ${MAX_LAYERS} can be stacked above an image`);
  const seen = new Map<string, string>();
  for (const [i, r] of refs.entries()) {
    const sha = parseSha256(r.sha256, `layers[${i}].sha256`);
    const first = seen.get(sha);
    if (first !== undefined) throw new FeatherError('BAD_REQUEST', `layers[${i}] (${r.name}) has the same sha256 as ${first}: a layer can be stacked once`);
    if (sha === imageSha256) throw new FeatherError('BAD_REQUEST', `layers[${i}] (${r.name}) is the image itself (same sha256): remove it from layers`);
    seen.set(sha, `layers[${i}] (${r.name})`);
  }
}
