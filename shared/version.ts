// The package version, from package.json above the source tree or above dist/.
import { readFileSync } from 'node:fs';

export function packageVersion(): string {
  for (const rel of ['../package.json', '../../package.json']) {
    try {
      const pkg: unknown = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8'));
      if (typeof pkg === 'object' && pkg !== null && (pkg as { name?: unknown }).name === 'feather-fleet') {
        const v = (pkg as { version?: unknown }).version;
        if (typeof v === 'string') return v;
      }
    } catch {
      // try the next location
    }
  }
  return 'unknown';
}
