// Builds the runtime objects a CLI command needs from its context.
import { FeatherError } from '../../shared/errors.js';
import { ImageStore } from '../images/store.js';
import { detectCgroups } from '../runtime/cgroups/detect.js';
import { ShimRuntime } from '../runtime/runtime.js';
import type { CliContext } from './context.js';

export function requireRoot(what: string): void {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new FeatherError('UNAUTHORIZED', `${what} must run as root: it creates namespaces, mounts and cgroups (try sudo)`);
  }
}

export function openImages(ctx: CliContext): ImageStore {
  return new ImageStore(ctx.paths);
}

export function openRuntime(ctx: CliContext, images: ImageStore = openImages(ctx)): ShimRuntime {
  return new ShimRuntime({
    paths: ctx.paths,
    cgroups: detectCgroups(ctx.config.cgroupRoot),
    images,
    defaults: ctx.config.defaults,
    logMaxBytes: ctx.config.logMaxBytes,
    runDir: ctx.config.runDir,
    shimPath: ctx.config.shimPath,
  });
}
