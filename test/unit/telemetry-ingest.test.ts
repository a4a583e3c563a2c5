import t from 'tap';
import { LatencyTracker } from '../../agent/telemetry/latency.js';
import { StatsdIngest, statsdSocketPath } from '../../agent/telemetry/statsd-ingest.js';

interface Observed { container: string; model: string; seconds: number; weight: number }

function rig(maxModels = 16): { ingest: StatsdIngest; latency: LatencyTracker; observed: Observed[]; forgotten: string[] } {
  const latency = new LatencyTracker({ now: () => 0, maxModels });
  const observed: Observed[] = [];
  const forgotten: string[] = [];
  const ingest = new StatsdIngest({
    runDir: '/nonexistent', latency,
    metrics: {
      observeInference: (container, model, seconds, weight) => { observed.push({ container, model, seconds, weight }); },
      forgetContainer: (name) => { forgotten.push(name); },
    },
  });
  return { ingest, latency, observed, forgotten };
}

t.test('socket path per container', async (t) => {
  t.equal(statsdSocketPath('/run/feather', 'cam'), '/run/feather/containers/cam/statsd.sock');
});

t.test('inference.latency timers, histograms and distributions in ms; the rest counted', async (t) => {
  const { ingest, latency, observed } = rig();
  ingest.handle('cam', [
    'inference.latency:12|ms|#model:yolo',
    'inference.latency:20|h|#model:yolo',
    'inference.latency:8:9|d',
    'inference.latency:4|ms|@0.25|#model:yolo',
    'inference.latency:5|c', // a counter of that name is not a latency
    'gpu.temp:70|g',
    'inference.latency:-1|ms', // negative latency
    `inference.latency:1|ms|#model:${'m'.repeat(65)}`,
    'inference.latency:1|ms|#model:', // empty model
    'bogus',
  ].join('\n'));
  t.same(observed, [
    { container: 'cam', model: 'yolo', seconds: 0.012, weight: 1 },
    { container: 'cam', model: 'yolo', seconds: 0.02, weight: 1 },
    { container: 'cam', model: 'default', seconds: 0.008, weight: 1 },
    { container: 'cam', model: 'default', seconds: 0.009, weight: 1 },
    { container: 'cam', model: 'yolo', seconds: 0.004, weight: 4 },
  ]);
  t.same(latency.snapshot('cam').map((s) => [s.model, s.count]), [['default', 2], ['yolo', 6]]);
  t.same(ingest.counts(), [['cam', { datagrams: 0, truncated: 0, throttled: 0, malformed: 4, ignored: 2, overflow: 0 }]]);
});

t.test('models beyond the limit are overflow, counted, not recorded', async (t) => {
  const { ingest, latency, observed } = rig(2);
  ingest.handle('cam', 'inference.latency:1|ms|#model:a\ninference.latency:1|ms|#model:b\ninference.latency:1|ms|#model:c\ninference.latency:1|ms|#model:a');
  t.same(latency.snapshot('cam').map((s) => s.model), ['a', 'b']);
  t.equal(observed.length, 3);
  t.equal(new Map(ingest.counts()).get('cam')?.overflow, 1);
});

t.test('detach with forget drops the series everywhere', async (t) => {
  const { ingest, latency, forgotten } = rig();
  ingest.handle('cam', 'inference.latency:1|ms');
  ingest.detach('cam');
  t.equal(latency.snapshot('cam').length, 1, 'a plain detach (stop) keeps the series');
  ingest.detach('cam', { forget: true });
  t.same(latency.snapshot('cam'), []);
  t.same(forgotten, ['cam']);
  t.same(ingest.counts(), []);
});
