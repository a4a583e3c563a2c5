import t from 'tap';
import { parseMemory, parseCpus, parsePids, parseCpuset, validateName, formatBytes } from '../../shared/limits.js';


t.test('parseMemory takes binary and decimal units', async (t) => {
  t.equal(parseMemory('128Mi'), 128 * 2 ** 20);
  t.equal(parseMemory('1Gi'), 2 ** 30);
  t.equal(parseMemory('64M'), 64e6);
  t.equal(parseMemory('5000000'), 5_000_000);
  t.equal(parseMemory(8 * 2 ** 20), 8 * 2 ** 20);
});

t.test('parseMemory refuses what is not a size', async (t) => {
  for (const bad of ['12Zi', 'lots', '', '-5Mi', '1Ki']) {
    t.throws(() => parseMemory(bad), { code: 'BAD_REQUEST' }, bad);
  }
});

t.test('cpus, pids, cpuset bounds', async (t) => {
  t.equal(parseCpus('0.5'), 0.5);
  t.throws(() => parseCpus('0'));
  t.throws(() => parseCpus('abc'));
  t.equal(parsePids('10'), 10);
  t.throws(() => parsePids('1.5'));
  t.throws(() => parsePids(0));
  t.equal(parseCpuset('0-1,3'), '0-1,3');
  t.throws(() => parseCpuset('0;rm'));
});

t.test('names become directories and hostnames, so they are strict', async (t) => {
  t.equal(validateName('container', 'web-1.a_b'), 'web-1.a_b');
  for (const bad of ['', '../x', 'a/b', '-x', 'x'.repeat(64), 'a b', 42]) {
    t.throws(() => validateName('container', bad), { code: 'BAD_REQUEST' });
  }
  t.equal(formatBytes(128 * 2 ** 20), '128Mi');
});
