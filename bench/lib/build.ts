/**
 * The server under test runs as compiled JavaScript, as it is deployed (`node dist/...`), not
 * through tsx: tsx maps stack traces through source maps, which makes every formatted
 * `error.stack` (each logged 5xx answer formats one) several times dearer than in production.
 * The server and the tutorial baseline are compiled with the project's TypeScript into
 * bench/.build (incremental; type errors elsewhere do not stop the emit). `--tsx` skips this.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, rm, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT } from './models.js';

const run = promisify(execFile);

export const BUILD_DIR = join(REPO_ROOT, 'bench', '.build');

/** Compile; returns the directory holding the compiled bench scripts. */
export async function buildServerScripts(): Promise<string> {
  await mkdir(BUILD_DIR, { recursive: true });
  // Compiled modules find package.json (module type, version) and proto/ two and three levels up, as from dist/.
  await copyFile(join(REPO_ROOT, 'package.json'), join(BUILD_DIR, 'package.json'));
  const proto = join(BUILD_DIR, 'proto');
  if (existsSync(join(REPO_ROOT, 'proto')) && !existsSync(proto)) await symlink(join(REPO_ROOT, 'proto'), proto);
  const outDir = join(BUILD_DIR, 'bench');
  const compile = async (): Promise<void> => {
    try {
      await run(process.execPath, [join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(REPO_ROOT, 'bench', 'tsconfig.server.json')], {
        cwd: REPO_ROOT,
        timeout: 240_000,
        maxBuffer: 16 * 1024 * 1024,
      });
    } catch (error) {
      // tsc exits non-zero on type errors but still emits; only a missing output is fatal.
      if (!existsSync(join(outDir, 'server-child.js'))) {
        const output = (error as { stdout?: string }).stdout ?? String(error);
        throw new Error(`compiling the server for the benchmark failed:\n${output.slice(0, 4000)}`);
      }
    }
  };
  await compile();
  if (!existsSync(join(outDir, 'server-child.js'))) {
    // Outputs removed behind the incremental build's back: rebuild from scratch.
    await rm(join(BUILD_DIR, 'tsbuildinfo'), { force: true });
    await compile();
  }
  if (!existsSync(join(outDir, 'server-child.js'))) throw new Error('compiling the server for the benchmark produced no bench/.build/bench/server-child.js');
  return outDir;
}
