import t from 'tap';
import { DEFAULT_RECONNECT, reconnectDelay } from '../../agent/control/mqtt.js';

t.test('reconnect delays double from minMs and stop at maxMs, with ±20% jitter', async (t) => {
  const mid = () => 0.5;
  t.same([1, 2, 3, 4, 5, 6, 7, 8, 9].map((a) => reconnectDelay(a, DEFAULT_RECONNECT, mid)), [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
  t.equal(reconnectDelay(1000, DEFAULT_RECONNECT, mid), 30000, 'no overflow after many attempts');
  t.equal(reconnectDelay(5, DEFAULT_RECONNECT, () => 0), 6400, '-20%');
  t.equal(reconnectDelay(5, DEFAULT_RECONNECT, () => 0.9999999), 9600, '+20%');
  t.equal(reconnectDelay(1, DEFAULT_RECONNECT, () => 0), 500, 'never below minMs');
  t.equal(reconnectDelay(9, { minMs: 100, maxMs: 400 }, () => 0.9999999), 480, 'the cap plus its jitter');
});
