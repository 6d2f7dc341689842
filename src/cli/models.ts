import { reportFailure, startLocalEngine } from './local-engine.js';

/** `tessera models <repo>`: load every model and print name, version, state and reason. */
export async function modelsCommand(repository: string, flags: { json?: boolean }): Promise<void> {
  const engine = await startLocalEngine(repository).catch((error: unknown) => reportFailure('models', error));
  if (engine === undefined) return;
  try {
    const index = engine.repositoryIndex();
    // The exit status says whether every model is ready, whatever the output format.
    if (index.some((entry) => entry.state !== 'READY')) process.exitCode = 1;
    if (flags.json === true) {
      process.stdout.write(`${JSON.stringify(index, null, 2)}\n`);
      return;
    }
    const rows = index.map((entry) => [entry.name, entry.version ?? '-', entry.state, entry.reason]);
    const header = ['MODEL', 'VERSION', 'STATE', 'REASON'];
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
    for (const row of [header, ...rows]) {
      process.stdout.write(`${row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')}\n`);
    }
  } finally {
    await engine.close();
  }
}
