// The DeviceResolver the control plane (container.run) and the reconciler (desired workloads) use:
// CDI names in, RunRequest.devices out. Specs are read again on every call, so a spec a driver
// package installs (or the agent regenerates) counts from the next container on.
import { createLogger, type Logger } from '../../../shared/logging.js';
import type { DeviceResolver } from '../../control/executors.js';
import { toDeviceNodes } from './container.js';
import { CdiRegistry } from './registry.js';
import { resolveCdiDevices, type StatNode } from './resolve.js';

export interface CdiResolverOptions {
  /** Root the spec directories and the host paths in specs are under (config hostRoot). Default "/". */
  root?: string | undefined;
  /** Spec directories as on the host, lowest priority first. Default /etc/cdi, /var/run/cdi. */
  dirs?: readonly string[] | undefined;
  stat?: StatNode | undefined;
  exists?: ((path: string) => boolean) | undefined;
  logger?: Logger | undefined;
}

export function createCdiResolver(opts: CdiResolverOptions = {}): DeviceResolver {
  const log = opts.logger ?? createLogger('agent:cdi');
  return async (names) => {
    const registry = CdiRegistry.load({ root: opts.root, dirs: opts.dirs, logger: log });
    const { edits, warnings } = resolveCdiDevices(registry, names, { stat: opts.stat, exists: opts.exists });
    for (const message of warnings) log.warn('cdi.edit_not_applied', { requested: names, message });
    log.info('cdi.resolved', { requested: names, devices: edits.devices, nodes: edits.nodes.map((n) => n.containerPath), mounts: edits.mounts.length, env: Object.keys(edits.env) });
    return toDeviceNodes(edits);
  };
}
