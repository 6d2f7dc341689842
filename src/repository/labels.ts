import { readFile } from 'node:fs/promises';

/** Class labels, one per line, index = class id (blank trailing lines ignored). */
export async function readLabels(file: string): Promise<string[]> {
  const text = await readFile(file, 'utf8');
  const lines = text.split(/\r?\n/);
  while (lines.length > 0 && lines[lines.length - 1]!.trim() === '') lines.pop();
  return lines;
}
