import { readFileSync } from 'node:fs';

/** Tessera's version, from package.json (two levels above both src/server and dist/server). */
export const TESSERA_VERSION: string = (() => {
  const text = readFileSync(new URL('../../package.json', import.meta.url), 'utf8');
  const parsed = JSON.parse(text) as { version?: unknown };
  return typeof parsed.version === 'string' ? parsed.version : '0.0.0';
})();
