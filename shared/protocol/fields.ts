// Typed readers for untrusted JSON objects. Every failure is a BAD_REQUEST that names the field
// by its path ("limits.memory", "env.PATH", "args[2]") and says what was expected.
import { FeatherError } from '../errors.js';

export type JsonObject = Record<string, unknown>;

export function isPlainObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v)}`;
  if (typeof v === 'object') return 'an object';
  return `${typeof v} ${String(v)}`;
}

function bad(message: string): FeatherError {
  return new FeatherError('BAD_REQUEST', message);
}

/** Reads fields of one object; `where` prefixes field names in messages ("" at the top, "limits." inside). */
export class Fields {
  private readonly seen = new Set<string>();

  constructor(private readonly obj: JsonObject, private readonly where: string, private readonly what: string) {}

  static of(value: unknown, path: string, what: string): Fields {
    if (!isPlainObject(value)) throw bad(`${path} must be an object, got ${describe(value)}`);
    return new Fields(value, `${path}.`, what);
  }

  private path(key: string): string { return `${this.where}${key}`; }

  private get(key: string): unknown {
    this.seen.add(key);
    return this.obj[key];
  }

  /** undefined and null both mean "not given". */
  private optional(key: string): unknown {
    const v = this.get(key);
    return v === null ? undefined : v;
  }

  string(key: string, opts: { max?: number; pattern?: RegExp; hint?: string } = {}): string {
    const v = this.optString(key, opts);
    if (v === undefined) throw bad(`field ${this.path(key)} is required${opts.hint ? ` (${opts.hint})` : ''}`);
    return v;
  }

  optString(key: string, opts: { max?: number; pattern?: RegExp; hint?: string } = {}): string | undefined {
    const v = this.optional(key);
    if (v === undefined) return undefined;
    if (typeof v !== 'string') throw bad(`field ${this.path(key)} must be a string, got ${describe(v)}`);
    const max = opts.max ?? 4096;
    if (v.length > max) throw bad(`field ${this.path(key)} is longer than ${max} characters`);
    if (opts.pattern && !opts.pattern.test(v)) throw bad(`field ${this.path(key)} ${describe(v)} is not valid${opts.hint ? `: ${opts.hint}` : ''}`);
    return v;
  }

  /** A name checked by `check` (validateName), which throws its own BAD_REQUEST. */
  name(key: string, check: (v: unknown) => string): string {
    const v = this.optional(key);
    if (v === undefined) throw bad(`field ${this.path(key)} is required`);
    return check(v);
  }

  optEnum<T extends string>(key: string, allowed: readonly T[]): T | undefined {
    const v = this.optional(key);
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
      throw bad(`field ${this.path(key)} must be one of ${allowed.map((a) => `"${a}"`).join(', ')}, got ${describe(v)}`);
    }
    return v as T;
  }

  optBoolean(key: string): boolean | undefined {
    const v = this.optional(key);
    if (v === undefined) return undefined;
    if (typeof v !== 'boolean') throw bad(`field ${this.path(key)} must be true or false, got ${describe(v)}`);
    return v;
  }

  optInteger(key: string, min: number, max: number): number | undefined {
    const v = this.optional(key);
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
      throw bad(`field ${this.path(key)} must be a whole number from ${min} to ${max}, got ${describe(v)}`);
    }
    return v;
  }

  /** A number or a numeric string, handed to `parse` (parseCpus, parseMemory…), which throws its own BAD_REQUEST. */
  optParsed<T>(key: string, parse: (v: string | number) => T): T | undefined {
    const v = this.optional(key);
    if (v === undefined) return undefined;
    if (typeof v !== 'string' && typeof v !== 'number') throw bad(`field ${this.path(key)} must be a number or a string, got ${describe(v)}`);
    try {
      return parse(v);
    } catch (e: unknown) {
      if (e instanceof FeatherError) throw bad(`field ${this.path(key)}: ${e.message}`);
      throw e;
    }
  }

  optStringArray(key: string, opts: { maxItems: number; maxLength?: number; pattern?: RegExp; hint?: string }): string[] | undefined {
    const v = this.optional(key);
    if (v === undefined) return undefined;
    if (!Array.isArray(v)) throw bad(`field ${this.path(key)} must be an array of strings, got ${describe(v)}`);
    if (v.length > opts.maxItems) throw bad(`field ${this.path(key)} has ${v.length} items; at most ${opts.maxItems} are allowed`);
    const maxLength = opts.maxLength ?? 4096;
    return v.map((item: unknown, i) => {
      if (typeof item !== 'string') throw bad(`field ${this.path(key)}[${i}] must be a string, got ${describe(item)}`);
      if (item.length > maxLength) throw bad(`field ${this.path(key)}[${i}] is longer than ${maxLength} characters`);
      if (opts.pattern && !opts.pattern.test(item)) throw bad(`field ${this.path(key)}[${i}] ${describe(item)} is not valid${opts.hint ? `: ${opts.hint}` : ''}`);
      return item;
    });
  }

  /** An object of string values (env, labels). */
  optStringMap(key: string, opts: { maxEntries: number; keyPattern: RegExp; keyHint: string }): Record<string, string> | undefined {
    const v = this.optional(key);
    if (v === undefined) return undefined;
    if (!isPlainObject(v)) throw bad(`field ${this.path(key)} must be an object of strings, got ${describe(v)}`);
    const entries = Object.entries(v);
    if (entries.length > opts.maxEntries) throw bad(`field ${this.path(key)} has ${entries.length} entries; at most ${opts.maxEntries} are allowed`);
    const out: Record<string, string> = {};
    for (const [k, item] of entries) {
      if (!opts.keyPattern.test(k)) throw bad(`field ${this.path(key)} has the key ${JSON.stringify(k)}: ${opts.keyHint}`);
      if (typeof item !== 'string') throw bad(`field ${this.path(key)}.${k} must be a string, got ${describe(item)}`);
      out[k] = item;
    }
    return out;
  }

  /** An optional nested object, read with its own Fields (unknown keys refused there too). */
  optObject<T>(key: string, read: (f: Fields) => T): T | undefined {
    const v = this.optional(key);
    if (v === undefined) return undefined;
    const f = Fields.of(v, this.path(key), this.what);
    const out = read(f);
    f.done();
    return out;
  }

  optArray<T>(key: string, maxItems: number, read: (f: Fields, i: number) => T): T[] | undefined {
    const v = this.optional(key);
    if (v === undefined) return undefined;
    if (!Array.isArray(v)) throw bad(`field ${this.path(key)} must be an array, got ${describe(v)}`);
    if (v.length > maxItems) throw bad(`field ${this.path(key)} has ${v.length} items; at most ${maxItems} are allowed`);
    return v.map((item: unknown, i) => {
      const f = Fields.of(item, `${this.path(key)}[${i}]`, this.what);
      const out = read(f, i);
      f.done();
      return out;
    });
  }

  /** Refuse fields nobody read: a typo ("limit" for "limits") must not be silently ignored. */
  done(ignore: readonly string[] = []): void {
    const unknown = Object.keys(this.obj).filter((k) => !this.seen.has(k) && !ignore.includes(k));
    if (unknown.length > 0) {
      const known = [...this.seen].map((k) => this.path(k)).join(', ');
      throw bad(`unknown field${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => this.path(k)).join(', ')} in ${this.what}${known ? `; known fields: ${known}` : ' (it takes no fields)'}`);
    }
  }
}
