/** Tables for the console (aligned columns) and for RESULTS.md (GitHub markdown). */

export interface Table {
  readonly headers: readonly string[];
  readonly rows: readonly (readonly string[])[];
}

/** Columns whose header starts with one of these are left-aligned; the rest right-aligned. */
const LEFT = ['model', 'server', 'variant', 'ratio', 'target', 'met', 'what', 'spinning', 'note', 'config'];

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
