/** Reading Prometheus exposition text in tests. */
import assert from 'node:assert/strict';

export interface PrometheusSample {
  readonly name: string;
  readonly labels: Record<string, string>;
  readonly value: number;
}

/** Parse Prometheus exposition text into samples; a line that is not a sample or a comment fails the test. */
export function samples(text: string): PrometheusSample[] {
  const out: PrometheusSample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(match, `unparseable line: ${line}`);
    const labels: Record<string, string> = {};
    for (const pair of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]!] = pair[2]!;
    out.push({ name: match[1]!, labels, value: Number(match[3]) });
  }
  return out;
}
