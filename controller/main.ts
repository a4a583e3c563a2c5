#!/usr/bin/env node
// feather-controller [--config FILE] [--data-dir DIR] [--mqtt-port 1883] [--http-port 8080] [--broker URL]
// Runs until SIGTERM/SIGINT, then stops cleanly (devices keep running what they run).
// Logs are JSON lines on stderr (FEATHER_LOG_LEVEL=debug|info|warn|error).
import { parseArgs } from 'node:util';
import { messageOf } from '../shared/errors.js';
import { waitForStopSignal } from '../shared/process.js';
import { createLogger, type Logger } from '../shared/logging.js';
import { packageVersion } from '../shared/version.js';
import { loadControllerConfig } from './config.js';
import type { ExtensionFactory } from './core/context.js';
import { Controller } from './core/controller.js';

const USAGE = `usage: feather-controller [--config FILE] [--data-dir DIR] [--mqtt-port 1883] [--http-port 8080] [--broker URL]

  --config FILE     JSON config file (also FEATHER_CONTROLLER_CONFIG)
  --data-dir DIR    database and admin-token (default /var/lib/feather-controller)
  --mqtt-port N     embedded broker port (default 1883)
  --http-port N     HTTP API and /metrics port (default 8080)
  --broker URL      join this broker (mqtt://, mqtts://, ws://) instead of embedding one
  --version, --help
`;

/**
 * The HTTP API, found by convention so this file need not change when it lands:
 * controller/api/index.ts exporting `createApiExtension` (an ExtensionFactory).
 */
async function optionalModule(path: string, log: Logger): Promise<Record<string, unknown> | undefined> {
  try {
    const mod: unknown = await import(path);
    return typeof mod === 'object' && mod !== null ? (mod as Record<string, unknown>) : undefined;
  } catch (e: unknown) {
    const code = (e as { code?: unknown }).code;
    if (code === 'ERR_MODULE_NOT_FOUND' && messageOf(e).includes(path.replace('./', '/'))) return undefined;
    log.error('module.load_failed', { module: path, error: messageOf(e) });
    throw e;
  }
}

async function main(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        config: { type: 'string' },
        'data-dir': { type: 'string' },
        'mqtt-port': { type: 'string' },
        'http-port': { type: 'string' },
        broker: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean' },
      },
      strict: true,
    }));
  } catch (e: unknown) {
    process.stderr.write(`feather-controller: ${messageOf(e)}\n${USAGE}`);
    return 2;
  }
  if (values.help) { process.stdout.write(USAGE); return 0; }
  if (values.version) { process.stdout.write(`${packageVersion()}\n`); return 0; }
  const log = createLogger('controller');
  const num = (v: string | undefined): number | undefined => (v === undefined ? undefined : Number(v));
  let config;
  try {
    config = loadControllerConfig({
      file: values.config,
      overrides: {
        dataDir: values['data-dir'],
        'mqtt.port': num(values['mqtt-port']),
        'http.port': num(values['http-port']),
        'broker.url': values.broker,
      },
    });
  } catch (e: unknown) {
    process.stderr.write(`feather-controller: ${messageOf(e)}\n`);
    return 2;
  }
  process.on('unhandledRejection', (e: unknown) => log.error('unhandled.rejection', { error: messageOf(e) }));

  const api = await optionalModule('./api/index.js', log);
  const apiFactory = typeof api?.['createApiExtension'] === 'function' ? (api['createApiExtension'] as ExtensionFactory) : undefined;
  if (apiFactory === undefined) log.info('api.missing', { detail: 'no controller/api module: HTTP serves /metrics and /healthz only' });

  const controller = new Controller({ config, logger: log, extensions: apiFactory ? [apiFactory] : [] });
  try {
    await controller.start();
  } catch (e: unknown) {
    process.stderr.write(`feather-controller: ${messageOf(e)}\n`);
    return 1;
  }
  log.info('controller.signal', { signal: await waitForStopSignal() });
  await controller.stop();
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (e: unknown) => { process.stderr.write(`feather-controller: ${messageOf(e)}\n`); process.exitCode = 1; },
);
