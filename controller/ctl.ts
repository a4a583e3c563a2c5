#!/usr/bin/env node
// featherctl: the operators' CLI (controller/cli/main.ts; docs/featherctl.md).
import { main } from './cli/main.js';

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (e: unknown) => { process.stderr.write(`featherctl: ${e instanceof Error ? e.message : String(e)}\n`); process.exitCode = 1; },
);
