// Typed errors with the contract's codes (../shared/DESIGN.md, "Reply").
// Every error that can reach a user carries a code and a message that says what to do.

export const ERROR_CODES = [
  'BAD_REQUEST',
  'UNKNOWN_VERB',
  'NOT_FOUND',
  'CONFLICT',
  'CHECKSUM_MISMATCH',
  'PULL_FAILED',
  'NO_SPACE',
  'RUNTIME_ERROR',
  'UNAUTHORIZED',
  'INTERNAL',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export class FeatherError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'FeatherError';
    this.code = code;
    this.details = details;
  }

  toJSON(): { code: ErrorCode; message: string } {
    return { code: this.code, message: this.message };
  }
}

export function isFeatherError(e: unknown): e is FeatherError {
  return e instanceof FeatherError;
}

export function hasCode(e: unknown, code: ErrorCode): boolean {
  return isFeatherError(e) && e.code === code;
}

/** The errno code of a Node system error ('ENOENT', …), or undefined. */
export function errnoCode(e: unknown): string | undefined {
  if (typeof e === 'object' && e !== null && 'code' in e && typeof (e as { code: unknown }).code === 'string') {
    return (e as { code: string }).code;
  }
  return undefined;
}

export function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Wrap anything thrown into a FeatherError, keeping FeatherErrors as they are. */
export function toFeatherError(e: unknown, fallback: ErrorCode = 'INTERNAL'): FeatherError {
  if (isFeatherError(e)) return e;
  const errno = errnoCode(e);
  if (errno === 'ENOSPC' || errno === 'EDQUOT') {
    return new FeatherError('NO_SPACE', `no space left on the device: ${messageOf(e)}; free disk space (feather-agent gc, image rm) and retry`, undefined, { cause: e });
  }
  return new FeatherError(fallback, messageOf(e), undefined, { cause: e });
}

export const badRequest = (message: string): FeatherError => new FeatherError('BAD_REQUEST', message);
export const notFound = (message: string): FeatherError => new FeatherError('NOT_FOUND', message);
export const conflict = (message: string): FeatherError => new FeatherError('CONFLICT', message);
