/** Tables for the console (aligned columns) and for RESULTS.md (GitHub markdown). */

export interface Table {
  readonly headers: readonly string[];
  readonly rows: readonly (readonly string[])[];
}

/** Columns whose header starts with one of these are left-aligned; the rest right-aligned. */
const LEFT = ['model', 'server', 'protocol', 'variant', 'ratio', 'target', 'met', 'what', 'spinning', 'note', 'config'];

function leftAligned(header: string): boolean {
  return LEFT.some((prefix) => header.toLowerCase().startsWith(prefix));
}

export function renderConsole(table: Table): string {
  const widths = table.headers.map((h, i) => Math.max(h.length, ...table.rows.map((row) => (row[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((cell, i) => (leftAligned(table.headers[i] ?? '') ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(table.headers), widths.map((w) => '-'.repeat(w)).join('  '), ...table.rows.map(line)].join('\n');
}

export function renderMarkdown(table: Table): string {
  const escape = (cell: string): string => cell.replace(/\|/g, '\\|');
  const align = table.headers.map((h) => (leftAligned(h) ? ':--' : '--:'));
  return [
    `| ${table.headers.map(escape).join(' | ')} |`,
    `| ${align.join(' | ')} |`,
    ...table.rows.map((row) => `| ${row.map(escape).join(' | ')} |`),
  ].join('\n');
}

/** One line of a ratios table: a figure, its target (or "(reference)") and whether it is met. */
export interface Ratio {
  readonly name: string;
  readonly value: string;
  readonly target: string;
  /** undefined: a reference line, no target. */
  readonly met: boolean | undefined;
  readonly detail: string;
}

export function ratioTable(ratios: readonly Ratio[]): Table {
  return {
    headers: ['ratio', 'value', 'target', 'met'],
    rows: ratios.map((r) => [r.name, r.value, r.target, r.met === undefined ? '-' : r.met ? 'yes' : 'NO']),
  };
}
