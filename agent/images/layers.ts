// Layered images: a container's root filesystem as a stack of verified tarballs. The image is the
// base (busybox, Debian); `layers` go above it, topmost first (a model layer, then runtime
// modules). Each layer is pulled and verified like an image and extracted once into
// cache/<sha256>/, so its identity is its digest: replacing one layer (a security patch, a new
// runtime) fetches and extracts that one only, and the others are found where they are.
//
// A layer is kept in the image store under a name that carries its digest, "<name>.<sha16>",
// so two versions of a layer never replace each other while containers still stack them, and
// `images`, `image verify`, `image rm` and `image gc` see layers like any image. A tarball
// already in the store under any name (the same digest) is not fetched again.
//
// What a request may stack (how many layers, each digest once, never the image itself) is the
// contract's, checked alike by the agent and the controller: shared/protocol/layers.ts.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { FeatherError } from '../../shared/errors.js';
import type { DataPaths } from '../paths.js';
import { validateName } from '../../shared/limits.js';
import { parseSha256 } from '../../shared/digest.js';
import { checkLayers, type LayerRef } from '../../shared/protocol/layers.js';
import { readConfig } from '../runtime/state.js';
import type { FetchProgress } from './blobs.js';

const NAME_ROOM = 63 - 1 - 16;

/** What layers need of the image store (ImageStore fits, and so does the reconciler's ImageSource).
 *  `ensureExtracted` is optional in the type only so that the control plane's narrower ImagesApi
 *  fits; the real ImageStore has it. */
export interface LayerStore {
  list(): Promise<ReadonlyArray<{ name: string; sha256: string }>>;
  pull(url: string, opts: { name: string; sha256: string; signal?: AbortSignal | undefined; onProgress?: (p: FetchProgress) => void }): Promise<unknown>;
  ensureExtracted?(name: string, signal?: AbortSignal): Promise<string>;
}

/** The store name of a layer: "<name>.<first 16 hex digits of its sha256>". */
export function layerImageName(ref: Pick<LayerRef, 'name' | 'sha256'>): string {
  const sha = parseSha256(ref.sha256);
  return validateName('image', `${validateName('image', ref.name).slice(0, NAME_ROOM).replace(/[._-]+$/, '')}.${sha.slice(0, 16)}`);
}

export interface EnsureLayersOptions {
  signal?: AbortSignal | undefined;
  onProgress?: ((layer: LayerRef, p: FetchProgress) => void) | undefined;
  /** The image's sha256, to refuse a layer that is the image itself. */
  imageSha256?: string | undefined;
}

/**
 * Pull (when missing) and extract (when not cached) each layer; resolves with the cache
 * directories in the order given (topmost first), ready for RunRequest.extraLayers.
 * Errors name the layer: "layer onnxruntime: CHECKSUM_MISMATCH …".
 */
export async function ensureLayers(store: LayerStore, refs: readonly LayerRef[], opts: EnsureLayersOptions = {}): Promise<string[]> {
  checkLayers(refs, opts.imageSha256);
  const ensureExtracted = store.ensureExtracted?.bind(store);
  if (ensureExtracted === undefined) throw new FeatherError('INTERNAL', 'this image store cannot extract layers (no ensureExtracted)');
  const held = new Map((await store.list()).map((i) => [i.sha256, i.name]));
  const dirs: string[] = [];
  for (const ref of refs) {
    const sha256 = parseSha256(ref.sha256);
    try {
      let name = held.get(sha256);
      if (name === undefined) {
        name = layerImageName(ref);
        await store.pull(ref.url, {
          name, sha256, signal: opts.signal,
          ...(opts.onProgress ? { onProgress: (p: FetchProgress) => opts.onProgress?.(ref, p) } : {}),
        });
        held.set(sha256, name);
      }
      dirs.push(await ensureExtracted(name, opts.signal));
    } catch (e: unknown) {
      if (e instanceof FeatherError) throw new FeatherError(e.code, `layer ${ref.name}: ${e.message}`, e.details, { cause: e });
      throw e;
    }
  }
  return dirs;
}

/**
 * Containers whose lowers include cache/<sha256> (or its chowned copies for --userns): what an
 * `inUseBy` for image rm/gc must also count once images can be layers.
 */
export function containersUsingLayer(paths: DataPaths, sha256: string): string[] {
  const dir = paths.cacheDir(sha256);
  let names: string[];
  try {
    names = readdirSync(paths.containers);
  } catch {
    return [];
  }
  const users: string[] = [];
  for (const name of names.sort()) {
    let lowers: string[] = [];
    try {
      lowers = readConfig(join(paths.containers, name, 'config.json'))?.lowers ?? [];
    } catch {
      continue;
    }
    if (lowers.some((l) => l === dir || l.startsWith(`${dir}@`))) users.push(name);
  }
  return users;
}
