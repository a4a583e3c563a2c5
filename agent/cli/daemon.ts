// feather-agent daemon: the fleet agent. Runs until SIGTERM/SIGINT; containers keep running.
import { parseArgs } from 'node:util';
import { loadAgentConfig } from '../../shared/config/agent.js';
import { createLogger } from '../../shared/logging.js';
import { messageOf } from '../../shared/errors.js';
import { waitForStopSignal } from '../../shared/process.js';
import { AgentDaemon } from '../daemon/daemon.js';
import type { CommandHandler } from './context.js';
import { requireRoot } from './open.js';

export const daemon: CommandHandler = async (argv, ctx) => {
  const { values } = parseArgs({
    args: argv,
    options: {
      broker: { type: 'string' },
      'device-id': { type: 'string' },
      'metrics-port': { type: 'string' },
      username: { type: 'string' },
      password: { type: 'string' },
      'telemetry-interval': { type: 'string' },
      'host-root': { type: 'string' },
    },
  });
  requireRoot('feather-agent daemon');
  const num = (v: string | undefined): number | undefined => (v === undefined ? undefined : Number(v));
  const config = loadAgentConfig({
    file: ctx.configFile,
    overrides: {
      dataDir: ctx.config.dataDir,
      'broker.url': values.broker,
      deviceId: values['device-id'],
      'metrics.port': num(values['metrics-port']),
      'broker.username': values.username,
      'broker.password': values.password,
      'telemetry.intervalS': num(values['telemetry-interval']),
      hostRoot: values['host-root'],
    },
  });
  const log = createLogger('agent');
  process.on('unhandledRejection', (e: unknown) => log.error('unhandled.rejection', { error: messageOf(e) }));
  const agent = new AgentDaemon(config, log);
  await agent.start();
  log.info('agent.signal', { signal: await waitForStopSignal() });
  await agent.stop();
  return 0;
};
