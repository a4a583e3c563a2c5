// CLI commands for images: images, pull, image import|rm|verify|build|build-all|recipes|gc.
// Each handler returns the exit code: 0 done, 2 a bad request, 1 anything else, with one
// line on stderr saying what went wrong and what to do.
import { parseArgs } from 'node:util';
import { FeatherError, errnoCode, isFeatherError, messageOf } from '../../shared/errors.js';
import { createLogger } from '../../shared/logging.js';
import type { FetchProgress } from '../images/blobs.js';
import { shortSha } from '../../shared/digest.js';
import { RecipeBuilder, type BuildResult } from '../images/recipes.js';
import { ImageStore, type ImageInfo } from '../images/store.js';
import { formatBytes } from '../../shared/limits.js';
import type { CliContext, CommandHandler } from './context.js';
import { relativeTime, table } from '../../shared/format.js';
import { containersUsingImage } from '../runtime/state.js';

const log = createLogger('agent:images');

/** Containers using an image digest, for image rm and gc (unreadable configs are logged). */
const usersOf = (ctx: CliContext, sha256: string): string[] =>
  containersUsingImage(ctx.paths.containers, sha256, (file, e) => log.warn('image.container_config_unreadable', { file, error: e }));

function fail(ctx: CliContext, e: unknown): number {
  if (isFeatherError(e)) {
    ctx.err(e.message);
    return e.code === 'BAD_REQUEST' ? 2 : 1;
  }
  if (errnoCode(e)?.startsWith('ERR_PARSE_ARGS')) {
    ctx.err(messageOf(e));
    return 2;
  }
  ctx.err(`unexpected error: ${messageOf(e)}`);
  return 1;
}

function guarded(fn: CommandHandler): CommandHandler {
  return async (argv, ctx) => {
    try {
      return await fn(argv, ctx);
    } catch (e: unknown) {
      return fail(ctx, e);
    }
  };
}

function usage(message: string): FeatherError {
  return new FeatherError('BAD_REQUEST', message);
}

function one(positionals: string[], what: string, example: string): string {
  if (positionals.length !== 1) throw usage(`expected ${what}: ${example}`);
  return positionals[0] as string;
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)}s`;
}

/** `[=========>          ]  45%  12.3Mi/27.0Mi  3.2Mi/s` (no total: bytes and rate only). */
export function formatProgress(p: FetchProgress, width = 30): string {
  const rate = `${formatBytes(p.rate)}/s`;
  if (p.total === undefined || p.total <= 0) return `${formatBytes(p.bytes)}  ${rate}`;
  const frac = Math.min(1, p.bytes / p.total);
  const filled = Math.floor(frac * width);
  const bar = '='.repeat(Math.max(0, filled - 1)) + (filled > 0 ? (frac >= 1 ? '=' : '>') : '') + ' '.repeat(width - filled);
  return `[${bar}] ${String(Math.floor(frac * 100)).padStart(3)}%  ${formatBytes(p.bytes)}/${formatBytes(p.total)}  ${rate}`;
}

function pulledMs(iso: string): number | undefined {
  const ms = Date.parse(iso);
  return Number.isNaN(ms) ? undefined : ms;
}

function imageRows(images: ImageInfo[]): string[][] {
  return images.map((i) => [i.name, shortSha(i.sha256), formatBytes(i.size), i.cached ? 'yes' : 'no', i.source, relativeTime(pulledMs(i.pulledAt))]);
}

const images: CommandHandler = guarded(async (argv, ctx) => {
  const { values } = parseArgs({ args: argv, options: { json: { type: 'boolean' } } });
  const list = await new ImageStore(ctx.paths).list();
  if (values.json) ctx.out(JSON.stringify(list));
  else ctx.out(table(['NAME', 'SHA256', 'SIZE', 'CACHED', 'SOURCE', 'PULLED'], imageRows(list)));
  return 0;
});

const pull: CommandHandler = guarded(async (argv, ctx) => {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { name: { type: 'string' }, sha256: { type: 'string' }, json: { type: 'boolean' } },
  });
  const url = one(positionals, 'one URL', 'pull URL --name NAME --sha256 HEX');
  if (values.name === undefined || values.sha256 === undefined) throw usage('pull needs --name NAME and --sha256 HEX (the digest the tarball must have)');
  let drawn = false;
  const onProgress = ctx.isTTY
    ? (p: FetchProgress): void => {
      process.stderr.write(`\r\x1b[2K${values.name as string}  ${formatProgress(p)}`);
      drawn = true;
    }
    : undefined;
  try {
    const r = await new ImageStore(ctx.paths).pull(url, { name: values.name, sha256: values.sha256, onProgress });
    if (drawn) process.stderr.write('\n');
    if (values.json) ctx.out(JSON.stringify(r));
    else ctx.out(`pulled ${r.name} sha256:${r.sha256} ${formatBytes(r.bytes)} in ${seconds(r.durationMs)}`);
    return 0;
  } catch (e: unknown) {
    if (drawn) process.stderr.write('\n');
    throw e;
  }
});

async function imageImport(argv: string[], ctx: CliContext): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { name: { type: 'string' }, sha256: { type: 'string' }, json: { type: 'boolean' } },
  });
  const file = one(positionals, 'one FILE', 'image import FILE.tar.gz --name NAME [--sha256 HEX]');
  if (values.name === undefined) throw usage('image import needs --name NAME');
  const info = await new ImageStore(ctx.paths).import(file, { name: values.name, sha256: values.sha256 });
  if (values.json) ctx.out(JSON.stringify(info));
  else ctx.out(`imported ${info.name} sha256:${info.sha256} ${formatBytes(info.size)}`);
  return 0;
}

async function imageRm(argv: string[], ctx: CliContext): Promise<number> {
  const { positionals } = parseArgs({ args: argv, allowPositionals: true, options: {} });
  const name = one(positionals, 'one image NAME', 'image rm NAME');
  await new ImageStore(ctx.paths).remove(name, { inUseBy: (sha) => usersOf(ctx, sha) });
  ctx.out(`removed ${name}`);
  return 0;
}

async function imageVerify(argv: string[], ctx: CliContext): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { json: { type: 'boolean' } } });
  const results = await new ImageStore(ctx.paths).verify();
  const bad = results.filter((r) => !r.ok);
  if (values.json) ctx.out(JSON.stringify(results));
  else {
    for (const r of results) {
      if (r.ok) ctx.out(`ok   ${r.name} sha256:${r.expected}`);
      else if (r.actual === null) ctx.out(`BAD  ${r.name}: ${r.error ?? 'unreadable'}`);
      else ctx.out(`BAD  ${r.name}: expected sha256 ${r.expected}, got ${r.actual}`);
    }
  }
  if (bad.length > 0) {
    ctx.err(`${bad.length} of ${results.length} images failed verification (${bad.map((r) => r.name).join(', ')}); pull or import them again`);
    return 1;
  }
  return 0;
}

function builtLine(b: BuildResult): string {
  return `built ${b.name} from recipe ${b.recipe}: sha256:${b.sha256} ${formatBytes(b.size)} in ${seconds(b.durationMs)}`;
}

async function imageBuild(argv: string[], ctx: CliContext): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      name: { type: 'string' }, bin: { type: 'string', multiple: true }, busybox: { type: 'string' },
      mirror: { type: 'string' }, suite: { type: 'string' }, json: { type: 'boolean' },
    },
  });
  const recipe = one(positionals, 'one RECIPE', 'image build busybox|debian|host [--name NAME] [--bin PATH ...]');
  const b = await new RecipeBuilder(new ImageStore(ctx.paths)).build(recipe, {
    name: values.name, bins: values.bin, busybox: values.busybox, mirror: values.mirror, suite: values.suite,
  });
  ctx.out(values.json ? JSON.stringify(b) : builtLine(b));
  return 0;
}

async function imageBuildAll(argv: string[], ctx: CliContext): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { skip: { type: 'string', multiple: true }, bin: { type: 'string', multiple: true }, json: { type: 'boolean' } },
  });
  const results = await new RecipeBuilder(new ImageStore(ctx.paths)).buildAll({ skip: values.skip, bins: values.bin });
  if (values.json) ctx.out(JSON.stringify(results));
  else for (const r of results) ctx.out(r.ok ? builtLine(r.image) : `FAILED ${r.recipe}: ${r.error.message}`);
  const failed = results.filter((r) => !r.ok);
  if (failed.length > 0) {
    ctx.err(`${failed.length} of ${results.length} recipes failed (${failed.map((r) => r.recipe).join(', ')})`);
    return 1;
  }
  return 0;
}

async function imageRecipes(argv: string[], ctx: CliContext): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { json: { type: 'boolean' } } });
  const list = new RecipeBuilder(new ImageStore(ctx.paths)).list();
  if (values.json) ctx.out(JSON.stringify(list));
  else ctx.out(table(['RECIPE', 'DESCRIPTION'], list.map((r) => [r.name, r.description + (r.slow ? ' (slow)' : '')])));
  return 0;
}

async function imageGc(argv: string[], ctx: CliContext): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { json: { type: 'boolean' } } });
  const r = await new ImageStore(ctx.paths).gc({ inUseBy: (sha) => usersOf(ctx, sha) });
  if (values.json) ctx.out(JSON.stringify(r));
  else ctx.out(`removed ${r.removedCache.length} unused layers and ${r.removedTmp.length} temp files`);
  return 0;
}

async function imageList(argv: string[], ctx: CliContext): Promise<number> {
  return images(argv, ctx);
}

const IMAGE_SUBCOMMANDS: Record<string, (argv: string[], ctx: CliContext) => Promise<number>> = {
  import: imageImport,
  rm: imageRm,
  verify: imageVerify,
  build: imageBuild,
  'build-all': imageBuildAll,
  recipes: imageRecipes,
  gc: imageGc,
  ls: imageList,
  list: imageList,
  pull: (argv, ctx) => pull(argv, ctx),
};

const image: CommandHandler = guarded(async (argv, ctx) => {
  const [sub, ...rest] = argv;
  const fn = sub === undefined ? undefined : IMAGE_SUBCOMMANDS[sub];
  if (!fn) {
    throw usage(`${sub === undefined ? 'image needs a subcommand' : `unknown image subcommand "${sub}"`}: ${Object.keys(IMAGE_SUBCOMMANDS).join(', ')}`);
  }
  return fn(rest, ctx);
});

/** Handlers by command name: argv is what follows the command word. */
export const imageCommands: Record<string, CommandHandler> = { images, image, pull };
