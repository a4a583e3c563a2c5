// The daemon's image store: every image pull, from a command or from the reconciler, is also
// recorded in the pull metrics (feather_image_pull_seconds, _bytes_total, _failures_total{reason}).
import { toFeatherError } from '../../shared/errors.js';
import { ImageStore, type PullResult } from '../images/store.js';

export interface PullRecord {
  seconds: number;
  /** Bytes fetched; absent when nothing was transferred (the image was already there) or on failure. */
  bytes?: number;
  /** The error code of a failed pull. */
  failure?: string;
}

export class MeteredImageStore extends ImageStore {
  /** Set once the metrics exist (they live in the telemetry service, started after the store). */
  onPullFinished: ((r: PullRecord) => void) | undefined;

  override async pull(url: string, opts: Parameters<ImageStore['pull']>[1]): Promise<PullResult> {
    const started = performance.now();
    const seconds = (): number => (performance.now() - started) / 1000;
    try {
      const r = await super.pull(url, opts);
      // durationMs 0 is the store's "already here, nothing fetched" answer.
      this.onPullFinished?.(r.durationMs > 0 ? { seconds: seconds(), bytes: r.bytes } : { seconds: seconds() });
      return r;
    } catch (e: unknown) {
      this.onPullFinished?.({ seconds: seconds(), failure: toFeatherError(e).code });
      throw e;
    }
  }
}
