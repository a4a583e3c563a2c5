// encodeSpec (agent/runtime/spec.ts): the records of docs/shim-spec.md, here the cgroup v2 device
// filter (devcgroup=, devrule=) that native/lib/spec.c parses.
import t, { type Test } from 'tap';
import { encodeSpec, type ShimSpec } from '../../agent/runtime/spec.js';

const CG = '/sys/fs/cgroup/feather/web1';

const base: ShimSpec = {
  name: 'web1', rootfs: '/c/rootfs', lowers: ['/l/top'], upper: '/c/u', work: '/c/w', args: ['sh'], env: [],
  network: 'none', cgroups: [CG], tty: false, detach: false, init: false, binds: [], devices: [],
};

const records = (t: Test, spec: ShimSpec): string[] => {
  const buf = encodeSpec(spec).toString('utf8');
  t.equal(buf.at(-1), '\0', 'every record is NUL-terminated');
  return buf.slice(0, -1).split('\0');
};

t.test('no device filter: no devcgroup or devrule records', async (t) => {
  const r = records(t, base);
  t.same(r.filter((x) => x.startsWith('dev')), []);
  t.equal(r[0], 'version=1');
});

t.test('a device filter: devcgroup once, then one devrule per rule in order, * for any number', async (t) => {
  const r = records(t, {
    ...base,
    deviceFilter: {
      cgroup: CG,
      rules: [
        { type: 'c', access: 'm' },
        { type: 'c', major: 1, minor: 3, access: 'rwm' },
        { type: 'c', major: 136, access: 'rw' },
        { type: 'b', major: 8, minor: 0, access: 'r' },
      ],
    },
  });
  t.same(r.filter((x) => x.startsWith('dev')), [
    `devcgroup=${CG}`, 'devrule=c * * m', 'devrule=c 1 3 rwm', 'devrule=c 136 * rw', 'devrule=b 8 0 r',
  ]);
  t.ok(r.indexOf(`cgroup=${CG}`) >= 0, 'the filtered cgroup is also joined');
});

t.test('an empty allow-list still names the cgroup (everything denied); "a" is every device', async (t) => {
  t.same(records(t, { ...base, deviceFilter: { cgroup: CG, rules: [] } }).filter((x) => x.startsWith('dev')), [`devcgroup=${CG}`]);
  t.same(records(t, { ...base, deviceFilter: { cgroup: CG, rules: [{ type: 'a', access: 'rwm' }] } }).filter((x) => x.startsWith('devrule')), ['devrule=a * * rwm']);
});

t.test('a filter on a cgroup the container does not join is refused', async (t) => {
  t.throws(() => encodeSpec({ ...base, deviceFilter: { cgroup: '/sys/fs/cgroup/other', rules: [] } }), {
    code: 'BAD_REQUEST', message: /not one the container joins/,
  });
});
