import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { forEachLimit } from '../../shared/concurrency.js';

t.test('every item once, never more than the limit in flight, starts in order', async (t) => {
  const items = Array.from({ length: 50 }, (_v, i) => i);
  const started: number[] = [];
  let inFlight = 0;
  let peak = 0;
  await forEachLimit(items, 8, async (i) => {
    started.push(i);
    inFlight++;
    peak = Math.max(peak, inFlight);
    await sleep(i % 3);
    inFlight--;
  });
  t.same(started, items);
  t.equal(peak, 8);
});

t.test('fewer items than the limit, and none', async (t) => {
  const seen: string[] = [];
  await forEachLimit(['a', 'b'], 64, async (x) => { seen.push(x); });
  t.same(seen, ['a', 'b']);
  await forEachLimit([], 4, async () => { t.fail('not called'); });
});
