// A bounded store of recent replies by requestId, so that a command seen again is answered
// again and not executed twice (../shared/DESIGN.md, "Commands").
//
// Invariants:
// - at most one execution per requestId while the id is remembered: a repeat that arrives
//   while the first is still running waits for the first one's reply;
// - at most `capacity` replies and about `maxBytes` of them are kept, oldest dropped first;
// - the store survives restarts: an append-only log (one JSON object per line) in the data dir,
//   rewritten atomically (temp file + rename) when it has grown to twice the live entries.
//   A command that changes something logs a `started` line before it runs; if the agent dies
//   before its reply is logged, a repeat after the restart gets an error saying the outcome is
//   unknown instead of a second execution.
// - a torn last line (crash mid-append) is dropped; any other corrupt content discards the
//   file with a warning. Failing to write never fails a command: the store then works in memory.
import { mkdir, open, readFile, rename, writeFile, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from '../../shared/logging.js';
import { messageOf } from '../../shared/errors.js';
import { isPlainObject } from '../../shared/protocol/fields.js';
import type { Reply } from '../../shared/protocol/types.js';

export interface StoredReply {
  /** The verb the reply answers (undefined for an unknown verb): a protobuf replay needs it. */
  verb: string | undefined;
  reply: Reply;
}

export interface ReplyCacheOptions {
  /** The log file; undefined keeps everything in memory (tests). */
  file: string | undefined;
  logger: Logger;
  capacity?: number;
  /** Bound on the JSON size of the kept replies; a single reply above a quarter of it is not kept. */
  maxBytes?: number;
}

type LogLine =
  | { id: string; verb?: string; started: true }
  | { id: string; verb?: string; reply: Reply };

export const UNKNOWN_OUTCOME_MESSAGE =
  'the agent restarted while this command was running, so its outcome is unknown; check with container.list or image.list and send the command again with a new requestId';

export class ReplyCache {
  private readonly entries = new Map<string, StoredReply & { bytes: number }>();
  private readonly running = new Map<string, Promise<StoredReply>>();
  private readonly capacity: number;
  private readonly maxBytes: number;
  private bytes = 0;
  private handle: FileHandle | undefined;
  private linesInFile = 0;
  private writes: Promise<void> = Promise.resolve();
  private writeFailed = false;

  private constructor(private readonly opts: ReplyCacheOptions) {
    this.capacity = opts.capacity ?? 1000;
    this.maxBytes = opts.maxBytes ?? 8 * 2 ** 20;
  }

  /** Load the log (if any) and open it for appending. */
  static async open(opts: ReplyCacheOptions): Promise<ReplyCache> {
    const cache = new ReplyCache(opts);
    if (opts.file !== undefined) await cache.load(opts.file);
    return cache;
  }

  get size(): number { return this.entries.size; }

  get(requestId: string): StoredReply | undefined {
    const e = this.entries.get(requestId);
    return e === undefined ? undefined : { verb: e.verb, reply: e.reply };
  }

  /**
   * The reply for `requestId`: the remembered one (replayed: true), the running one's once it
   * ends (replayed: true), or `run()`'s (replayed: false). `run` must not throw.
   */
  async once(requestId: string, verb: string | undefined, mutating: boolean, run: () => Promise<Reply>): Promise<{ stored: StoredReply; replayed: boolean }> {
    const known = this.get(requestId);
    if (known !== undefined) return { stored: known, replayed: true };
    const pending = this.running.get(requestId);
    if (pending !== undefined) return { stored: await pending, replayed: true };

    const work = (async (): Promise<StoredReply> => {
      if (mutating) this.append({ id: requestId, ...(verb === undefined ? {} : { verb }), started: true });
      const reply = await run();
      const stored = { verb, reply };
      this.remember(requestId, stored, true);
      return stored;
    })();
    this.running.set(requestId, work);
    try {
      return { stored: await work, replayed: false };
    } finally {
      this.running.delete(requestId);
    }
  }

  /** Wait for pending writes and close the log. */
  async close(): Promise<void> {
    await this.writes;
    const h = this.handle;
    this.handle = undefined;
    await h?.close().catch(() => undefined);
  }

  private remember(id: string, stored: StoredReply, persist: boolean): void {
    let json: string;
    try {
      json = JSON.stringify({ id, ...(stored.verb === undefined ? {} : { verb: stored.verb }), reply: stored.reply });
    } catch (e: unknown) {
      this.opts.logger.warn('reply.not_kept', { requestId: id, error: messageOf(e) });
      return;
    }
    const bytes = Buffer.byteLength(json);
    if (bytes > this.maxBytes / 4) {
      // A log tail or a long list: a repeat of such a read-only request simply runs again.
      this.opts.logger.debug('reply.not_kept', { requestId: id, bytes });
      return;
    }
    this.bytes -= this.entries.get(id)?.bytes ?? 0;
    this.entries.delete(id);
    this.entries.set(id, { ...stored, bytes });
    this.bytes += bytes;
    while (this.entries.size > this.capacity || this.bytes > this.maxBytes) {
      const oldest = this.entries.keys().next();
      if (oldest.done === true) break;
      this.bytes -= this.entries.get(oldest.value)?.bytes ?? 0;
      this.entries.delete(oldest.value);
    }
    if (persist) this.appendRaw(json);
  }

  // ---- the log ----------------------------------------------------------------------------

  private async load(file: string): Promise<void> {
    let text = '';
    try {
      text = await readFile(file, 'utf8');
    } catch (e: unknown) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') this.opts.logger.warn('reply_cache.unreadable', { file, error: messageOf(e) });
    }
    const parsed = parseLog(text);
    if (parsed === undefined) {
      this.opts.logger.warn('reply_cache.corrupt', { file, action: 'discarded; earlier requestIds will run again if repeated' });
      await rename(file, `${file}.corrupt`).catch(() => undefined);
    } else {
      if (parsed.torn) this.opts.logger.warn('reply_cache.torn_line', { file, action: 'last line dropped' });
      for (const line of parsed.lines) {
        if ('reply' in line) this.remember(line.id, { verb: line.verb, reply: line.reply }, false);
      }
      const unfinished = parsed.lines.filter((l): l is Extract<LogLine, { started: true }> => 'started' in l && !this.entries.has(l.id));
      for (const l of unfinished) {
        this.remember(l.id, { verb: l.verb, reply: { requestId: l.id, ok: false, error: { code: 'INTERNAL', message: UNKNOWN_OUTCOME_MESSAGE } } }, false);
      }
    }
    // Start from a compact file holding exactly what is remembered.
    try {
      await mkdir(dirname(file), { recursive: true });
      await this.rewrite(file);
    } catch (e: unknown) {
      this.failed(e);
    }
  }

  private append(line: LogLine): void {
    this.appendRaw(JSON.stringify(line));
  }

  private appendRaw(json: string): void {
    const file = this.opts.file;
    if (file === undefined || this.writeFailed) return;
    this.writes = this.writes.then(async () => {
      if (this.handle === undefined) return;
      await this.handle.appendFile(json + '\n');
      this.linesInFile++;
      if (this.linesInFile > 2 * this.capacity + 16) await this.rewrite(file);
    }).catch((e: unknown) => this.failed(e));
  }

  /** Replace the log by the live entries (temp file + rename), and reopen it for appending. */
  private async rewrite(file: string): Promise<void> {
    const lines = [...this.entries].map(([id, e]) => JSON.stringify({ id, ...(e.verb === undefined ? {} : { verb: e.verb }), reply: e.reply }) + '\n');
    const tmp = `${file}.tmp`;
    await writeFile(tmp, lines.join(''), { mode: 0o600 });
    await rename(tmp, file);
    await this.handle?.close().catch(() => undefined);
    this.handle = await open(file, 'a', 0o600);
    this.linesInFile = lines.length;
  }

  private failed(e: unknown): void {
    if (!this.writeFailed) this.opts.logger.warn('reply_cache.write_failed', { file: this.opts.file, error: messageOf(e), action: 'replies are kept in memory only until the agent restarts' });
    this.writeFailed = true;
  }
}

function isLogLine(v: unknown): v is LogLine {
  if (!isPlainObject(v) || typeof v['id'] !== 'string') return false;
  if (v['verb'] !== undefined && typeof v['verb'] !== 'string') return false;
  if (v['started'] === true) return true;
  const r = v['reply'];
  return isPlainObject(r) && typeof r['ok'] === 'boolean' && (r['ok'] ? 'result' in r : isPlainObject(r['error']));
}

/** undefined = corrupt. A last line without its newline is a torn append, dropped. */
function parseLog(text: string): { lines: LogLine[]; torn: boolean } | undefined {
  if (text === '') return { lines: [], torn: false };
  const raw = text.split('\n');
  const last = raw.pop() ?? '';
  const lines: LogLine[] = [];
  for (const r of raw) {
    if (r === '') continue;
    let v: unknown;
    try {
      v = JSON.parse(r);
    } catch {
      return undefined;
    }
    if (!isLogLine(v)) return undefined;
    lines.push(v);
  }
  return { lines, torn: last !== '' };
}
