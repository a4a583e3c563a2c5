// Awaits a promise that must fail with a FeatherError and returns the error, so a test can
// assert on its code and message (t.rejects checks a pattern, not the message's parts).
import { FeatherError } from '../../shared/errors.js';

export async function failure(p: Promise<unknown>): Promise<FeatherError> {
  try {
    await p;
  } catch (e: unknown) {
    if (e instanceof FeatherError) return e;
    throw e;
  }
  throw new Error('expected a failure');
}
