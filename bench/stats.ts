// Small statistics and a table printer for benchmark output.
export function median(xs: number[]): number {
  return percentile(xs, 50);
}

export function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const idx = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1));
  return s[idx] as number;
}

export function ms(ns: bigint): number {
  return Number(ns) / 1e6;
}

export interface Row {
  name: string;
  medianMs: number;
  p90Ms: number;
  n: number;
  note?: string;
}

/** Prints rows with each one's ratio to the reference row. */
export function printTable(title: string, rows: Row[], reference: string): void {
  const ref = rows.find((r) => r.name === reference)?.medianMs ?? NaN;
  console.log(`\n${title}`);
  console.log('| run | n | median ms | p90 ms | ratio to ' + reference + ' |');
  console.log('| --- | --- | --- | --- | --- |');
  for (const r of rows) {
    const ratio = Number.isFinite(r.medianMs) ? (r.medianMs / ref).toFixed(2) : 'n/a';
    const med = Number.isFinite(r.medianMs) ? r.medianMs.toFixed(2) : 'n/a';
    const p90 = Number.isFinite(r.p90Ms) ? r.p90Ms.toFixed(2) : 'n/a';
    console.log(`| ${r.name}${r.note ? ` (${r.note})` : ''} | ${r.n} | ${med} | ${p90} | ${ratio} |`);
  }
}
