// Pull throughput (part of `npm run bench -- agent`; alone: `npm run bench -- pull`).
//
// A ~200 MB gzip image is made once per run in the temp dir: a busybox rootfs, large files of
// random bytes (stored blocks for deflate), large files of base64 text (real inflate work) and
// 4,096 small files (per-entry cost), tar | gzip -1. A node:http server in this process serves
// it on 127.0.0.1. Timed, interleaved, each run after a `sync` so nobody pays for another's
// dirty pages:
//   agent          image.pull over MQTT until its ok reply (download, sha256, fsync, rename),
//                  then container.run of the pulled image until its ok reply (extraction into
//                  cache/<sha256> with a second sha256 pass, sync -f, and a container start);
//                  the figure is the sum: pull + verify + extract, as the agent does it
//   anchor         curl -s URL | tee >(sha256sum >/dev/null) | tar -xz -C DIR
//   + sync         the anchor followed by sync -f DIR (the durability the agent pays for)
//   tools, agent's steps  curl -o, sync, sha256sum -c, tar -xzf, sync -f: the agent's sequence
//                  done by the C tools
import { randomBytes } from 'node:crypto';
import { createReadStream, mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { DataPaths } from '../agent/paths.js';
import { figure, hwmMb, mustRun, printFigures, rssMb, rssSplit, type Figure, type Harness } from './agent.js';

const MiB = 2 ** 20;

interface Tarball { path: string; bytes: number; unpackedBytes: number; entries: number; sha256: string }

async function sha256Of(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: MiB })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** The test image: about `mb` MB of gzip. */
async function makeTarball(h: Harness, mb: number): Promise<Tarball> {
  const src = join(h.root, 'pull-src');
  mkdirSync(src, { recursive: true });
  await mustRun('tar', ['-xzf', new DataPaths(h.dataDir).imageTarball('busybox'), '-C', src]);
  const busyboxEntries = (await mustRun('tar', ['-tzf', new DataPaths(h.dataDir).imageTarball('busybox')])).stdout.split('\n').filter(Boolean).length;
  let unpacked = 0;
  let entries = busyboxEntries + 2;
  const write = (p: string, data: Buffer | string): void => { writeFileSync(p, data); unpacked += Buffer.byteLength(data); entries++; };
  mkdirSync(join(src, 'data'));
  // Sizes chosen so that the gzip comes to ~mb MB: random bytes do not shrink, base64 text shrinks to ~76 %.
  const randomFiles = Math.max(1, Math.round((0.78 * mb * 1e6) / (4 * MiB)));
  const textFiles = Math.max(1, Math.round((0.2 * mb * 1e6) / (4 * MiB)));
  for (let i = 0; i < randomFiles; i++) write(join(src, 'data', `blob-${i}.bin`), randomBytes(4 * MiB));
  for (let i = 0; i < textFiles; i++) write(join(src, 'data', `text-${i}.txt`), randomBytes(3 * MiB).toString('base64'));
  for (let d = 0; d < 64; d++) {
    const dir = join(src, 'small', `d${d}`);
    mkdirSync(dir, { recursive: true });
    entries++;
    for (let f = 0; f < 64; f++) write(join(dir, `f${f}.txt`), randomBytes(3072).toString('base64'));
  }
  const path = join(h.root, 'image.tar.gz');
  await mustRun('bash', ['-o', 'pipefail', '-c', 'tar -C "$1" -cf - . | gzip -1 > "$2"', 'bash', src, path]);
  rmSync(src, { recursive: true, force: true });
  return { path, bytes: statSync(path).size, unpackedBytes: unpacked, entries, sha256: await sha256Of(path) };
}

/** Serves the tarball at /image.tar.gz on 127.0.0.1 (whole file, 200; no ranges needed here). */
async function serve(h: Harness, tb: Tarball): Promise<string> {
  const server = http.createServer((req, res) => {
    if (req.url !== '/image.tar.gz') { res.writeHead(404).end(); return; }
    res.writeHead(200, { 'content-type': 'application/gzip', 'content-length': String(tb.bytes) });
    if (req.method === 'HEAD') { res.end(); return; }
    createReadStream(tb.path, { highWaterMark: MiB }).pipe(res);
  });
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(0, '127.0.0.1', resolve); });
  h.onCleanup(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/image.tar.gz`;
}

export async function measurePull(h: Harness, opts: { mb: number; runs: number }): Promise<void> {
  const g0 = performance.now();
  const tb = await makeTarball(h, opts.mb);
  const url = await serve(h, tb);
  console.log(`\npull benchmark: ${(tb.bytes / 1e6).toFixed(1)} MB gzip (${(tb.unpackedBytes / 1e6).toFixed(0)} MB in ~${tb.entries} entries), made in ${((performance.now() - g0) / 1000).toFixed(1)} s, served from ${url}; ${opts.runs} interleaved runs each`);

  const scratch = join(h.root, 'scratch');
  const shell = async (script: string, i: number): Promise<number> => {
    const dir = join(scratch, `x${i}`);
    rmSync(scratch, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    await mustRun('sync', []);
    const r = await mustRun('bash', ['-o', 'pipefail', '-c', script, 'bash', url, dir, join(scratch, 'blob'), tb.sha256]);
    rmSync(scratch, { recursive: true, force: true });
    return r.ms;
  };
  const contenders: Record<string, (i: number) => Promise<number>> = {
    pipeline: (i) => shell('curl -s "$1" | tee >(sha256sum >/dev/null) | tar -xz -C "$2"', i),
    pipelineSync: (i) => shell('curl -s "$1" | tee >(sha256sum >/dev/null) | tar -xz -C "$2" && sync -f "$2"', i),
    tools: (i) => shell('curl -s -o "$3" "$1" && sync "$3" && echo "$4  $3" | sha256sum -c --quiet && tar -xzf "$3" -C "$2" && sync -f "$2"', i),
    agent: async (i) => {
      const name = `pull-${i}`;
      await mustRun('sync', []);
      const pull = await h.client.ok('image.pull', { name, url, sha256: tb.sha256 }, 600_000);
      const start = await h.client.ok('container.run', { name: `pulled-${i}`, image: name, args: ['sleep', '300'], limits: { memory: '64Mi' } }, 600_000);
      agentPull.push(pull.ms);
      agentRun.push(start.ms);
      await h.client.ok('container.rm', { name: `pulled-${i}`, timeoutS: 0 });
      await h.client.ok('image.rm', { name });
      return pull.ms + start.ms;
    },
  };
  const agentPull: number[] = [];
  const agentRun: number[] = [];
  const results: Record<string, number[]> = {};
  const order = Object.keys(contenders);
  for (let i = 0; i < opts.runs; i++) {
    for (let k = 0; k < order.length; k++) { // rotate who goes first
      const name = order[(i + k) % order.length] as string;
      (results[name] ??= []).push(await (contenders[name] as (i: number) => Promise<number>)(i));
    }
  }
  const mbps = (ms: number): string => `${(tb.bytes / 1e6 / (ms / 1000)).toFixed(0)} MB/s`;
  const row = (name: string, xs: number[], note: string): Figure => {
    const f = figure(name, xs);
    return { ...f, note: `${note}${note ? '; ' : ''}${mbps(f.value)}` };
  };
  const ref = 'anchor: curl | tee >(sha256sum) | tar -xz';
  printFigures(`Pull throughput: ${(tb.bytes / 1e6).toFixed(0)} MB gzip from a local HTTP server, pulled, verified, extracted (ms; MB/s of gzip)`, 'ms', [
    row(ref, results['pipeline'] ?? [], ''),
    row('anchor + sync -f DIR', results['pipelineSync'] ?? [], ''),
    row("tools, agent's steps", results['tools'] ?? [], 'curl -o, sync, sha256sum -c, tar -xzf, sync -f'),
    row('agent: image.pull', agentPull, 'download + sha256 + fsync'),
    row('agent: container.run after the pull', agentRun, 'extract + sha256 again + sync -f + start'),
    row('agent: pull + verify + extract', results['agent'] ?? [], 'the sum of the two'),
  ], ref);
  console.log(`agent RSS after the pulls: ${rssMb(h.pid).toFixed(1)} MB (${rssSplit(h.pid)}); peak over its life (VmHWM): ${hwmMb(h.pid).toFixed(1)} MB`);
}
