// The cgroup backends' public surface: one explicit list of exports.
export type {
  CgroupManager, CgroupUsage, CgroupMode, CgroupBackend, CgroupController, DeviceRule, DeviceCgroupResult, DeviceFilter, DeviceFilterRule,
} from './types.js';
export { detectCgroups, layoutFromMountinfo, layoutFromTree, type CgroupLayout, type DetectOptions } from './detect.js';
export { V2Cgroups, V2_CONTROLLERS, type V2Controller, type V2Options } from './v2.js';
export { V1Cgroups, setMemoryV1, type V1Mounts, type V1Options } from './v1.js';
export { HybridCgroups } from './hybrid.js';
export { formatDeviceRule, formatDeviceFilterRule, toDeviceFilterRules } from './devices.js';
export { nodeCgroupFs, type CgroupFs } from './fs.js';
export { cpuQuotaUs, CPU_PERIOD_US, type BackendOptions } from './common.js';
