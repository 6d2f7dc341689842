/**
 * Reading another process's resource use from /proc (Linux only): resident memory from
 * /proc/<pid>/status, CPU time from /proc/<pid>/stat (whole process, all threads) and, where
 * the kernel has schedstats, per-thread CPU time in nanoseconds from
 * /proc/<pid>/task/<tid>/schedstat (used to split a server's main thread from its workers).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';

let clockTicks: number | undefined;

/** Kernel clock ticks per second (USER_HZ), for /proc/<pid>/stat times. */
export function clockTicksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** Resident set size of `pid` in bytes (VmRSS), or NaN if unreadable. */
export function readRssBytes(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    return match === null ? Number.NaN : Number(match[1]) * 1024;
  } catch {
    return Number.NaN;
  }
}

/** User + system CPU seconds `pid` has used so far (all its threads), or NaN if unreadable. */
export function readCpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may contain spaces; fields after it are space-separated.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    return (utime + stime) / clockTicksPerSecond();
  } catch {
    return Number.NaN;
  }
}

/** CPU nanoseconds of one thread from schedstat (NaN when schedstats are unavailable). */
function threadCpuNs(pid: number, tid: string): number {
  try {
    const first = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0];
    return Number(first);
  } catch {
    return Number.NaN;
  }
}

/** CPU time of a process split into its main thread (tid = pid) and all other threads. */
export interface ThreadCpu {
  readonly mainNs: number;
  readonly otherNs: number;
}

export function readThreadCpu(pid: number): ThreadCpu {
  let mainNs = Number.NaN;
  let otherNs = 0;
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return { mainNs: Number.NaN, otherNs: Number.NaN };
  }
  for (const tid of tids) {
    const ns = threadCpuNs(pid, tid);
    if (tid === String(pid)) mainNs = ns;
    else if (Number.isFinite(ns)) otherNs += ns;
  }
  return { mainNs, otherNs };
}

/** CPU use of a process over an interval. */
export interface CpuSample {
  readonly at: number;
  readonly cpuSeconds: number;
  readonly threads: ThreadCpu;
}

export function sampleCpu(pid: number): CpuSample {
  return { at: performance.now(), cpuSeconds: readCpuSeconds(pid), threads: readThreadCpu(pid) };
}

/** Interval CPU use: percent of one core for the whole process, its main thread and the rest. */
export interface CpuUse {
  readonly totalPct: number;
  readonly mainPct: number;
  readonly otherPct: number;
  /** Main-thread CPU seconds in the interval. */
  readonly mainSeconds: number;
  readonly totalSeconds: number;
}

export function cpuBetween(a: CpuSample, b: CpuSample): CpuUse {
  const seconds = (b.at - a.at) / 1000;
  const mainSeconds = (b.threads.mainNs - a.threads.mainNs) / 1e9;
  const otherSeconds = (b.threads.otherNs - a.threads.otherNs) / 1e9;
  const totalSeconds = b.cpuSeconds - a.cpuSeconds;
  return {
    totalPct: (100 * totalSeconds) / seconds,
    mainPct: (100 * mainSeconds) / seconds,
    otherPct: (100 * otherSeconds) / seconds,
    mainSeconds,
    totalSeconds,
  };
}
