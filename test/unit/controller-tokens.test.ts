// Token hashing (controller/broker/tokens.ts) and the Mosquitto password and ACL files.
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { Credentials, ensureAdminTokenFile, readAdminToken } from '../../controller/broker/credentials.js';
import { mosquittoAclFile, mosquittoPasswordFile } from '../../controller/broker/mosquitto.js';
import { generateToken, hashToken, mosquittoHash, sameSecret, verifyMosquittoHash, verifyToken } from '../../controller/broker/tokens.js';
import { Store } from '../../controller/store/store.js';
import { configureLogging, createLogger } from '../../shared/logging.js';

configureLogging({ level: 'silent' });
const log = createLogger('test');

function tempDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'feather-ctl-tokens-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

t.test('scrypt hashes are salted and verify only the right token', async (t) => {
  const token = generateToken();
  t.match(token, /^[A-Za-z0-9_-]{43}$/);
  const h1 = await hashToken(token);
  const h2 = await hashToken(token);
  t.not(h1, h2, 'a new salt each time');
  t.match(h1, /^scrypt\$4096\$8\$1\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/);
  t.ok(await verifyToken(token, h1));
  t.ok(await verifyToken(token, h2));
  t.notOk(await verifyToken(token + 'x', h1));
  t.notOk(await verifyToken('', h1));
  for (const bad of ['', 'scrypt$', 'bcrypt$1$2$3$4$5', 'scrypt$0$8$1$AAAA$AAAA', 'scrypt$4096$8$1$$AAAA']) t.notOk(await verifyToken(token, bad), `malformed: ${bad}`);
  t.ok(sameSecret('abc', 'abc'));
  t.notOk(sameSecret('abc', 'abd'));
  t.notOk(sameSecret('abc', 'abcd'));
});

t.test('Mosquitto $7$ hashes: the format mosquitto_passwd writes, and its output verifies', async (t) => {
  // Written by `mosquitto_passwd -c -b pw alice s3cret` (Mosquitto 2.0.11).
  const fromMosquitto = '$7$101$3WLoNHHV6rQsp2po$RaGs04pH6U/tRRYTFgFIoBXgVL3yHXAqiZ+F1YeHHET5NTxiKA7KDLR3Wo2yppYM81bmuFFqCNOgo/BJ2FDxWQ==';
  t.ok(verifyMosquittoHash('s3cret', fromMosquitto));
  t.notOk(verifyMosquittoHash('s3cret!', fromMosquitto));
  const salt = Buffer.from('3WLoNHHV6rQsp2po', 'base64');
  t.equal(mosquittoHash('s3cret', { salt }), fromMosquitto, 'same salt and iterations give mosquitto_passwd\'s line');
  const ours = mosquittoHash('tok');
  t.match(ours, /^\$7\$101\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==$/);
  t.ok(verifyMosquittoHash('tok', ours));
  t.notOk(verifyMosquittoHash('tok', 'garbage'));
});

t.test('admin token file: created once with mode 0600, read back, mode repaired', async (t) => {
  const dir = tempDir(t);
  const first = ensureAdminTokenFile(dir);
  t.ok(first.created);
  t.equal(statSync(join(dir, 'admin-token')).mode & 0o777, 0o600);
  const again = ensureAdminTokenFile(dir);
  t.notOk(again.created);
  t.equal(again.token, first.token);
  t.equal(readAdminToken(dir), first.token);
  writeFileSync(join(dir, 'admin-token'), 'mine\n', { mode: 0o644 });
  t.equal(ensureAdminTokenFile(dir).token, 'mine');
  t.equal(statSync(join(dir, 'admin-token')).mode & 0o777, 0o600, 'a readable token file is made private again');
  t.throws(() => readAdminToken(join(dir, 'nope')), { code: 'NOT_FOUND' });
});

t.test('credentials: issue, verify, reissue revokes the old token, revoke, admin', async (t) => {
  const dir = tempDir(t);
  const store = Store.open(dir);
  t.teardown(() => store.close());
  const creds = new Credentials(store, log);
  const admin = await creds.initAdmin(dir);
  t.same(await creds.verify('admin', admin), { kind: 'admin' });
  t.equal(await creds.verify('admin', 'wrong'), undefined);
  t.ok(creds.verifyAdmin(admin));

  const revoked: string[] = [];
  creds.onRevoke((id) => revoked.push(id));
  const a1 = await creds.issue('edge-1');
  t.same(await creds.verify('edge-1', a1.token), { kind: 'device', deviceId: 'edge-1' });
  t.same(await creds.verify('edge-1', a1.token), { kind: 'device', deviceId: 'edge-1' }, 'cached the second time');
  t.equal(await creds.verify('edge-2', a1.token), undefined, 'a token is bound to its device');
  t.equal(await creds.verify('edge-1', 'x'), undefined);
  t.equal(await creds.verify('edge-1', undefined), undefined);
  t.ok(store.getDevice('edge-1'), 'device add creates the device');

  const a2 = await creds.issue('edge-1');
  t.equal(await creds.verify('edge-1', a1.token), undefined, 'the old token no longer works (even cached)');
  t.same(await creds.verify('edge-1', a2.token), { kind: 'device', deviceId: 'edge-1' });
  t.equal(creds.revoke('edge-1'), 1);
  t.equal(await creds.verify('edge-1', a2.token), undefined);
  t.same(revoked, ['edge-1', 'edge-1', 'edge-1']);
  await t.rejects(creds.issue('admin'), { code: 'BAD_REQUEST' });
  await t.rejects(creds.issue('a/b'), { code: 'BAD_REQUEST' });

  // A new controller on the same data dir keeps the admin token and its single credential.
  const again = new Credentials(store, log);
  t.equal(await again.initAdmin(dir), admin);
  t.equal(store.activeCredentials('admin').length, 1);
});

t.test('mosquitto password and ACL files from the store', async (t) => {
  const dir = tempDir(t);
  const store = Store.open(dir);
  t.teardown(() => store.close());
  const creds = new Credentials(store, log);
  const admin = await creds.initAdmin(dir);
  const a = await creds.issue('A');
  await creds.issue('B');
  creds.revoke('B');
  const pw = mosquittoPasswordFile(store);
  const lines = pw.split('\n').filter((l) => l !== '' && !l.startsWith('#'));
  t.equal(lines.length, 2, 'admin and A; B is revoked');
  const entry = (user: string): string => lines.find((l) => l.startsWith(`${user}:`))?.slice(user.length + 1) ?? '';
  t.ok(verifyMosquittoHash(admin, entry('admin')));
  t.ok(verifyMosquittoHash(a.token, entry('A')));
  const acl = mosquittoAclFile(store, { topicPrefix: 'feather/v1' });
  t.match(acl, /user admin\ntopic readwrite #\n/);
  t.match(acl, /user A\ntopic write feather\/v1\/dev\/A\/status\n/);
  t.match(acl, /topic write feather\/v1\/dev\/A\/reply\/#\n/);
  t.match(acl, /topic read feather\/v1\/dev\/A\/cmd\/#\ntopic read feather\/v1\/dev\/A\/desired\ntopic read feather\/v1\/fleet\/cmd\/#\n/);
  t.notMatch(acl, /user B/);
  t.notMatch(acl.split('user admin')[0] ?? '', /^topic /m, 'no rule applies to everyone');
});
