import t from 'tap';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, appendFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ReplyCache, UNKNOWN_OUTCOME_MESSAGE } from '../../agent/control/reply-cache.js';
import { configureLogging, createLogger } from '../../shared/logging.js';
import type { Reply } from '../../shared/protocol/types.js';

const warnings: string[] = [];
configureLogging({ level: 'warn', sink: (line) => warnings.push(line) });
const logger = createLogger('test');

const dir = mkdtempSync(join(tmpdir(), 'feather-replies-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const ok = (id: string, result: unknown = { n: id }): Reply => ({ requestId: id, ok: true, result });

t.test('runs once per requestId, also while the first run is still going', async (t) => {
  const cache = await ReplyCache.open({ file: undefined, logger });
  let runs = 0;
  let release: () => void = () => undefined;
  const gate = new Promise<void>((r) => { release = r; });
  const first = cache.once('r1', 'ping', false, async () => { runs++; await gate; return ok('r1'); });
  const second = cache.once('r1', 'ping', false, async () => { runs++; return ok('r1', 'other'); });
  release();
  const [a, b] = await Promise.all([first, second]);
  t.equal(runs, 1);
  t.equal(a.replayed, false);
  t.equal(b.replayed, true);
  t.same(b.stored.reply, a.stored.reply);
  const third = await cache.once('r1', 'ping', false, async () => { runs++; return ok('r1', 'x'); });
  t.equal(third.replayed, true);
  t.equal(runs, 1);
});

t.test('bounded: the oldest replies go first', async (t) => {
  const cache = await ReplyCache.open({ file: undefined, logger, capacity: 3 });
  for (const id of ['a', 'b', 'c', 'd']) await cache.once(id, 'ping', false, async () => ok(id));
  t.equal(cache.size, 3);
  t.equal(cache.get('a'), undefined);
  t.ok(cache.get('d'));
  const small = await ReplyCache.open({ file: undefined, logger, maxBytes: 400 });
  await small.once('big', 'container.logs', false, async () => ok('big', { lines: ['x'.repeat(200)] }));
  t.equal(small.get('big'), undefined, 'a reply above a quarter of maxBytes is not kept');
});

t.test('survives a restart; a command cut short by one is not run again', async (t) => {
  const file = join(dir, 'a', 'replies.jsonl');
  const c1 = await ReplyCache.open({ file, logger });
  await c1.once('r1', 'container.run', true, async () => ok('r1', { name: 'web1', pid: 7, startedAt: 1 }));
  // A mutating command whose reply never made it to disk (the agent died while it ran).
  const never = c1.once('r2', 'container.stop', true, () => new Promise<Reply>(() => undefined));
  void never;
  await c1.close();

  const c2 = await ReplyCache.open({ file, logger });
  let runs = 0;
  const r1 = await c2.once('r1', 'container.run', true, async () => { runs++; return ok('r1'); });
  t.equal(runs, 0);
  t.same(r1.stored.reply, ok('r1', { name: 'web1', pid: 7, startedAt: 1 }));
  const r2 = await c2.once('r2', 'container.stop', true, async () => { runs++; return ok('r2'); });
  t.equal(runs, 0, 'not executed a second time');
  t.same(r2.stored.reply, { requestId: 'r2', ok: false, error: { code: 'INTERNAL', message: UNKNOWN_OUTCOME_MESSAGE } });
  await c2.close();
  const lines = readFileSync(file, 'utf8').trim().split('\n');
  t.equal(lines.length, 2, 'rewritten compactly at open');
});

t.test('a torn last line is dropped, other corruption discards the file with a warning', async (t) => {
  const file = join(dir, 'b', 'replies.jsonl');
  const c1 = await ReplyCache.open({ file, logger });
  await c1.once('r1', 'ping', false, async () => ok('r1'));
  await c1.close();
  appendFileSync(file, '{"id":"r2","reply":{"requ');
  warnings.length = 0;
  const c2 = await ReplyCache.open({ file, logger });
  t.ok(c2.get('r1'));
  t.match(warnings.join('\n'), /reply_cache.torn_line/);
  await c2.close();

  writeFileSync(file, 'garbage\n{"id":"r1","reply":{"requestId":"r1","ok":true,"result":{}}}\n');
  warnings.length = 0;
  const c3 = await ReplyCache.open({ file, logger });
  t.equal(c3.size, 0);
  t.match(warnings.join('\n'), /reply_cache.corrupt/);
  t.ok(existsSync(`${file}.corrupt`), 'kept aside for a look');
  await c3.once('r9', 'ping', false, async () => ok('r9'));
  await c3.close();
  const c4 = await ReplyCache.open({ file, logger });
  t.ok(c4.get('r9'), 'works normally afterwards');
  await c4.close();
});

t.test('the log is compacted as it grows', async (t) => {
  const file = join(dir, 'c', 'replies.jsonl');
  const c = await ReplyCache.open({ file, logger, capacity: 10 });
  for (let i = 0; i < 100; i++) await c.once(`r${i}`, 'ping', false, async () => ok(`r${i}`));
  await c.close();
  const lines = readFileSync(file, 'utf8').trim().split('\n');
  t.ok(lines.length <= 2 * 10 + 17, `${lines.length} lines for 10 live entries`);
  const again = await ReplyCache.open({ file, logger, capacity: 10 });
  t.equal(again.size, 10);
  t.ok(again.get('r99'));
  t.equal(again.get('r89'), undefined);
  await again.close();
});

t.test('an unwritable place degrades to memory with one warning', async (t) => {
  const blocker = join(dir, 'file-not-dir');
  writeFileSync(blocker, 'x');
  warnings.length = 0;
  const c = await ReplyCache.open({ file: join(blocker, 'replies.jsonl'), logger });
  const r = await c.once('r1', 'ping', false, async () => ok('r1'));
  t.equal(r.replayed, false);
  t.ok(c.get('r1'));
  t.match(warnings.join('\n'), /reply_cache.write_failed/);
  await c.close();
});
