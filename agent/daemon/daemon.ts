// feather-agent daemon: wires the runtime, images, control plane, reconciler and telemetry
// into one process. Containers outlive it: stop() leaves them running.
import { join } from 'node:path';
import { Registry } from 'prom-client';
import type { AgentConfig } from '../../shared/config/agent.js';
import { messageOf } from '../../shared/errors.js';
import { createLogger, type Logger } from '../../shared/logging.js';
import { startControlPlane, type ControlPlane } from '../control/index.js';
import { closeGpuMemory } from '../devices/gpu-memory.js';
import { readInventory } from '../devices/inventory.js';
import { startCdi } from '../devices/cdi/index.js';
import { DataPaths } from '../paths.js';
import { Reconciler } from '../reconcile/index.js';
import { detectCgroups } from '../runtime/cgroups/detect.js';
import { ShimRuntime } from '../runtime/runtime.js';
import { TelemetryService } from '../telemetry/service.js';
import { acquireDaemonLock, type DaemonLock } from './lock.js';
import { MeteredImageStore } from './metered-images.js';


export class AgentDaemon {
  readonly log: Logger;
  readonly paths: DataPaths;
  readonly images: MeteredImageStore;
  readonly runtime: ShimRuntime;
  readonly registry = new Registry();
  private lock: DaemonLock | undefined;
  private plane: ControlPlane | undefined;
  private reconciler: Reconciler | undefined;
  private telemetry: TelemetryService | undefined;
  private readonly unsubscribers: (() => void)[] = [];

  constructor(readonly config: AgentConfig, logger?: Logger) {
    this.log = logger ?? createLogger('agent');
    this.paths = new DataPaths(config.dataDir);
    this.images = new MeteredImageStore(this.paths, { logger: this.log.child('images') });
    const cgroups = detectCgroups(config.cgroupRoot, { log: this.log.child('cgroups') });
    this.runtime = new ShimRuntime({
      paths: this.paths, cgroups, images: this.images, defaults: config.defaults,
      logMaxBytes: config.logMaxBytes, runDir: config.runDir, shimPath: config.shimPath, logger: this.log.child('runtime'),
    });
  }

  async start(): Promise<void> {
    this.lock = acquireDaemonLock(join(this.config.dataDir, 'agent.pid'));
    try {
      await this.startParts();
    } catch (e: unknown) {
      await this.stop();
      throw e;
    }
  }

  private async startParts(): Promise<void> {
    const { config } = this;
    // What a SIGKILLed agent or shim left: reap dead containers, orphan cgroups, temp files.
    // Best effort: a cgroup it cannot remove (one still holding processes, e.g. a container of
    // another data dir on this host) must not keep the agent from starting.
    const gc = await this.runtime.gc().catch((e: unknown) => {
      this.log.warn('runtime.gc_failed', { error: messageOf(e) });
      return { reaped: [] as string[] };
    });
    await this.images.gc({ inUseBy: (sha) => this.runtime.containersUsing(sha) }).catch((e: unknown) => this.log.warn('images.gc_failed', { error: e }));
    this.log.info('agent.starting', { deviceId: config.deviceId, dataDir: config.dataDir, broker: config.broker.url, reaped: gc.reaped });

    let plane: ControlPlane | undefined;
    const telemetry = new TelemetryService({
      config, registry: this.registry, runtime: this.runtime,
      // The content type is an MQTT 5 property (dropped under 3.1.1), not a top-level option.
      publish: (topic, payload, opts) => plane
        ? plane.publish(topic, payload, { qos: opts.qos, properties: { contentType: opts.contentType }, whenOffline: 'drop' })
        : Promise.resolve(),
      topic: `${config.topicPrefix}/dev/${config.deviceId}/telemetry`,
      mqttConnected: () => plane?.connected ?? false,
      logger: this.log.child('telemetry'),
    });
    this.telemetry = telemetry;
    this.images.onPullFinished = (r) => telemetry.metrics.pullFinished(r);
    this.runtime.setHooks({
      // The runtime mounts <runDir>/containers/<name>/ at /run/feather; the socket goes in it.
      beforeStart: (c) => {
        telemetry.containerStarting(c.name, c.userns ? { uid: c.userns.uid, gid: c.userns.gid } : undefined);
        return [];
      },
      afterRemove: (name) => telemetry.containerRemoved(name),
    });
    // Containers that kept running while the agent was down get their sockets back.
    for (const c of this.runtime.list()) telemetry.containerStarting(c.name);
    await telemetry.start();

    // CDI: specs for accelerators without vendor specs, and the resolver for container.run and desired workloads.
    const { resolver: devices, refresh: refreshCdi } = startCdi({ root: config.hostRoot, logger: this.log.child('cdi') });
    // The inventory names each accelerator's CDI devices (the controller puts them in desired
    // workloads): read after our specs are written again, so they are among them.
    const inventory = (): unknown => {
      refreshCdi();
      return readInventory({
        deviceId: config.deviceId, dataDir: config.dataDir, hostRoot: config.hostRoot, labels: config.labels,
        cgroup: this.runtime.cgroupMode === 'v2' ? 'v2' : 'v1', cdi: true, logger: this.log.child('inventory'),
      });
    };
    plane = await startControlPlane({
      config, runtime: this.runtime, images: this.images, inventory, devices,
      reported: () => this.reconciler?.reported(),
      logger: this.log.child('control'),
      onCommand: (r) => telemetry.metrics.commandHandled(r.verb, r.outcome),
    });
    this.plane = plane;
    this.unsubscribers.push(plane.onConnectionChange((up) => telemetry.metrics.setMqttConnected(up)));

    const reconciler = new Reconciler({
      runtime: this.runtime, images: this.images, dataPaths: this.paths, resolveDevices: devices,
      publishReported: (doc) => plane?.publishReported(doc),
      publishEvent: (type, body) => plane?.events.publish(type, body),
      logger: this.log.child('reconcile'),
    });
    this.reconciler = reconciler;
    reconciler.start();
    this.unsubscribers.push(plane.onDesired((payload) => { reconciler.setDesired(payload.length === 0 ? null : payload); }));
    this.log.info('agent.started', { deviceId: config.deviceId, metricsPort: telemetry.http?.address()?.port });
  }

  /** Stops the agent; containers keep running and are re-adopted by the next start. */
  async stop(): Promise<void> {
    for (const u of this.unsubscribers.splice(0)) u();
    await this.reconciler?.stop().catch((e: unknown) => this.log.warn('reconcile.stop_failed', { error: e }));
    await this.plane?.stop().catch((e: unknown) => this.log.warn('control.stop_failed', { error: e }));
    await this.telemetry?.stop().catch((e: unknown) => this.log.warn('telemetry.stop_failed', { error: e }));
    closeGpuMemory(); // the NVML session, if one was opened
    this.lock?.release();
    this.lock = undefined;
    this.log.info('agent.stopped', {});
  }

  get metricsAddress(): { host: string; port: number } | undefined {
    return this.telemetry?.http?.address();
  }
}
