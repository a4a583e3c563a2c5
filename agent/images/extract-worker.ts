// The worker thread side of WorkerExtractor (extract-client.ts): a StreamExtractor fed by
// messages. Messages are handled strictly in order; each gets one reply with its id.
import { parentPort, workerData } from 'node:worker_threads';
import { isFeatherError, messageOf } from '../../shared/errors.js';
import type { Logger } from '../../shared/logging.js';
import { StreamExtractor } from './extract.js';

export type ExtractRequest =
  | { id: number; op: 'start' }
  | { id: number; op: 'write'; chunk: Uint8Array }
  | { id: number; op: 'finish' }
  | { id: number; op: 'abort' };

export type ExtractReply =
  | { id: number; ok: true; value?: unknown }
  | { id: number; ok: false; error: { code: string; message: string; details?: unknown } };

/** A log line of the extractor's, written by the main thread's logger (its level and sink). */
export interface ExtractLog { log: { level: 'debug' | 'info' | 'warn' | 'error'; event: string; fields?: Record<string, unknown> | undefined } }

export interface ExtractWorkerData {
  label: string;
  target: string;
  /** Checked by the worker on the bytes it is given (a file's extraction; a pull checks its own). */
  sha256?: string | undefined;
  /** The file being extracted, if it is one (see ExtractOptions.archive). */
  archive?: string | undefined;
  reserveBytes?: number | undefined;
}

const port = parentPort;
if (port !== null) {
  const data = workerData as ExtractWorkerData;
  const forward = (level: ExtractLog['log']['level']) => (event: string, fields?: Record<string, unknown>): void => {
    port.postMessage({ log: { level, event, fields } } satisfies ExtractLog);
  };
  const logger: Logger = {
    ns: 'agent:images', debug: forward('debug'), info: forward('info'), warn: forward('warn'), error: forward('error'),
    child: () => logger,
  };
  const x = new StreamExtractor(data.label, data.target, { sha256: data.sha256, archive: data.archive, reserveBytes: data.reserveBytes, logger });
  const handle = async (m: ExtractRequest): Promise<unknown> => {
    switch (m.op) {
      case 'start': return x.start();
      case 'write': return x.write(Buffer.from(m.chunk.buffer, m.chunk.byteOffset, m.chunk.byteLength));
      case 'finish': return x.finish();
      case 'abort': return x.abort();
    }
  };
  let queue = Promise.resolve();
  port.on('message', (m: ExtractRequest) => {
    queue = queue.then(async () => {
      try {
        port.postMessage({ id: m.id, ok: true, value: await handle(m) } satisfies ExtractReply);
      } catch (e: unknown) {
        const error = isFeatherError(e) ? { code: e.code, message: e.message, details: e.details } : { code: 'RUNTIME_ERROR', message: messageOf(e) };
        port.postMessage({ id: m.id, ok: false, error } satisfies ExtractReply);
      }
    });
  });
}
