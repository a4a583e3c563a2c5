// Container Device Interface: specs read (spec.ts, registry.ts), names resolved to container
// edits (resolve.ts, resolver.ts), edits applied by the runtime (container.ts), and specs written
// for accelerators without vendor specs (generate.ts). docs/boards.md describes it for users.
import { messageOf } from '../../../shared/errors.js';
import { createLogger, type Logger } from '../../../shared/logging.js';
import type { DeviceResolver } from '../../control/executors.js';
import { detectAccelerators } from '../accelerators.js';
import { HostFs } from '../host-fs.js';
import { writeAcceleratorSpecs, type GenerateResult } from './generate.js';
import { createCdiResolver } from './resolver.js';

export { CdiRegistry, CDI_SPEC_DIRS } from './registry.js';
export { parseCdiSpec, validateCdiSpec, parseQualifiedName, CDI_MIN_VERSION, CDI_WRITE_VERSION } from './spec.js';
export { resolveCdiDevices, statNode } from './resolve.js';
export { createCdiResolver } from './resolver.js';
export { applyDeviceCgroup, containerDeviceEdits, deviceRules, toDeviceNodes, BASELINE_DEVICE_RULES, type AppliedDeviceCgroup } from './container.js';
export { runHostHooks, shimHooks, writeHookBundle, DEFAULT_HOOK_TIMEOUT_S } from './hooks.js';
export { acceleratorSpecs, generatedNames, writeAcceleratorSpecs, GENERATED_KINDS, GENERATED_SPEC_DIR } from './generate.js';
export { parseDeviceRules, DEVICE_RULES_ANNOTATION } from './rules.js';
export { acceleratorCdiNames } from './names.js';
export type * from './types.js';

/**
 * What the daemon does at start: write specs for the accelerators found under `root` that have
 * none, and return the resolver. The resolver writes them again (when they changed) before it
 * reads the specs, so an accelerator plugged in later, or a USB Coral moved to another port,
 * counts from the next container on. A failure to write (read-only /var/run) is logged once, not
 * fatal. `refresh` writes them again now (before the inventory names the CDI devices).
 */
export function startCdi(opts: { root: string; logger?: Logger | undefined }): { resolver: DeviceResolver; generated: GenerateResult | undefined; refresh: () => GenerateResult | undefined } {
  const log = opts.logger ?? createLogger('agent:cdi');
  let failed = false;
  const generate = (atStart: boolean): GenerateResult | undefined => {
    try {
      const accelerators = detectAccelerators(new HostFs(opts.root), undefined, log);
      const r = writeAcceleratorSpecs(accelerators, { root: opts.root, logger: atStart ? log : undefined });
      if (!atStart && r.written.length + r.removed.length > 0) log.info('cdi.specs_generated', { ...r });
      failed = false;
      return r;
    } catch (e: unknown) {
      if (!failed) log.warn('cdi.specs_not_generated', { root: opts.root, error: messageOf(e) });
      failed = true;
      return undefined;
    }
  };
  const generated = generate(true);
  const resolve = createCdiResolver({ root: opts.root, logger: log });
  const resolver: DeviceResolver = async (names) => {
    generate(false);
    return resolve(names);
  };
  return { resolver, generated, refresh: () => generate(false) };
}
