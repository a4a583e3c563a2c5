// The agent's configuration: one convict schema, read from (in rising precedence)
// defaults, a JSON config file, FEATHER_* environment variables, then CLI flags.
import convict from 'convict';
import { hostname } from 'node:os';
import { existsSync } from 'node:fs';
import { FeatherError } from '../errors.js';

const schema = {
  deviceId: { doc: 'Device id used in MQTT topics', format: String, default: hostname(), env: 'FEATHER_DEVICE_ID' },
  dataDir: { doc: 'Where images, caches, models and containers live', format: String, default: '/var/lib/feather', env: 'FEATHER_DATA_DIR' },
  runDir: { doc: 'Per-container run directories (mounted at /run/feather inside; the statsd socket lives there)', format: String, default: '/run/feather', env: 'FEATHER_RUN_DIR' },
  shimPath: { doc: 'Path of the feather-shim binary (default: the one built in this package)', format: String, default: '', env: 'FEATHER_SHIM' },
  cgroupRoot: { doc: 'Root of the cgroup filesystem', format: String, default: '/sys/fs/cgroup', env: 'FEATHER_CGROUP_ROOT' },
  hostRoot: { doc: 'Root the hardware inventory reads from (tests point it at a fake tree)', format: String, default: '/', env: 'FEATHER_HOST_ROOT' },
  defaults: {
    memory: { doc: 'Default memory limit of a container', format: String, default: '128Mi', env: 'FEATHER_DEFAULT_MEMORY' },
    cpus: { doc: 'Default CPU quota in cores', format: Number, default: 0.5, env: 'FEATHER_DEFAULT_CPUS' },
    pids: { doc: 'Default pids limit', format: 'nat', default: 10, env: 'FEATHER_DEFAULT_PIDS' },
  },
  logMaxBytes: { doc: 'Size at which a container log is rotated (one older file kept)', format: 'nat', default: 1048576, env: 'FEATHER_LOG_MAX_BYTES' },
  broker: {
    url: { doc: 'MQTT broker URL (mqtt://, mqtts://, ws://)', format: String, default: 'mqtt://127.0.0.1:1883', env: 'FEATHER_BROKER_URL' },
    username: { doc: 'MQTT username', format: String, default: '', env: 'FEATHER_BROKER_USERNAME' },
    password: { doc: 'MQTT password', format: String, default: '', env: 'FEATHER_BROKER_PASSWORD', sensitive: true },
    ca: { doc: 'CA certificate file for mqtts://', format: String, default: '', env: 'FEATHER_BROKER_CA' },
    cert: { doc: 'Client certificate file for mqtts://', format: String, default: '', env: 'FEATHER_BROKER_CERT' },
    key: { doc: 'Client key file for mqtts://', format: String, default: '', env: 'FEATHER_BROKER_KEY' },
    protocolVersion: { doc: 'MQTT protocol version (4 = 3.1.1, 5)', format: [4, 5], default: 5, env: 'FEATHER_BROKER_PROTOCOL' },
  },
  topicPrefix: { doc: 'MQTT topic prefix', format: String, default: 'feather/v1', env: 'FEATHER_TOPIC_PREFIX' },
  maxPayloadBytes: { doc: 'Largest command payload accepted', format: 'nat', default: 262144, env: 'FEATHER_MAX_PAYLOAD' },
  metrics: {
    port: { doc: 'Prometheus metrics port (0 disables)', format: 'port', default: 9464, env: 'FEATHER_METRICS_PORT' },
    host: { doc: 'Metrics listen address', format: String, default: '0.0.0.0', env: 'FEATHER_METRICS_HOST' },
  },
  telemetry: {
    intervalS: { doc: 'Telemetry interval in seconds', format: Number, default: 10, env: 'FEATHER_TELEMETRY_INTERVAL' },
    encoding: { doc: 'Telemetry encoding', format: ['protobuf', 'json'], default: 'protobuf', env: 'FEATHER_TELEMETRY_ENCODING' },
  },
  labels: { doc: 'Device labels reported in the inventory', format: Object, default: {} as Record<string, string>, env: 'FEATHER_LABELS' },
};

export interface AgentConfig {
  deviceId: string; dataDir: string; runDir: string; shimPath: string; cgroupRoot: string; hostRoot: string;
  defaults: { memory: string; cpus: number; pids: number };
  logMaxBytes: number;
  broker: { url: string; username: string; password: string; ca: string; cert: string; key: string; protocolVersion: number };
  topicPrefix: string; maxPayloadBytes: number;
  metrics: { port: number; host: string };
  telemetry: { intervalS: number; encoding: 'protobuf' | 'json' };
  labels: Record<string, string>;
}

export interface LoadOptions {
  file?: string | undefined;
  /** Dotted keys set by CLI flags, applied last. */
  overrides?: Record<string, unknown>;
  env?: NodeJS.ProcessEnv;
}

/** Load and validate; a bad key throws BAD_REQUEST naming the key and the problem. */
export function loadAgentConfig(opts: LoadOptions = {}): AgentConfig {
  const conf = convict(schema, opts.env ? { env: opts.env } : undefined);
  const file = opts.file ?? (opts.env ?? process.env)['FEATHER_CONFIG'];
  if (file) {
    if (!existsSync(file)) throw new FeatherError('BAD_REQUEST', `config file ${file} does not exist`);
    try {
      conf.loadFile(file);
    } catch (e: unknown) {
      throw new FeatherError('BAD_REQUEST', `config file ${file}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  for (const [key, value] of Object.entries(opts.overrides ?? {})) {
    if (value === undefined) continue;
    try {
      conf.set(key as never, value as never);
    } catch (e: unknown) {
      throw new FeatherError('BAD_REQUEST', `config ${key}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  try {
    conf.validate({ allowed: 'strict' });
  } catch (e: unknown) {
    throw new FeatherError('BAD_REQUEST', `invalid configuration: ${e instanceof Error ? e.message : String(e)}`);
  }
  return conf.getProperties() as unknown as AgentConfig;
}
