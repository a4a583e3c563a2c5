// images/manifest.json: one record per image (name, sha256, size, source, pulledAt).
//
// Written as a JSON array sorted by name, atomically (temp file, fsync, rename, fsync of the
// directory): a reader sees the old manifest or the new one, never a torn one. Read tolerant
// of a missing file (no images yet) and of the other shapes the contract allows
// ({"images": [...]}, or an object keyed by name). A file that is not JSON or whose records
// are malformed is reported with its path and what to do, never as a crash.
import { readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { FeatherError, errnoCode, messageOf } from '../../shared/errors.js';
import { validateName } from '../../shared/limits.js';
import { isSha256 } from '../../shared/digest.js';
import { writeFileAtomic } from '../../shared/fs-durable.js';

export interface ManifestEntry {
  name: string;
  sha256: string;
  /** Bytes of the tarball. */
  size: number;
  /** Where it came from: a URL, or `recipe:<name>`. */
  source: string;
  /** ISO 8601 time it was pulled, imported or built. */
  pulledAt: string;
}

function corrupt(path: string, why: string): FeatherError {
  return new FeatherError(
    'INTERNAL',
    `${path} is corrupt (${why}); restore it from a backup, or move it aside and re-import the images (feather-agent image import / pull)`,
    { path },
  );
}

function toEntry(path: string, raw: unknown, where: string, nameFromKey?: string): ManifestEntry {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw corrupt(path, `${where} is not an object`);
  const r = raw as Record<string, unknown>;
  const name = r['name'] ?? nameFromKey;
  try {
    validateName('image', name);
  } catch {
    throw corrupt(path, `${where} has an invalid name ${JSON.stringify(name)}`);
  }
  if (!isSha256(r['sha256'])) throw corrupt(path, `${where} has no valid sha256`);
  const size = r['size'];
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw corrupt(path, `${where} has no valid size`);
  const source = typeof r['source'] === 'string' ? r['source'] : '';
  const pulledAt = typeof r['pulledAt'] === 'string' ? r['pulledAt'] : '';
  return { name: name as string, sha256: r['sha256'], size, source, pulledAt };
}

/** Parse manifest text (any accepted shape) into entries; throws INTERNAL naming `path`. */
export function parseManifest(text: string, path: string): ManifestEntry[] {
  if (text.trim() === '') return [];
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e: unknown) {
    throw corrupt(path, `not JSON: ${messageOf(e)}`);
  }
  let entries: ManifestEntry[];
  if (Array.isArray(doc)) {
    entries = doc.map((r, i) => toEntry(path, r, `record ${i}`));
  } else if (typeof doc === 'object' && doc !== null && Array.isArray((doc as { images?: unknown }).images)) {
    entries = ((doc as { images: unknown[] }).images).map((r, i) => toEntry(path, r, `record ${i}`));
  } else if (typeof doc === 'object' && doc !== null) {
    entries = Object.entries(doc as Record<string, unknown>).map(([k, r]) => toEntry(path, r, `record "${k}"`, k));
  } else {
    throw corrupt(path, 'neither an array nor an object');
  }
  const seen = new Set<string>();
  for (const e of entries) {
    if (seen.has(e.name)) throw corrupt(path, `image "${e.name}" appears twice`);
    seen.add(e.name);
  }
  return entries;
}

export function serializeManifest(entries: readonly ManifestEntry[]): string {
  const sorted = [...entries].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const clean = sorted.map(({ name, sha256, size, source, pulledAt }) => ({ name, sha256, size, source, pulledAt }));
  return JSON.stringify(clean, null, 2) + '\n';
}

/**
 * The manifest file. Reads are synchronous (a small file, and the runtime's image lookup is
 * synchronous); updates are serialised within this object so that concurrent pulls do not
 * lose each other's records.
 */
export class Manifest {
  private queue: Promise<unknown> = Promise.resolve();

  constructor(readonly path: string) {}

  read(): ManifestEntry[] {
    let text: string;
    try {
      text = readFileSync(this.path, 'utf8');
    } catch (e: unknown) {
      if (errnoCode(e) === 'ENOENT') return [];
      throw new FeatherError('INTERNAL', `cannot read ${this.path}: ${messageOf(e)}`, { path: this.path }, { cause: e });
    }
    return parseManifest(text, this.path);
  }

  get(name: string): ManifestEntry | undefined {
    return this.read().find((e) => e.name === name);
  }

  async write(entries: readonly ManifestEntry[]): Promise<void> {
    await mkdir(dirname(this.path), { recursive: true });
    await writeFileAtomic(this.path, serializeManifest(entries));
  }

  /** Read, change and write, one update at a time. `change` returns the new entries. */
  update<T>(change: (entries: ManifestEntry[]) => { entries: ManifestEntry[]; result: T } | Promise<{ entries: ManifestEntry[]; result: T }>): Promise<T> {
    const run = async (): Promise<T> => {
      const { entries, result } = await change(this.read());
      await this.write(entries);
      return result;
    };
    const next = this.queue.then(run, run);
    this.queue = next.catch(() => undefined);
    return next;
  }

  upsert(entry: ManifestEntry): Promise<void> {
    return this.update((entries) => ({ entries: [...entries.filter((e) => e.name !== entry.name), entry], result: undefined }));
  }

  /** Remove `name`; returns the removed record, or undefined when there was none. */
  remove(name: string): Promise<ManifestEntry | undefined> {
    return this.update((entries) => ({ entries: entries.filter((e) => e.name !== name), result: entries.find((e) => e.name === name) }));
  }
}
