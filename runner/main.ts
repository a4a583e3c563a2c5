#!/usr/bin/env node
// feather-runner: the reference inference workload. Loads an ONNX model (by default
// /models/<name>/model.onnx, bind-mounted read-only by the agent), serves inference requests
// over HTTP and/or runs a steady load, and reports every inference's latency to the agent as
// StatsD lines on /run/feather/statsd.sock. Runs inside a Feather container on the host's own
// Node (the `onnx` image module) or directly on a host. Self-contained: it imports only
// node:*, onnxruntime-node and koffi, so the image module carries nothing else.
import { chmodSync, lstatSync, unlinkSync } from 'node:fs';
import type { Server } from 'node:http';
import { Exclusive, OrtEngine } from './engine.js';
import { runLoad, type LoadResult } from './load.js';
import { USAGE, UsageError, parseOptions, type ListenSpec, type RunnerOptions } from './options.js';
import { resolveModelFile } from './model-file.js';
import { createApi } from './server.js';
import { StatsdClient, UnixDatagramSink, latencyLine } from './statsd.js';

function log(level: 'info' | 'warn' | 'error', event: string, fields: Record<string, unknown> = {}): void {
  process.stderr.write(`${JSON.stringify({ ts: new Date().toISOString(), level, ns: 'runner', event, ...fields })}\n`);
}


function listen(server: Server, spec: ListenSpec): Promise<void> {
  if (spec.kind === 'unix') {
    try {
      if (lstatSync(spec.path).isSocket()) unlinkSync(spec.path); // a previous run's
    } catch { /* absent */ }
  }
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    const done = (): void => {
      server.off('error', reject);
      if (spec.kind === 'unix') chmodSync(spec.path, 0o666);
      resolve();
    };
    if (spec.kind === 'unix') server.listen(spec.path, done);
    else server.listen(spec.port, spec.host, done);
  });
}

async function run(opts: RunnerOptions): Promise<void> {
  // Handled from the start: as a container's PID 1 the runner gets no default SIGTERM action.
  const stop = new AbortController();
  const onSignal = (sig: NodeJS.Signals): void => {
    log('info', 'runner.stopping', { signal: sig });
    stop.abort();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);

  const modelFile = resolveModelFile(opts.model);
  const started = performance.now();
  const engine = await OrtEngine.load(modelFile, { threads: opts.threads, spinning: opts.spinning, seed: opts.seed });
  log('info', 'runner.loaded', {
    model: opts.modelName, file: modelFile, loadMs: Math.round(performance.now() - started),
    threads: opts.threads, spinning: opts.spinning, inputs: engine.inputs, outputs: engine.outputs,
  });

  const statsd = opts.statsd === undefined ? undefined : new StatsdClient(
    new UnixDatagramSink(opts.statsd, { onError: (call, errno) => log('warn', 'runner.statsd_failed', { path: opts.statsd, call, errno }) }),
    { flushMs: opts.flushMs, maxDatagramBytes: opts.maxDatagramBytes },
  );
  const report = (ms: number): void => statsd?.add(latencyLine(ms, opts.modelName));
  const exclusive = new Exclusive();
  const synthetic = engine.syntheticFeeds();
  for (let i = 0; i < opts.warmup && !stop.signal.aborted; i++) await engine.time(synthetic);

  let server: Server | undefined;
  if (opts.listen !== undefined && !stop.signal.aborted) {
    server = createApi({
      engine, model: opts.modelName, onLatency: report,
      exclusive: (fn) => exclusive.run(fn),
      health: () => ({ statsd: statsd?.counts() }),
    });
    await listen(server, opts.listen);
    log('info', 'runner.listening', { listen: opts.listen });
  }

  let result: LoadResult | undefined;
  if (opts.rate !== undefined && !stop.signal.aborted) {
    log('info', 'runner.load_started', { rate: opts.rate, durationS: opts.durationS });
    result = await runLoad({
      rate: opts.rate, durationS: opts.durationS, signal: stop.signal,
      inferOnce: () => exclusive.run(() => engine.time(synthetic)),
      onLatency: report,
    });
  }
  // Serving (alone, or after a finite load) lasts until a signal.
  if (server !== undefined && !stop.signal.aborted) await new Promise((resolve) => stop.signal.addEventListener('abort', resolve, { once: true }));
  if (server !== undefined) {
    // close() drops idle keep-alive connections; requests in flight get 5 s to finish.
    const s = server;
    const force = setTimeout(() => s.closeAllConnections(), 5000);
    await new Promise<void>((resolve) => s.close(() => resolve()));
    clearTimeout(force);
  }
  statsd?.close();
  if (result !== undefined) {
    // The one line on stdout: the load's summary, for scripts and the benchmark.
    process.stdout.write(`${JSON.stringify({ event: 'load.done', model: opts.modelName, threads: opts.threads, ...result, statsd: statsd?.counts() })}\n`);
  }
  await engine.close();
  log('info', 'runner.stopped', { statsd: statsd?.counts() });
}

function main(): void {
  const argv = process.argv.slice(2);
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  let opts: RunnerOptions;
  try {
    opts = parseOptions(argv, process.env);
  } catch (e: unknown) {
    process.stderr.write(`feather-runner: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 2;
    return;
  }
  run(opts).catch((e: unknown) => {
    const usage = e instanceof UsageError;
    log('error', 'runner.failed', { message: e instanceof Error ? e.message : String(e) });
    process.exitCode = usage ? 2 : 1;
    // Pending handles (a listening server) must not keep a failed runner alive.
    setImmediate(() => process.exit());
  });
}

main();
