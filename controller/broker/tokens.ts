// Tokens and their hashes. A token is 32 random bytes in base64url (43 characters). The store
// keeps two salted hashes of it, never the token:
//   scrypt$N$r$p$<salt b64>$<hash b64>    checked by the embedded broker (node:crypto scrypt);
//   $7$<iterations>$<salt b64>$<hash b64>   Mosquitto's PBKDF2-SHA512 format (mosquitto_passwd's
//                                           default since 2.0), for featherctl's password file.
// Tokens are random, not chosen by people, so the work factors only need to make a stolen
// database useless, not to slow down guessing a weak password: scrypt N=4096 costs ~13 ms here,
// which keeps 2,000 devices reconnecting at once to a few seconds of the thread pool.
import { pbkdf2Sync, randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto';

const SCRYPT = { N: 4096, r: 8, p: 1, keylen: 32, saltBytes: 16 };
const MOSQUITTO = { iterations: 101, saltBytes: 12, keylen: 64 };

export function generateToken(): string {
  return randomBytes(32).toString('base64url');
}

function scrypt(password: string, salt: Buffer, keylen: number, opts: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scryptCb(password, salt, keylen, opts, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

export async function hashToken(token: string): Promise<string> {
  const salt = randomBytes(SCRYPT.saltBytes);
  const key = await scrypt(token, salt, SCRYPT.keylen, { N: SCRYPT.N, r: SCRYPT.r, p: SCRYPT.p });
  return `scrypt$${SCRYPT.N}$${SCRYPT.r}$${SCRYPT.p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

/** True when `token` hashes to `stored`; false for a wrong token or a malformed hash. */
export async function verifyToken(token: string, stored: string): Promise<boolean> {
  const parts = stored.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [N, r, p] = parts.slice(1, 4).map(Number);
  const salt = Buffer.from(parts[4] ?? '', 'base64');
  const expected = Buffer.from(parts[5] ?? '', 'base64');
  if (N === undefined || r === undefined || p === undefined || ![N, r, p].every((x) => Number.isInteger(x) && x > 0) || salt.length === 0 || expected.length === 0) return false;
  try {
    const key = await scrypt(token, salt, expected.length, { N, r, p, maxmem: 256 * N * r + 1024 * 1024 });
    return timingSafeEqual(key, expected);
  } catch {
    return false;
  }
}

/** Mosquitto's `$7$` line for `password` (what `mosquitto_passwd -b FILE user password` writes after "user:"). */
export function mosquittoHash(password: string, opts: { iterations?: number; salt?: Buffer } = {}): string {
  const iterations = opts.iterations ?? MOSQUITTO.iterations;
  const salt = opts.salt ?? randomBytes(MOSQUITTO.saltBytes);
  const key = pbkdf2Sync(password, salt, iterations, MOSQUITTO.keylen, 'sha512');
  return `$7$${iterations}$${salt.toString('base64')}$${key.toString('base64')}`;
}

/** Check a password against a Mosquitto `$7$` hash. */
export function verifyMosquittoHash(password: string, stored: string): boolean {
  const m = /^\$7\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$/.exec(stored);
  if (m === null) return false;
  const expected = Buffer.from(m[3] ?? '', 'base64');
  const key = pbkdf2Sync(password, Buffer.from(m[2] ?? '', 'base64'), Number(m[1]), expected.length, 'sha512');
  return key.length === expected.length && timingSafeEqual(key, expected);
}

/** Constant-time string comparison (different lengths compare unequal without a early exit on content). */
export function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  if (x.length !== y.length) {
    timingSafeEqual(x, x);
    return false;
  }
  return timingSafeEqual(x, y);
}
