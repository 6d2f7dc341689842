/**
 * The machine: what it is (for RESULTS.md) and how busy it is. The benchmark shares a small
 * machine with whatever else runs on it; it measures the CPU used by processes that are not
 * part of the benchmark ("foreign" CPU) during every cell, waits (bounded) for a quiet machine
 * before each cell, and reports the foreign load so a disturbed figure can be recognised.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism, cpus, release, totalmem } from 'node:os';
import { clockTicksPerSecond, readCpuSeconds } from './proc.js';

export interface MachineInfo {
  readonly cpuModel: string;
  readonly cores: number;
  readonly memoryGiB: number;
  readonly kernel: string;
  readonly node: string;
  readonly onnxruntime: string;
  readonly undici: string;
  readonly date: string;
}

function packageVersion(name: string): string {
  try {
    const require = createRequire(import.meta.url);
    const json = JSON.parse(readFileSync(require.resolve(`${name}/package.json`), 'utf8')) as { version?: string };
    return json.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

export function machineInfo(): MachineInfo {
  let cpuModel = cpus()[0]?.model ?? 'unknown';
  try {
    const match = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (match !== null) cpuModel = match[1]!.trim();
  } catch {
    // keep os.cpus()'s answer
  }
  let flags = '';
  try {
    const match = /^flags\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    const all = new Set((match?.[1] ?? '').split(' '));
    flags = ['avx2', 'avx512f', 'avx512_vnni', 'avx512_bf16'].filter((f) => all.has(f)).join(' ');
  } catch {
    // no flags
  }
  return {
    cpuModel: flags === '' ? cpuModel : `${cpuModel} (${flags})`,
    cores: availableParallelism(),
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    kernel: release(),
    node: process.version,
    onnxruntime: packageVersion('onnxruntime-node'),
    undici: packageVersion('undici'),
    date: new Date().toISOString(),
  };
}

/** Busy CPU seconds of the whole machine so far (all cores; idle and iowait excluded). */
export function machineBusySeconds(): number {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
    const fields = line.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal guest guest_nice (guest is inside user)
    const total = fields.slice(0, 8).reduce((a, b) => a + b, 0);
    const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
    return (total - idle) / clockTicksPerSecond();
  } catch {
    return Number.NaN;
  }
}

/** A sample of machine-wide and benchmark CPU, to compute foreign CPU between two samples. */
export interface LoadSample {
  readonly at: number;
  readonly machineBusy: number;
  /** CPU seconds of this process plus the given child pids. */
  readonly own: number;
}

export function sampleLoad(pids: readonly number[]): LoadSample {
  const self = process.cpuUsage();
  let own = (self.user + self.system) / 1e6;
  for (const pid of pids) {
    const seconds = readCpuSeconds(pid);
    if (Number.isFinite(seconds)) own += seconds;
  }
  return { at: performance.now(), machineBusy: machineBusySeconds(), own };
}

/** CPU used by other processes between two samples, percent of one core (never below 0). */
export function foreignPct(a: LoadSample, b: LoadSample): number {
  const wall = (b.at - a.at) / 1000;
  if (wall <= 0) return Number.NaN;
  return Math.max(0, (100 * (b.machineBusy - a.machineBusy - (b.own - a.own))) / wall);
}

/**
 * Wait until the machine looks quiet: two consecutive 500 ms samples with foreign CPU under
 * `thresholdPct` (of one core). Bounded by `maxWaitMs`; returns the time waited and whether
 * the machine became quiet.
 */
export async function waitForQuiet(pids: readonly number[], thresholdPct: number, maxWaitMs: number): Promise<{ waitedMs: number; quiet: boolean }> {
  const start = performance.now();
  let calm = 0;
  let previous = sampleLoad(pids);
  while (performance.now() - start < maxWaitMs) {
    await new Promise((resolve) => setTimeout(resolve, 500));
    const current = sampleLoad(pids);
    calm = foreignPct(previous, current) < thresholdPct ? calm + 1 : 0;
    previous = current;
    if (calm >= 2) return { waitedMs: performance.now() - start, quiet: true };
  }
  return { waitedMs: performance.now() - start, quiet: false };
}
