// What can be validated of deploy/ without a container engine or systemd running.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

function run(cmd: string, args: string[]): { status: number | null; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return { status: r.error ? null : r.status, out: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? r.error.message : ''}` };
}

t.test('prometheus.yml passes promtool check config', async (t) => {
  const r = run('promtool', ['check', 'config', 'deploy/prometheus/prometheus.yml']);
  t.equal(r.status, 0, r.out);
});

t.test('compose.yaml is a valid compose file', async (t) => {
  const r = run('docker-compose', ['-f', 'deploy/compose.yaml', 'config', '-q']);
  t.equal(r.status, 0, r.out);
});

t.test('the agent unit passes systemd-analyze verify and keeps containers on stop', async (t) => {
  const r = run('systemd-analyze', ['verify', 'deploy/systemd/feather-agent.service']);
  t.equal(r.status, 0, r.out);
  t.match(readFileSync('deploy/systemd/feather-agent.service', 'utf8'), /^KillMode=process$/m);
});

t.test('Dockerfile.controller: multi-stage, non-root, healthcheck, data volume', async (t) => {
  const text = readFileSync('Dockerfile.controller', 'utf8');
  t.equal(text.match(/^FROM /gm)?.length, 2, 'a build stage and a run stage');
  t.match(text, /npm prune --omit=dev/, 'production dependencies only');
  t.match(text, /^USER feather$/m, 'runs as an unprivileged user');
  t.match(text, /^HEALTHCHECK /m);
  t.match(text, /^VOLUME \["\/var\/lib\/feather-controller"\]$/m);
});
