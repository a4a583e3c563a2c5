// StatsD / DogStatsD line parsing (docs/telemetry.md, "StatsD format").
//
//   <name>:<value>[:<value>…]|<type>[|@<rate>][|#<tag>[:<value>],…][|<other section>…]
//
// Types: c (counter), g (gauge), ms (timer), h (histogram), d (distribution). Sets (s),
// DogStatsD events (_e{…}) and service checks (_sc|…) are recognised and ignored. Several lines
// per datagram, separated by "\n" ("\r\n" tolerated). Sections DogStatsD added later (|c:<id>,
// |T<ts>, |e:…, |card:…) are skipped so newer clients still parse. Everything else that does not
// fit is malformed: counted, skipped, never thrown (the input comes from workloads).

export type StatsdType = 'counter' | 'gauge' | 'timer' | 'histogram' | 'distribution';

export interface StatsdSample {
  name: string;
  type: StatsdType;
  /** One or more values (DogStatsD 1.1 packs several: `name:1:2:3|ms`). */
  values: number[];
  /** In (0, 1]; 1 when the line has no @rate. */
  sampleRate: number;
  /** A tag without a value (`#canary`) has the value ''. Null prototype: keys are workload input. */
  tags: Record<string, string>;
  /** Gauge written as +N / -N: a change, not a value. */
  gaugeDelta: boolean;
}

export type LineResult =
  | { kind: 'sample'; sample: StatsdSample }
  | { kind: 'ignored' }
  | { kind: 'malformed'; reason: string };

export interface DatagramResult {
  samples: StatsdSample[];
  /** Lines that were not StatsD (bad name, value, type, rate or tags). */
  malformed: number;
  /** Well-formed lines of a kind we do not use (sets, events, service checks). */
  ignored: number;
}

export const STATSD_LIMITS = {
  nameMaxLength: 200,
  tagsMax: 32,
  tagMaxLength: 200,
  valuesMax: 64,
} as const;

const TYPES: Readonly<Record<string, StatsdType>> = {
  c: 'counter',
  g: 'gauge',
  ms: 'timer',
  h: 'histogram',
  d: 'distribution',
};

const NAME = /^[A-Za-z_][A-Za-z0-9_.\-/]*$/;
const NUMBER = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

function malformed(reason: string): LineResult {
  return { kind: 'malformed', reason };
}

function parseTags(section: string): Record<string, string> | string {
  const tags: Record<string, string> = Object.create(null) as Record<string, string>;
  const parts = section.split(',');
  if (parts.length > STATSD_LIMITS.tagsMax) return `more than ${STATSD_LIMITS.tagsMax} tags`;
  for (const part of parts) {
    if (part.length === 0) continue; // "#a:1,,b:2" and a trailing comma are harmless
    if (part.length > STATSD_LIMITS.tagMaxLength) return 'tag too long';
    const colon = part.indexOf(':');
    const key = colon < 0 ? part : part.slice(0, colon);
    const value = colon < 0 ? '' : part.slice(colon + 1);
    if (key.length === 0) return 'tag without a key';
    tags[key] = value;
  }
  return tags;
}

/** Parse one line (no newline in it). */
export function parseStatsdLine(line: string): LineResult {
  if (line.startsWith('_e{') || line.startsWith('_sc|')) return { kind: 'ignored' };
  const sections = line.split('|');
  const head = sections[0] ?? '';
  const type = sections[1];
  if (type === undefined) return malformed('no |type');

  const colon = head.indexOf(':');
  if (colon <= 0) return malformed('no name:value');
  const name = head.slice(0, colon);
  if (name.length > STATSD_LIMITS.nameMaxLength) return malformed('name too long');
  if (!NAME.test(name)) return malformed('bad name');

  if (type === 's') return { kind: 'ignored' };
  const kind = TYPES[type];
  if (kind === undefined) return malformed(`unknown type ${JSON.stringify(type.slice(0, 8))}`);

  const rawValues = head.slice(colon + 1).split(':');
  if (rawValues.length > STATSD_LIMITS.valuesMax) return malformed('too many values');
  const values: number[] = [];
  let gaugeDelta = false;
  for (const raw of rawValues) {
    if (!NUMBER.test(raw)) return malformed('bad value');
    const v = Number(raw);
    if (!Number.isFinite(v)) return malformed('bad value');
    if (kind === 'gauge' && (raw.startsWith('+') || raw.startsWith('-'))) gaugeDelta = true;
    values.push(v);
  }

  let sampleRate = 1;
  let tags: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const section of sections.slice(2)) {
    if (section.length === 0) return malformed('empty section');
    const marker = section[0];
    if (marker === '@') {
      const rate = section.slice(1);
      if (!NUMBER.test(rate)) return malformed('bad sample rate');
      sampleRate = Number(rate);
      if (!(sampleRate > 0 && sampleRate <= 1)) return malformed('sample rate outside (0, 1]');
    } else if (marker === '#') {
      const parsed = parseTags(section.slice(1));
      if (typeof parsed === 'string') return malformed(parsed);
      tags = parsed;
    } else if (marker !== undefined && /[A-Za-z]/.test(marker)) {
      // |c:<container-id>, |T<unix ts>, |e:<external data>, |card:<cardinality>: not ours to use.
      continue;
    } else {
      return malformed('unknown section');
    }
  }
  return { kind: 'sample', sample: { name, type: kind, values, sampleRate, tags, gaugeDelta } };
}

/** Parse a whole datagram: every line, malformed ones counted and skipped. */
export function parseStatsdDatagram(data: Buffer | string): DatagramResult {
  const text = typeof data === 'string' ? data : data.toString('utf8');
  const result: DatagramResult = { samples: [], malformed: 0, ignored: 0 };
  for (let line of text.split('\n')) {
    if (line.endsWith('\r')) line = line.slice(0, -1);
    if (line.length === 0) continue;
    const r = parseStatsdLine(line);
    if (r.kind === 'sample') result.samples.push(r.sample);
    else if (r.kind === 'ignored') result.ignored++;
    else result.malformed++;
  }
  return result;
}
