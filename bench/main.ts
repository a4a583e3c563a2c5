#!/usr/bin/env node
// npm run bench -- <name> [options]: each benchmark prints its figure beside an anchor run
// in the same process, as a ratio.
import { benchRuntime } from './runtime.js';
import { benchAgent, benchPull } from './agent.js';
import { benchScheduler } from './scheduler.js';
import { benchInference } from './inference.js';
import { benchFleet } from './fleet.js';

const benches: Record<string, (args: string[]) => Promise<void>> = {
  runtime: benchRuntime,
  agent: benchAgent,
  pull: benchPull,
  scheduler: benchScheduler,
  inference: benchInference,
  fleet: benchFleet,
};

async function main(): Promise<void> {
  const [name, ...args] = process.argv.slice(2);
  const selected = name ? [name] : Object.keys(benches);
  for (const b of selected) {
    const fn = benches[b];
    if (!fn) {
      console.error(`unknown benchmark "${b}"; one of: ${Object.keys(benches).join(', ')}`);
      process.exitCode = 2;
      return;
    }
    await fn(args);
  }
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.stack : String(e));
  process.exitCode = 1;
});
