// featherctl mosquitto-files [--out DIR] [--mode 600] [--data-dir DIR [--topic-prefix P]]:
// the password file (every active token, Mosquitto's $7$ hashes) and the ACL file (the embedded
// broker's rules) for an external Mosquitto, written as DIR/passwd and DIR/acl (default
// /etc/mosquitto/feather, what deploy/mosquitto/mosquitto.conf reads). Then reload Mosquitto
// (SIGHUP). From the running controller's API, or with --data-dir straight from its database
// (the controller may be running or not).
import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FeatherError } from '../../shared/errors.js';
import { DEFAULT_TOPIC_PREFIX } from '../../shared/protocol/topics.js';
import { expectPositionals, str, usageError } from './args.js';
import type { CommandRun } from './context.js';
import { print } from './fleet.js';

export const DEFAULT_MOSQUITTO_DIR = '/etc/mosquitto/feather';

interface Files {
  passwd: string;
  acl: string;
  users: number;
}

async function fromDatabase(dataDir: string, topicPrefix: string): Promise<Files> {
  const { DATABASE_FILE, Store } = await import('../store/store.js');
  const { mosquittoAclFile, mosquittoPasswordFile } = await import('../broker/mosquitto.js');
  const file = join(dataDir, DATABASE_FILE);
  if (!existsSync(file)) throw new FeatherError('NOT_FOUND', `no controller database at ${file}: start feather-controller once with --data-dir ${dataDir}`);
  const store = Store.openFile(file);
  try {
    const passwd = mosquittoPasswordFile(store);
    return { passwd, acl: mosquittoAclFile(store, { topicPrefix }), users: countUsers(passwd) };
  } finally {
    store.close();
  }
}

function countUsers(passwd: string): number {
  return passwd.split('\n').filter((l) => l !== '' && !l.startsWith('#')).length;
}

function writeAtomic(path: string, text: string, mode: number): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, text, { mode });
  renameSync(tmp, path);
}

export const mosquittoFiles: CommandRun = async (ctx) => {
  expectPositionals(ctx.positionals, [], 'featherctl mosquitto-files [--out DIR]');
  const modeText = str(ctx.values, 'mode') ?? '600';
  if (!/^0?[0-7]{3}$/.test(modeText)) throw usageError(`--mode ${modeText}: use octal permissions such as 600 or 640`);
  const mode = parseInt(modeText, 8);
  const dataDir = str(ctx.values, 'data-dir');
  const prefix = str(ctx.values, 'topic-prefix');
  if (prefix !== undefined && dataDir === undefined) throw usageError('--topic-prefix goes with --data-dir (the API uses the controller\'s own prefix)');
  const files = dataDir !== undefined
    ? await fromDatabase(dataDir, prefix ?? DEFAULT_TOPIC_PREFIX)
    : await ctx.client().get<Files>('/api/v1/mosquitto-files');
  const out = str(ctx.values, 'out') ?? DEFAULT_MOSQUITTO_DIR;
  mkdirSync(out, { recursive: true, mode: 0o755 });
  const passwdFile = join(out, 'passwd');
  const aclFile = join(out, 'acl');
  writeAtomic(passwdFile, files.passwd, mode);
  writeAtomic(aclFile, files.acl, mode);
  print(ctx, { passwdFile, aclFile, users: files.users },
    () => `wrote ${passwdFile} (${files.users} users) and ${aclFile}; reload Mosquitto to apply them (kill -HUP <pid>, systemctl reload mosquitto)`);
  return 0;
};
