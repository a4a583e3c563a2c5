// What a replica runs on a device of a given shape (architecture + accelerator kinds): the runtime
// image variant for the architecture, the accelerator ranked highest in the deployment's
// preference list that the device has and the model has a variant for, and that variant's
// precision. Pure; the scheduler memoizes it per (revision, shape).
import type { AcceleratorKind, Arch, DeploymentSpec, ModelVariant, Precision, RuntimeVariant } from '../model/types.js';

/**
 * Precision by accelerator, best first: int8 for Edge TPU and NPU, fp16 for GPUs, fp32 for CPUs.
 * The first one the deployment has a variant for wins, so a deployment "says otherwise" by
 * offering only another precision for that accelerator.
 */
export const PRECISION_ORDER: Readonly<Record<AcceleratorKind, readonly Precision[]>> = {
  edgetpu: ['int8', 'fp16', 'fp32'],
  npu: ['int8', 'fp16', 'fp32'],
  tensorrt: ['fp16', 'fp32', 'int8'],
  cuda: ['fp16', 'fp32', 'int8'],
  gpu: ['fp16', 'fp32', 'int8'],
  cpu: ['fp32', 'int8', 'fp16'],
};

export interface Choice {
  ok: true;
  accelerator: AcceleratorKind;
  precision: Precision;
  /** Index of the accelerator in the preference list (0 = most preferred). */
  rank: number;
  model: ModelVariant;
  runtime: RuntimeVariant;
}

export interface Rejection {
  ok: false;
  kind: 'arch' | 'accelerator';
  /** The same for every device rejected this way (counted in unschedulable reasons). */
  reason: string;
  /** With this device's particulars. */
  detail: string;
}

/** Every device can run on its CPU; `cpu` in a preference list is the fallback on any device. */
export function deviceKinds(accelerators: readonly { kind: string }[]): Set<AcceleratorKind> {
  const kinds = new Set<AcceleratorKind>(['cpu']);
  for (const a of accelerators) kinds.add(a.kind as AcceleratorKind);
  return kinds;
}

export function shapeKey(arch: Arch, kinds: ReadonlySet<AcceleratorKind>): string {
  return `${arch}|${[...kinds].sort().join(',')}`;
}

/** The model variant for an accelerator at the precision PRECISION_ORDER prefers, if any. */
export function pickVariant(spec: DeploymentSpec, accelerator: AcceleratorKind): ModelVariant | undefined {
  for (const precision of PRECISION_ORDER[accelerator]) {
    const v = spec.model.variants.find((m) => m.accelerator === accelerator && m.precision === precision);
    if (v) return v;
  }
  return undefined;
}

export function choose(spec: DeploymentSpec, arch: Arch, kinds: ReadonlySet<AcceleratorKind>): Choice | Rejection {
  const runtime = spec.runtime.variants.find((v) => v.arch === arch);
  if (!runtime) {
    const reason = `no runtime image for ${arch}`;
    return { ok: false, kind: 'arch', reason, detail: `${reason} (images exist for ${spec.runtime.variants.map((v) => v.arch).join(', ')})` };
  }
  const prefs = spec.accelerators.length > 0 ? spec.accelerators : ['cpu' as const];
  for (const [rank, accelerator] of prefs.entries()) {
    if (!kinds.has(accelerator)) continue;
    const model = pickVariant(spec, accelerator);
    if (model) return { ok: true, accelerator, precision: model.precision, rank, model, runtime };
  }
  const reason = 'no accelerator on the preference list with a model variant';
  return { ok: false, kind: 'accelerator', reason, detail: `${reason} (the device has ${[...kinds].sort().join(', ')})` };
}

/** Whether a placement's accelerator and precision are still valid for `spec` on a device with `kinds`. */
export function stillValid(spec: DeploymentSpec, kinds: ReadonlySet<AcceleratorKind>, accelerator: AcceleratorKind, precision: Precision): { rank: number; model: ModelVariant } | undefined {
  const rank = spec.accelerators.indexOf(accelerator);
  if (rank < 0 || !kinds.has(accelerator)) return undefined;
  const model = spec.model.variants.find((m) => m.accelerator === accelerator && m.precision === precision);
  return model ? { rank, model } : undefined;
}
