// The controller's configuration: one convict schema, read from (in rising precedence)
// defaults, a JSON config file (--config FILE or FEATHER_CONTROLLER_CONFIG),
// FEATHER_CONTROLLER_* environment variables, then CLI flags. Same pattern as the agent's
// (shared/config/agent.ts).
import convict from 'convict';
import { existsSync } from 'node:fs';
import { FeatherError, messageOf } from '../shared/errors.js';
import { DEFAULT_TOPIC_PREFIX } from '../shared/protocol/topics.js';

const schema = {
  dataDir: { doc: 'SQLite database and admin-token live here', format: String, default: '/var/lib/feather-controller', env: 'FEATHER_CONTROLLER_DATA_DIR' },
  topicPrefix: { doc: 'MQTT topic prefix', format: String, default: DEFAULT_TOPIC_PREFIX, env: 'FEATHER_CONTROLLER_TOPIC_PREFIX' },
  mqtt: {
    host: { doc: 'Embedded broker: listen address', format: String, default: '0.0.0.0', env: 'FEATHER_CONTROLLER_MQTT_HOST' },
    port: { doc: 'Embedded broker: MQTT (TCP) port', format: 'port', default: 1883, env: 'FEATHER_CONTROLLER_MQTT_PORT' },
    tls: {
      port: { doc: 'Embedded broker: mqtts port (listens only when cert and key are set)', format: 'port', default: 8883, env: 'FEATHER_CONTROLLER_MQTTS_PORT' },
      cert: { doc: 'Embedded broker: PEM certificate file for mqtts (empty: no mqtts listener)', format: String, default: '', env: 'FEATHER_CONTROLLER_MQTTS_CERT' },
      key: { doc: 'Embedded broker: PEM key file for mqtts', format: String, default: '', env: 'FEATHER_CONTROLLER_MQTTS_KEY' },
    },
    ws: {
      port: { doc: 'Embedded broker: MQTT over WebSocket port (0: no websocket listener)', format: 'port', default: 0, env: 'FEATHER_CONTROLLER_WS_PORT' },
    },
  },
  http: {
    host: { doc: 'HTTP API and /metrics listen address', format: String, default: '0.0.0.0', env: 'FEATHER_CONTROLLER_HTTP_HOST' },
    port: { doc: 'HTTP API and /metrics port', format: 'port', default: 8080, env: 'FEATHER_CONTROLLER_HTTP_PORT' },
  },
  broker: {
    url: { doc: 'External broker URL (mqtt://, mqtts://, ws://); empty: run the embedded broker', format: String, default: '', env: 'FEATHER_CONTROLLER_BROKER_URL' },
    username: { doc: 'Username of the controller on the broker', format: String, default: 'admin', env: 'FEATHER_CONTROLLER_BROKER_USERNAME' },
    password: { doc: 'Password on the external broker (default: the admin token)', format: String, default: '', env: 'FEATHER_CONTROLLER_BROKER_PASSWORD', sensitive: true },
    ca: { doc: 'CA certificate file for an mqtts:// external broker', format: String, default: '', env: 'FEATHER_CONTROLLER_BROKER_CA' },
    clientId: { doc: 'MQTT client id of the controller (one controller per id)', format: String, default: 'feather-controller', env: 'FEATHER_CONTROLLER_CLIENT_ID' },
  },
  offlineGraceS: { doc: 'A device offline this long has its replicas planned elsewhere', format: 'nat', default: 60, env: 'FEATHER_CONTROLLER_OFFLINE_GRACE' },
  eventsKept: { doc: 'Device events kept in the database (oldest pruned)', format: 'nat', default: 10000, env: 'FEATHER_CONTROLLER_EVENTS_KEPT' },
};

export interface ControllerConfig {
  dataDir: string;
  topicPrefix: string;
  mqtt: { host: string; port: number; tls: { port: number; cert: string; key: string }; ws: { port: number } };
  http: { host: string; port: number };
  broker: { url: string; username: string; password: string; ca: string; clientId: string };
  offlineGraceS: number;
  eventsKept: number;
}

export interface LoadControllerConfigOptions {
  file?: string | undefined;
  /** Dotted keys set by CLI flags, applied last; undefined values are skipped. */
  overrides?: Record<string, unknown>;
  env?: NodeJS.ProcessEnv;
}

/** Load and validate; a bad key throws BAD_REQUEST naming the key and the problem. */
export function loadControllerConfig(opts: LoadControllerConfigOptions = {}): ControllerConfig {
  const env = opts.env ?? process.env;
  const conf = convict(schema, { env });
  const file = opts.file ?? env['FEATHER_CONTROLLER_CONFIG'];
  if (file) {
    if (!existsSync(file)) throw new FeatherError('BAD_REQUEST', `config file ${file} does not exist`);
    try {
      conf.loadFile(file);
    } catch (e: unknown) {
      throw new FeatherError('BAD_REQUEST', `config file ${file}: ${messageOf(e)}`);
    }
  }
  for (const [key, value] of Object.entries(opts.overrides ?? {})) {
    if (value === undefined) continue;
    try {
      conf.set(key as never, value as never);
    } catch (e: unknown) {
      throw new FeatherError('BAD_REQUEST', `config ${key}: ${messageOf(e)}`);
    }
  }
  try {
    conf.validate({ allowed: 'strict' });
  } catch (e: unknown) {
    throw new FeatherError('BAD_REQUEST', `invalid configuration: ${messageOf(e)}`);
  }
  const config = conf.getProperties() as unknown as ControllerConfig;
  if ((config.mqtt.tls.cert === '') !== (config.mqtt.tls.key === '')) {
    throw new FeatherError('BAD_REQUEST', 'invalid configuration: mqtt.tls.cert and mqtt.tls.key go together; set both for mqtts, or neither');
  }
  if (config.broker.url !== '' && !/^(mqtts?|wss?):\/\//.test(config.broker.url)) {
    throw new FeatherError('BAD_REQUEST', `invalid configuration: broker.url "${config.broker.url}" must start with mqtt://, mqtts://, ws:// or wss://`);
  }
  return config;
}

/** True when the controller joins an external broker instead of running its own. */
export function isExternalBroker(config: ControllerConfig): boolean {
  return config.broker.url !== '';
}
