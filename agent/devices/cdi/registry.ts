// The CDI spec files on this host: /etc/cdi then /var/run/cdi (both under a configurable root),
// each directory read one level deep, *.json, *.yaml and *.yml. A device defined in a later
// directory wins over the same device in an earlier one (the reference implementation's order);
// the same device twice in one directory is a conflict, reported when that device is asked for.
// A file that cannot be read or validated does not hide the others: its error is kept and shown
// when a device of its kind (or an unknown device) is asked for.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { FeatherError, isFeatherError, messageOf } from '../../../shared/errors.js';
import type { Logger } from '../../../shared/logging.js';
import { isPlainObject } from '../../../shared/protocol/fields.js';
import { naturalCompare } from '../host-fs.js';
import { SPEC_EXTENSIONS, parseCdiDocument, validateCdiDocument } from './spec.js';
import type { CdiDeviceSpec, CdiSpecFile } from './types.js';

/** Where CDI specs live, in rising priority (as on the host; joined to the CDI root). */
export const CDI_SPEC_DIRS: readonly string[] = ['/etc/cdi', '/var/run/cdi'];

export interface CdiLoadError {
  file: string;
  /** The kind the file declares, when it could be read that far. */
  kind: string | undefined;
  error: FeatherError;
}

/** One device as defined in one spec file. */
export interface CdiDeviceEntry {
  /** "vendor.com/class=name" */
  qualified: string;
  specFile: CdiSpecFile;
  device: CdiDeviceSpec;
  /** Its index in the file's devices (for error messages). */
  index: number;
}

export interface CdiRegistryOptions {
  /** Root the spec directories (and the host paths specs name) are under. Default "/". */
  root?: string | undefined;
  /** Spec directories as on the host, lowest priority first. Default CDI_SPEC_DIRS. */
  dirs?: readonly string[] | undefined;
  logger?: Logger | undefined;
}

export class CdiRegistry {
  readonly root: string;
  readonly dirs: readonly string[];
  readonly specs: CdiSpecFile[] = [];
  readonly errors: CdiLoadError[] = [];
  /** Winning definition per qualified name. */
  private readonly byName = new Map<string, CdiDeviceEntry>();
  /** Same name defined twice at the winning priority: the files. */
  private readonly conflicts = new Map<string, string[]>();

  private constructor(root: string, dirs: readonly string[]) {
    this.root = root;
    this.dirs = dirs;
  }

  /** Read every spec file now. Never throws for a bad file (see `errors`). */
  static load(opts: CdiRegistryOptions = {}): CdiRegistry {
    const reg = new CdiRegistry(opts.root ?? '/', opts.dirs ?? CDI_SPEC_DIRS);
    for (const [priority, dir] of reg.dirs.entries()) {
      for (const file of specFilesIn(join(reg.root, dir))) reg.loadFile(file, priority, opts.logger);
    }
    return reg;
  }

  private loadFile(file: string, priority: number, log: Logger | undefined): void {
    let kind: string | undefined;
    try {
      const doc = parseCdiDocument(readFileSync(file, 'utf8'), file);
      if (isPlainObject(doc) && typeof doc['kind'] === 'string') kind = doc['kind'];
      const spec = validateCdiDocument(doc, file);
      const specFile: CdiSpecFile = { file, priority, spec };
      this.specs.push(specFile);
      for (const [index, device] of spec.devices.entries()) this.add({ qualified: `${spec.kind}=${device.name}`, specFile, device, index });
    } catch (e: unknown) {
      const error = isFeatherError(e) ? e : new FeatherError('BAD_REQUEST', `CDI spec ${file} cannot be read: ${messageOf(e)}`, { file });
      this.errors.push({ file, kind, error });
      log?.warn('cdi.spec_invalid', { file, error: error.message });
    }
  }

  private add(entry: CdiDeviceEntry): void {
    const current = this.byName.get(entry.qualified);
    if (current === undefined || entry.specFile.priority > current.specFile.priority) {
      this.byName.set(entry.qualified, entry);
      this.conflicts.delete(entry.qualified);
      return;
    }
    if (entry.specFile.priority === current.specFile.priority) {
      const files = this.conflicts.get(entry.qualified) ?? [current.specFile.file];
      files.push(entry.specFile.file);
      this.conflicts.set(entry.qualified, files);
    }
  }

  /** Kinds with at least one valid spec, sorted. */
  kinds(): string[] {
    return [...new Set(this.specs.map((s) => s.spec.kind))].sort();
  }

  /** Every defined device's qualified name, sorted. */
  deviceNames(): string[] {
    return [...this.byName.keys()].sort(naturalCompare);
  }

  /** The winning definition, or undefined. Throws CONFLICT when two files of one directory define it. */
  get(qualified: string): CdiDeviceEntry | undefined {
    const files = this.conflicts.get(qualified);
    if (files !== undefined) {
      throw new FeatherError('CONFLICT', `CDI device "${qualified}" is defined in more than one spec file of the same directory: ${files.join(', ')}; remove the duplicate`);
    }
    return this.byName.get(qualified);
  }

  /** The devices of one kind, in file and definition order (winning definitions only). */
  devicesOf(kind: string): CdiDeviceEntry[] {
    return [...this.byName.values()]
      .filter((e) => e.specFile.spec.kind === kind)
      .sort((a, b) => naturalCompare(a.device.name, b.device.name));
  }

  /** Load errors that may explain a missing device of `kind` (files of that kind, or of no readable kind). */
  errorsFor(kind: string): CdiLoadError[] {
    return this.errors.filter((e) => e.kind === kind || e.kind === undefined);
  }

  /** The spec directories as searched ("/etc/cdi, /var/run/cdi", under the root when it is not "/"). */
  describeDirs(): string {
    const list = this.dirs.join(', ');
    return this.root === '/' ? list : `${list} under ${this.root}`;
  }
}

/** Spec files of one directory, sorted; hidden files and other extensions skipped. */
function specFilesIn(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names
    .filter((n) => !n.startsWith('.') && SPEC_EXTENSIONS.some((ext) => n.toLowerCase().endsWith(ext)))
    .sort(naturalCompare)
    .map((n) => join(dir, n))
    .filter((p) => {
      try {
        return statSync(p).isFile();
      } catch {
        return false;
      }
    });
}
