// featherctl's command line and configuration (controller/cli/args.ts, config.ts): where the
// command word is, global options on either side of it, strict options, -o, durations and
// counts; server and token precedence (flags, env, config file, local admin token).
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { expectPositionals, findCommand, parseCommandLine, parseCount, parseDuration } from '../../controller/cli/args.js';
import { defaultConfigFile, isLocalServer, normalizeServer, resolveTarget, writeConfigFile } from '../../controller/cli/config.js';
import { COMMANDS } from '../../controller/cli/main.js';
import { FeatherError } from '../../shared/errors.js';

const parse = (argv: string[]): ReturnType<typeof parseCommandLine> => parseCommandLine(argv, (c) => COMMANDS[c]?.options);

t.test('the command word and global options anywhere', async (t) => {
  t.equal(findCommand(['get', 'devices']), 0);
  t.equal(findCommand(['--server', 'http://x', '-o', 'json', 'get', 'devices']), 4);
  t.equal(findCommand(['--server=http://x', 'get']), 1);
  t.equal(findCommand(['--help']), -1);
  t.equal(findCommand([]), -1);
  const a = parse(['--server', 'http://c:8080', 'get', 'devices', '-o', 'yaml', '--token', 'T']);
  t.same([a.command, a.positionals, a.output, a.values['server'], a.values['token']], ['get', ['devices'], 'yaml', 'http://c:8080', 'T']);
  const b = parse(['apply', '-f', 'd.yaml', '--wait', '--timeout', '2m']);
  t.same([b.command, b.values['filename'], b.values['wait'], b.values['timeout'], b.output], ['apply', 'd.yaml', true, '2m', 'table']);
  const c = parse(['rollout', 'undo', 'det', '--to-revision', '3']);
  t.same([c.positionals, c.values['to-revision']], [['undo', 'det'], '3']);
  t.same(parse(['device', 'add', 'edge-01', '-o', 'json']).positionals, ['add', 'edge-01']);
  t.same(parse(['logs', 'edge-01', 'web', '--tail', '20']).values['tail'], '20');
  t.equal(parse(['--version']).command, undefined);
});

t.test('usage errors are BAD_REQUEST with one clear line', async (t) => {
  t.throws(() => parse(['frobnicate']), { code: 'BAD_REQUEST', message: /unknown command "frobnicate"/ });
  t.throws(() => parse(['get', 'devices', '--bogus']), { code: 'BAD_REQUEST', message: /--bogus.*featherctl get --help/ });
  t.throws(() => parse(['get', 'devices', '-o', 'xml']), { code: 'BAD_REQUEST', message: /-o xml: use one of table, json, yaml/ });
  t.throws(() => parse(['apply', '-f']), { code: 'BAD_REQUEST' });
  t.throws(() => parse(['get', '--wait']), { code: 'BAD_REQUEST' }, 'another command\'s option is unknown here');
  t.throws(() => expectPositionals(['a'], ['KIND', 'NAME'], 'featherctl describe device|deployment NAME'), { message: /missing NAME; usage: featherctl describe/ });
  t.throws(() => expectPositionals(['a', 'b', 'c'], ['KIND', 'NAME'], 'u'), { message: /unexpected argument "c"/ });
  t.same(expectPositionals(['devices'], ['KIND', 'NAME'], 'u', 1), ['devices']);
});

t.test('durations and counts', async (t) => {
  t.equal(parseDuration('90s'), 90_000);
  t.equal(parseDuration('5m'), 300_000);
  t.equal(parseDuration('1h'), 3_600_000);
  t.equal(parseDuration('250ms'), 250);
  t.equal(parseDuration('30'), 30_000, 'plain seconds');
  t.equal(parseDuration('1.5s'), 1500);
  for (const bad of ['', 'abc', '5 minutes', '-1s', '0s']) t.throws(() => parseDuration(bad), FeatherError, bad);
  t.equal(parseCount('20', '--tail', 1, 100), 20);
  for (const bad of ['0', '101', '1.5', 'x', '-3']) t.throws(() => parseCount(bad, '--tail', 1, 100), { code: 'BAD_REQUEST' }, bad);
});

t.test('server URLs', async (t) => {
  t.equal(normalizeServer('controller:8080'), 'http://controller:8080');
  t.equal(normalizeServer('https://ctl.example/'), 'https://ctl.example');
  t.equal(normalizeServer('http://10.0.0.5:8080/prefix/'), 'http://10.0.0.5:8080/prefix');
  t.throws(() => normalizeServer('ftp://x'), { code: 'BAD_REQUEST' });
  t.throws(() => normalizeServer('http://x?y=1'), { code: 'BAD_REQUEST' });
  t.ok(isLocalServer('http://127.0.0.1:8080'));
  t.ok(isLocalServer('http://localhost:8080'));
  t.ok(isLocalServer('http://[::1]:8080'));
  t.notOk(isLocalServer('http://10.0.0.5:8080'));
  t.equal(defaultConfigFile({}, '/home/op'), '/home/op/.config/feather/featherctl.json');
  t.equal(defaultConfigFile({ XDG_CONFIG_HOME: '/x' }, '/home/op'), '/x/feather/featherctl.json');
});

t.test('server and token: flags, then env, then the config file, then the local admin token', async (t) => {
  const files: Record<string, string> = {
    '/home/op/.config/feather/featherctl.json': JSON.stringify({ server: 'http://file:8080', token: 'from-file' }),
    '/var/lib/feather-controller/admin-token': 'local-admin\n',
    '/data/admin-token': 'other-admin\n',
    '/etc/feather/token': 'file-token\n',
    '/cfg/tokenfile.json': JSON.stringify({ server: 'http://127.0.0.1:9000', tokenFile: '/etc/feather/token' }),
    '/cfg/bad.json': '{nope',
  };
  const readFile = (p: string): string => {
    const v = files[p];
    if (v === undefined) throw Object.assign(new Error(`ENOENT: ${p}`), { code: 'ENOENT' });
    return v;
  };
  const r = (flags: Record<string, string>, env: NodeJS.ProcessEnv = {}): ReturnType<typeof resolveTarget> => resolveTarget({ flags, env, home: '/home/op', readFile });

  t.match(r({ server: 'http://flag:1', token: 'flag-token' }, { FEATHERCTL_SERVER: 'http://env:1', FEATHERCTL_TOKEN: 'env-token' }), { server: 'http://flag:1', token: 'flag-token', tokenSource: 'flag' });
  t.match(r({}, { FEATHERCTL_SERVER: 'http://env:1', FEATHERCTL_TOKEN: 'env-token' }), { server: 'http://env:1', token: 'env-token', tokenSource: 'env' });
  t.match(r({}), { server: 'http://file:8080', token: 'from-file', tokenSource: 'config', configFile: '/home/op/.config/feather/featherctl.json' });
  t.match(r({ config: '/cfg/tokenfile.json' }), { server: 'http://127.0.0.1:9000', token: 'file-token', tokenSource: 'config' });
  t.throws(() => r({ config: '/cfg/bad.json' }), { code: 'BAD_REQUEST', message: /not JSON/ });
  t.throws(() => r({ config: '/cfg/missing.json' }), { code: 'BAD_REQUEST', message: /does not exist/ });

  // No config file: the controller's own machine.
  const none = { FEATHERCTL_CONFIG: '/nowhere.json' };
  t.match(r({}, none), { server: 'http://127.0.0.1:8080', token: 'local-admin', tokenSource: 'admin-token-file' });
  t.match(r({}, { ...none, FEATHER_CONTROLLER_DATA_DIR: '/data' }), { token: 'other-admin' });
  const remote = r({ server: 'http://10.0.0.5:8080' }, none);
  t.match(remote, { token: undefined, tokenSource: 'none', tokenNote: /featherctl login --server http:\/\/10.0.0.5:8080/ }, 'the local admin token never goes to another machine');
  t.match(r({}, { ...none, FEATHER_CONTROLLER_DATA_DIR: '/empty' }), { token: undefined, tokenNote: /not readable/ });
});

t.test('the config file is written 0600 in a 0700 directory', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'featherctl-cfg-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'feather', 'featherctl.json');
  writeConfigFile(file, { server: 'http://c:8080', token: 'T' });
  t.same(JSON.parse(readFileSync(file, 'utf8')), { server: 'http://c:8080', token: 'T' });
  t.equal(statSync(file).mode & 0o777, 0o600);
  t.equal(statSync(join(dir, 'feather')).mode & 0o777, 0o700);
  t.match(resolveTarget({ flags: {}, env: { XDG_CONFIG_HOME: dir } }), { server: 'http://c:8080', token: 'T', tokenSource: 'config' });
});
