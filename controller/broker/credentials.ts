// Device and admin credentials: issue (featherctl device add ID), revoke, verify at CONNECT.
// The admin token lives in <dataDir>/admin-token (mode 0600), created on first start; featherctl
// on the same machine reads it from there. The store keeps salted hashes only.
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FeatherError, messageOf } from '../../shared/errors.js';
import type { Logger } from '../../shared/logging.js';
import type { Store } from '../store/store.js';
import { ADMIN, ADMIN_USERNAME, isValidDeviceId, type Identity } from './acl.js';
import { generateToken, hashToken, mosquittoHash, sameSecret, verifyToken } from './tokens.js';

export const ADMIN_TOKEN_FILE = 'admin-token';

/** Path of the admin token file in a controller data dir. */
export function adminTokenPath(dataDir: string): string {
  return join(dataDir, ADMIN_TOKEN_FILE);
}

/** Read the admin token (featherctl uses this); NOT_FOUND when the controller never started on this data dir. */
export function readAdminToken(dataDir: string): string {
  const file = adminTokenPath(dataDir);
  try {
    const token = readFileSync(file, 'utf8').trim();
    if (token !== '') return token;
  } catch (e: unknown) {
    throw new FeatherError('NOT_FOUND', `cannot read the admin token ${file} (${messageOf(e)}); start feather-controller once with --data-dir ${dataDir}, or pass the token explicitly`);
  }
  throw new FeatherError('NOT_FOUND', `the admin token file ${file} is empty; delete it and restart feather-controller to create a new one`);
}

/** Create <dataDir>/admin-token (0600) when missing; returns the token and whether it was created. */
export function ensureAdminTokenFile(dataDir: string, logger?: Logger): { token: string; created: boolean } {
  const file = adminTokenPath(dataDir);
  if (existsSync(file)) {
    const mode = statSync(file).mode & 0o777;
    if ((mode & 0o077) !== 0) {
      chmodSync(file, 0o600);
      logger?.warn('admin_token.mode_fixed', { file, was: mode.toString(8), now: '600' });
    }
    return { token: readAdminToken(dataDir), created: false };
  }
  const token = generateToken();
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${token}\n`, { mode: 0o600, flag: 'wx' });
  renameSync(tmp, file);
  logger?.info('admin_token.created', { file });
  return { token, created: true };
}

export interface IssuedToken {
  identity: string;
  /** Shown once; only hashes are kept. */
  token: string;
}

/** Called after a credential is revoked or replaced, so live sessions of that identity can be closed. */
export type RevokeListener = (identity: string) => void;

export class Credentials {
  private adminToken = '';
  /** sha256(identity, token) of tokens verified since the last change: reconnect storms skip scrypt. */
  private readonly verified = new Map<string, Set<string>>();
  /** Bumped on every issue/revoke of an identity. */
  private readonly epochs = new Map<string, number>();
  private readonly revokeListeners = new Set<RevokeListener>();

  constructor(private readonly store: Store, private readonly logger: Logger) {}

  /**
   * Load (or create) the admin token and make sure the store holds its hashes (the file wins:
   * an operator may replace it by hand; the next start picks the new one up).
   */
  async initAdmin(dataDir: string): Promise<string> {
    const { token } = ensureAdminTokenFile(dataDir, this.logger);
    this.adminToken = token;
    const current = this.store.activeCredentials(ADMIN_USERNAME);
    let matches = false;
    for (const c of current) if (await verifyToken(token, c.hash)) matches = true;
    if (!matches || current.length !== 1) {
      this.store.addCredential({ identity: ADMIN_USERNAME, kind: 'admin', hash: await hashToken(token), mosquittoHash: mosquittoHash(token) });
      if (current.length > 0) this.logger.info('admin_token.changed', { action: 'admin hashes updated from the admin-token file; regenerate the mosquitto password file if you use one' });
    }
    return token;
  }

  get admin(): string {
    return this.adminToken;
  }

  verifyAdmin(token: string): boolean {
    return this.adminToken !== '' && sameSecret(token, this.adminToken);
  }

  /** Issue a new token for a device (its previous one is revoked). Creates the device record. */
  async issue(deviceId: string): Promise<IssuedToken> {
    if (!isValidDeviceId(deviceId)) {
      throw new FeatherError('BAD_REQUEST', `device id "${deviceId}" cannot be used: use 1-128 printable characters without spaces, '/', '+' or '#', and not "${ADMIN_USERNAME}"`);
    }
    const token = generateToken();
    const hash = await hashToken(token);
    this.store.transaction(() => {
      this.store.ensureDevice(deviceId);
      this.store.addCredential({ identity: deviceId, kind: 'device', hash, mosquittoHash: mosquittoHash(token) });
    });
    this.changed(deviceId);
    this.logger.info('credential.issued', { deviceId });
    return { identity: deviceId, token };
  }

  /** Revoke a device's tokens; its live connections are closed (embedded broker). */
  revoke(deviceId: string): number {
    const n = this.store.revokeCredentials(deviceId);
    this.changed(deviceId);
    this.logger.info('credential.revoked', { deviceId, count: n });
    return n;
  }

  onRevoke(listener: RevokeListener): () => void {
    this.revokeListeners.add(listener);
    return () => { this.revokeListeners.delete(listener); };
  }

  /** The identity for these CONNECT credentials, or undefined. */
  async verify(username: string | undefined, password: string | undefined): Promise<Identity | undefined> {
    if (username === undefined || password === undefined || username === '' || password === '') return undefined;
    if (username === ADMIN_USERNAME) return this.verifyAdmin(password) ? ADMIN : undefined;
    if (!isValidDeviceId(username)) return undefined;
    const fingerprint = createHash('sha256').update(username).update('\0').update(password).digest('base64');
    if (this.verified.get(username)?.has(fingerprint)) return { kind: 'device', deviceId: username };
    const epoch = this.epochs.get(username) ?? 0;
    for (const c of this.store.activeCredentials(username)) {
      if (c.kind !== 'device' || !(await verifyToken(password, c.hash))) continue;
      // A revoke or a new token while scrypt ran wins: check again, and cache only if nothing changed.
      if ((this.epochs.get(username) ?? 0) !== epoch) return this.verify(username, password);
      let set = this.verified.get(username);
      if (set === undefined) this.verified.set(username, (set = new Set()));
      set.add(fingerprint);
      return { kind: 'device', deviceId: username };
    }
    return undefined;
  }

  private changed(identity: string): void {
    this.epochs.set(identity, (this.epochs.get(identity) ?? 0) + 1);
    this.verified.delete(identity);
    for (const l of this.revokeListeners) {
      try {
        l(identity);
      } catch (e: unknown) {
        this.logger.error('credential.listener_failed', { identity, error: messageOf(e) });
      }
    }
  }
}
