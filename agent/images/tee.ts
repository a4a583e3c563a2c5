// A second consumer of a download's bytes while they arrive: the image store extracts a pulled
// archive during the transfer instead of reading it back afterwards (the `curl | tee | tar`
// shape). The sink is best effort: whatever goes wrong with it (a resume it cannot follow, a
// refused archive, a full disk) only drops it, and the layer is extracted from the verified file
// later, as before. A sink's work is kept only after the download verified (finish()).
import { messageOf } from '../../shared/errors.js';
import type { Logger } from '../../shared/logging.js';

export interface BlobSink {
  /** The first byte is coming (byte 0 of the blob). */
  start(): Promise<void>;
  /** The next bytes; resolves when the sink can take more (the download waits for it). */
  write(chunk: Buffer): Promise<void>;
  /** Every byte was written and the blob matched its digest. */
  finish(): Promise<void>;
  /** Give up and remove what was made. Never throws. */
  abort(): Promise<void>;
}

/** Feeds one sink from one transfer, and drops it as soon as it cannot hold exactly the file's bytes. */
export class SinkFeed {
  private fed = 0;
  private started = false;

  constructor(private sink: BlobSink | undefined, private readonly log: Logger, private readonly what: Record<string, unknown>) {}

  /** Before each request: the sink goes on only if it holds exactly the bytes the file holds. */
  async resumeAt(held: number): Promise<void> {
    if (this.sink !== undefined && this.fed !== held) await this.drop(`the transfer went on from byte ${held} of which the sink has ${this.fed}`);
  }

  /** After a chunk reached the file (and the hash). */
  async write(chunk: Buffer): Promise<void> {
    const sink = this.sink;
    if (sink === undefined) return;
    try {
      if (!this.started) {
        this.started = true;
        await sink.start();
      }
      await sink.write(chunk);
      this.fed += chunk.length;
    } catch (e: unknown) {
      await this.drop(messageOf(e));
    }
  }

  /** The blob verified with `held` bytes: true when the sink took all of them and finished. */
  async finish(held: number): Promise<boolean> {
    const sink = this.sink;
    if (sink === undefined) return false;
    if (this.fed !== held || !this.started) {
      await this.drop(`the sink has ${this.fed} of ${held} bytes`);
      return false;
    }
    this.sink = undefined;
    try {
      await sink.finish();
      return true;
    } catch (e: unknown) {
      this.log.info('pull.tee_dropped', { ...this.what, reason: messageOf(e) });
      await sink.abort();
      return false;
    }
  }

  async drop(reason: string): Promise<void> {
    const sink = this.sink;
    if (sink === undefined) return;
    this.sink = undefined;
    if (this.started) this.log.info('pull.tee_dropped', { ...this.what, reason });
    await sink.abort();
  }
}
