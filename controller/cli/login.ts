// featherctl login [--server URL] [--token TOKEN | --token-file FILE]: check that the controller
// accepts the token (GET /api/v1/info), then save server and token in the config file (0600).
// Without a token option it takes what featherctl would use anyway (FEATHERCTL_TOKEN, the
// config file, or on the controller's machine its admin-token file).
import { readFileSync } from 'node:fs';
import { FeatherError, messageOf } from '../../shared/errors.js';
import type { InfoReply } from '../api/fleet.js';
import { expectPositionals, str } from './args.js';
import { ApiClient } from './client.js';
import { writeConfigFile } from './config.js';
import type { CommandRun } from './context.js';
import { print } from './fleet.js';

export const login: CommandRun = async (ctx) => {
  expectPositionals(ctx.positionals, [], 'featherctl login [--server URL] [--token TOKEN | --token-file FILE]');
  const target = ctx.target();
  const tokenFile = str(ctx.values, 'token-file');
  if (tokenFile !== undefined && str(ctx.values, 'token') !== undefined) throw new FeatherError('BAD_REQUEST', 'give --token or --token-file, not both');
  let token = target.token;
  if (tokenFile !== undefined) {
    try {
      token = readFileSync(tokenFile, 'utf8').trim();
    } catch (e: unknown) {
      throw new FeatherError('BAD_REQUEST', `cannot read --token-file ${tokenFile}: ${messageOf(e)}`);
    }
  }
  if (token === undefined || token === '') throw new FeatherError('BAD_REQUEST', target.tokenNote ?? 'no token: pass --token TOKEN or --token-file FILE');
  const info = await new ApiClient(target.server, token, 'pass the admin token of this controller (<dataDir>/admin-token)').get<InfoReply>('/api/v1/info');
  writeConfigFile(target.configFile, { server: target.server, token });
  print(ctx, { server: target.server, configFile: target.configFile, version: info.version, devices: info.devices },
    () => `logged in to ${target.server} (feather-controller ${info.version}, ${info.devices.online} of ${info.devices.online + info.devices.offline} devices online); saved in ${target.configFile}`);
  return 0;
};
