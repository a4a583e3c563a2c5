// Single flight: shared work, failures not cached, aborts per caller (agent/images/singleflight.ts).
import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { SingleFlight } from '../../agent/images/singleflight.js';

t.test('concurrent callers share one run; a later call runs again', async (t) => {
  const sf = new SingleFlight<number>();
  let runs = 0;
  const work = async (): Promise<number> => { runs++; await sleep(20); return runs; };
  const [a, b] = await Promise.all([sf.run('k', work), sf.run('k', work)]);
  t.same([a, b], [{ value: 1, shared: false }, { value: 1, shared: true }]);
  t.notOk(sf.inFlight('k'));
  t.same(await sf.run('k', work), { value: 2, shared: false });
  t.same((await Promise.all([sf.run('x', work), sf.run('y', work)])).map((r) => r.shared), [false, false], 'keys are separate');
});

t.test('a failure reaches every waiter and is not cached', async (t) => {
  const sf = new SingleFlight<string>();
  let calls = 0;
  const failing = async (): Promise<string> => { calls++; await sleep(5); throw new Error('boom'); };
  const results = await Promise.allSettled([sf.run('k', failing), sf.run('k', failing)]);
  t.same(results.map((r) => r.status), ['rejected', 'rejected']);
  t.equal(calls, 1);
  t.same(await sf.run('k', async () => 'ok'), { value: 'ok', shared: false });
});

t.test('one caller aborting leaves the work running for the others', async (t) => {
  const sf = new SingleFlight<string>();
  let workSignal: AbortSignal | undefined;
  const work = async (signal: AbortSignal): Promise<string> => { workSignal = signal; await sleep(50); return 'done'; };
  const ac = new AbortController();
  const first = sf.run('k', work, ac.signal);
  const second = sf.run('k', work);
  ac.abort(new Error('caller went away'));
  await t.rejects(first, { message: 'caller went away' });
  t.same(await second, { value: 'done', shared: true });
  t.equal(workSignal?.aborted, false);
});

t.test('the work is aborted when every caller has gone', async (t) => {
  const sf = new SingleFlight<string>();
  let aborted = false;
  const work = (signal: AbortSignal): Promise<string> => new Promise((_resolve, reject) => {
    signal.addEventListener('abort', () => { aborted = true; reject(new Error('stopped')); });
  });
  const a = new AbortController();
  const b = new AbortController();
  const p1 = sf.run('k', work, a.signal);
  const p2 = sf.run('k', work, b.signal);
  a.abort();
  await t.rejects(p1);
  t.equal(aborted, false, 'one waiter is left');
  b.abort();
  await t.rejects(p2);
  await sleep(1);
  t.equal(aborted, true);
  t.notOk(sf.inFlight('k'));
});
