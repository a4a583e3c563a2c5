import t from 'tap';
import { setImmediate as tick } from 'node:timers/promises';
import { SingleFlightRunner, backoffMs } from '../../agent/reconcile/runner.js';

/** A promise with its resolve exposed. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => { open = resolve; });
  return { promise, open };
}

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 10_000; i++) {
    if (cond()) return;
    await tick();
  }
  throw new Error(`timed out waiting for ${what}`);
}

t.test('one run at a time; triggers during a run coalesce into one more run', async (t) => {
  let active = 0;
  let maxActive = 0;
  let runs = 0;
  let g = gate();
  const runner = new SingleFlightRunner(async () => {
    active++;
    maxActive = Math.max(maxActive, active);
    runs++;
    await g.promise;
    active--;
  });
  t.teardown(() => runner.stop());
  runner.start();
  runner.trigger();
  await until(() => runs === 1, 'first run');
  for (let i = 0; i < 5; i++) runner.trigger();
  const first = g;
  g = gate();
  first.open();
  await until(() => runs === 2, 'the dirty re-run');
  g.open();
  await runner.idle();
  t.equal(runs, 2, 'five triggers during a run gave exactly one more run');
  t.equal(maxActive, 1, 'never two at once');
  runner.trigger();
  await until(() => runs === 3, 'a trigger while idle runs at once');
  await runner.idle();
  t.equal(runner.runCount, 3);
});

t.test('nothing runs before start(); a trigger before start runs once started', async (t) => {
  let runs = 0;
  const runner = new SingleFlightRunner(async () => { runs++; });
  t.teardown(() => runner.stop());
  runner.trigger();
  await tick();
  t.equal(runs, 0);
  runner.start();
  await until(() => runs === 1, 'run after start');
});

t.test('failures are retried with exponential backoff capped at maxMs; success resets it', async (t) => {
  const delays: number[] = [];
  let runs = 0;
  let failuresLeft = 9;
  const errors: Array<[number, number]> = [];
  const runner = new SingleFlightRunner(async () => {
    runs++;
    if (failuresLeft-- > 0) throw new Error('nope');
  }, {
    baseMs: 1000, maxMs: 60_000,
    sleep: async (ms) => { delays.push(ms); },
    onError: (_e, failures, retryInMs) => errors.push([failures, retryInMs]),
  });
  t.teardown(() => runner.stop());
  runner.start();
  runner.trigger();
  await until(() => runs === 10, 'ten runs');
  await runner.idle();
  t.same(delays, [1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000]);
  t.same(errors.map((e) => e[1]), delays, 'onError is told the delay');
  t.same(errors.map((e) => e[0]), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
  t.equal(runner.consecutiveFailures, 0, 'the success reset the count');
  failuresLeft = 1;
  runner.trigger();
  await until(() => runs === 12, 'fail once more then succeed');
  t.equal(delays.at(-1), 1000, 'after a success the backoff starts again from base');
});

t.test('backoffMs', async (t) => {
  t.equal(backoffMs(0, 1000, 60_000), 0);
  t.equal(backoffMs(1, 1000, 60_000), 1000);
  t.equal(backoffMs(7, 1000, 60_000), 60_000);
  t.equal(backoffMs(1e6, 1000, 60_000), 60_000);
});

t.test('a trigger cuts the retry wait short; resetBackoff restarts the count', async (t) => {
  const waits: number[] = [];
  let runs = 0;
  const runner = new SingleFlightRunner(async () => {
    runs++;
    throw new Error('always fails');
  }, {
    baseMs: 1000, maxMs: 60_000,
    // Wait "forever" unless woken: only a trigger can end these waits.
    sleep: (ms, signal) => {
      waits.push(ms);
      return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
    },
  });
  t.teardown(() => runner.stop());
  runner.start();
  runner.trigger();
  await until(() => waits.length === 1, 'first wait');
  t.equal(runs, 1);
  runner.trigger();
  await until(() => waits.length === 2, 'second wait');
  t.equal(runs, 2, 'the trigger ran it without waiting for the delay');
  t.same(waits, [1000, 2000]);
  runner.trigger({ resetBackoff: true });
  await until(() => waits.length === 3, 'third wait');
  t.equal(waits[2], 1000, 'reset to base');
});

t.test('stop() aborts the run in flight, waits for it, and nothing runs after', async (t) => {
  let sawAbort = false;
  let runs = 0;
  const started = gate();
  const runner = new SingleFlightRunner(async (signal) => {
    runs++;
    started.open();
    await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
    sawAbort = signal.aborted;
    throw new Error('aborted');
  });
  runner.start();
  runner.trigger();
  await started.promise;
  runner.trigger(); // dirty: would run again, but stop wins
  await runner.stop();
  t.ok(sawAbort, 'the task saw its signal aborted');
  t.ok(runner.signal.aborted);
  runner.trigger();
  await tick();
  t.equal(runs, 1, 'no run after stop');
  await runner.idle();
});

t.test('an external AbortSignal stops the runner, even during a retry wait', async (t) => {
  const ac = new AbortController();
  let runs = 0;
  const runner = new SingleFlightRunner(async () => {
    runs++;
    throw new Error('fail');
  }, { signal: ac.signal, baseMs: 3_600_000 });
  runner.start();
  runner.trigger();
  await until(() => runs === 1, 'first run');
  ac.abort();
  await runner.stop(); // resolves promptly although the retry was an hour away
  t.equal(runs, 1);
});

t.test('a throwing onError does not end the loop', async (t) => {
  let runs = 0;
  const runner = new SingleFlightRunner(async () => {
    runs++;
    if (runs === 1) throw new Error('first');
  }, { onError: () => { throw new Error('hook broke'); }, sleep: async () => {} });
  t.teardown(() => runner.stop());
  runner.start();
  runner.trigger();
  await until(() => runs === 2, 'retry after the hook threw');
  await runner.idle();
  t.equal(runner.consecutiveFailures, 0);
});
