import { readFile, readlink, open, stat, unlink, utimes } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { TesseraError } from '../core/errors.js';

/** The lock's name in a checkpoint directory. */
export const LOCK_FILE = 'lock';
/** How often the job holding the lock refreshes its modification time. */
export const LOCK_HEARTBEAT_MS = 10_000;
/** A lock of another machine that has not been refreshed for this long is left by a job that is gone. */
export const LOCK_STALE_MS = 60_000;
/** Takeover attempts when other jobs race for the lock. */
const ATTEMPTS = 3;
/** An empty lock is being written by the job that just created it: read it again this often, this many times. */
const EMPTY_REREAD_MS = 50;
const EMPTY_REREADS = 5;

export interface CheckpointLockOptions {
  /** How often to refresh the lock (LOCK_HEARTBEAT_MS unless given; tests pass shorter ones). */
  readonly heartbeatMs?: number;
  /** Age after which another machine's lock is taken over (LOCK_STALE_MS unless given). */
  readonly staleMs?: number;
}

/** Who holds a lock. A lock of an older Tessera (`<pid>\n`) only has the pid. */
export interface LockHolder {
  readonly pid: number;
  readonly hostname?: string;
  /** The kernel's boot id (`/proc/sys/kernel/random/boot_id`): tells a reboot, or another machine of the same name. */
  readonly bootId?: string;
  /** The pid namespace (`/proc/self/ns/pid`): tells another container on the same machine and hostname. */
  readonly pidNamespace?: string;
  /** The process's start time in clock ticks since boot (field 22 of `/proc/<pid>/stat`): tells a reused pid. */
  readonly startTime?: number;
}

/** Locks this process holds, by path: a lock naming this very process is only alive if it is one of them. */
const held = new Set<string>();

/**
 * `<checkpoint dir>/lock`: the one job writing an output. It records the holder's pid, hostname,
 * boot id, pid namespace and start time, and the holder refreshes its modification time every
 * LOCK_HEARTBEAT_MS. A lock taken on this machine (same hostname, boot id and pid namespace)
 * is alive while its pid runs with the recorded start time; a lock from elsewhere (another
 * machine sharing the directory over a network filesystem, another container, or this machine
 * before a reboot) is alive until it has gone LOCK_STALE_MS without a refresh. A lock that is
 * not alive is taken over.
 */
export class CheckpointLock {
  private timer: NodeJS.Timeout | undefined;
  private beating: Promise<void> | undefined;

  private constructor(
    readonly path: string,
    /** What this process wrote into the lock: while the file holds it, the lock is ours. */
    private readonly text: string,
    heartbeatMs: number,
  ) {
    held.add(path);
    this.timer = setInterval(() => {
      this.beating ??= this.beat().finally(() => (this.beating = undefined));
    }, heartbeatMs).unref();
  }

  /** Take `<dir>/lock` for this process; throws BATCH_CHECKPOINT_CONFLICT while another job holds it. */
  static async acquire(dir: string, options: CheckpointLockOptions = {}): Promise<CheckpointLock> {
    const path = resolve(join(dir, LOCK_FILE));
    const staleMs = options.staleMs ?? LOCK_STALE_MS;
    const me = await ownIdentity();
    const text = `${JSON.stringify(me)}\n`;
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      let created = false;
      try {
        const handle = await open(path, 'wx');
        created = true;
        try {
          await handle.writeFile(text);
        } finally {
          await handle.close();
        }
        return new CheckpointLock(path, text, options.heartbeatMs ?? LOCK_HEARTBEAT_MS);
      } catch (error) {
        if (created) await unlink(path).catch(() => undefined);
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
      const found = await readLock(path);
      // Released meanwhile: try again.
      if (found === undefined) continue;
      const conflict = await holderConflict(path, found, me, staleMs);
      if (conflict !== undefined) throw new TesseraError('BATCH_CHECKPOINT_CONFLICT', conflict);
      // Stale: remove it, unless another job has replaced it since it was read.
      const now = await stat(path).catch(() => undefined);
      if (now !== undefined && now.ino === found.ino && now.ctimeMs === found.ctimeMs) await unlink(path).catch(() => undefined);
    }
    throw new TesseraError('BATCH_CHECKPOINT_CONFLICT', `cannot take the lock ${path} (other jobs are taking it at the same time, or it cannot be deleted); rerun, or delete it if no other job is writing this output`);
  }

  /** Stop refreshing the lock (the checkpoint directory is about to be deleted with it). */
  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    held.delete(this.path);
  }

  /** Stop refreshing the lock and delete it, unless another job has taken it over. */
  async release(): Promise<void> {
    this.stop();
    await this.beating;
    try {
      if ((await readFile(this.path, 'utf8')) !== this.text) return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    }
    await unlink(this.path).catch(() => undefined);
  }

  /** Refresh the lock's modification time, while it is still ours. */
  private async beat(): Promise<void> {
    try {
      if ((await readFile(this.path, 'utf8')) !== this.text) {
        // Deleted by hand, or taken over: it is not ours to refresh any more.
        this.stop();
        return;
      }
      if (this.timer === undefined) return;
      const now = new Date();
      await utimes(this.path, now, now);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') this.stop();
      // Anything else (a network filesystem's hiccup): try again at the next beat.
    }
  }
}

/** The lock this process writes. */
export async function ownIdentity(): Promise<LockHolder> {
  const [bootId, pidNamespace, startTime] = await Promise.all([
    readFile('/proc/sys/kernel/random/boot_id', 'utf8').then((text) => text.trim() || undefined, () => undefined),
    readlink('/proc/self/ns/pid').then((link) => link || undefined, () => undefined),
    startTimeOf('self'),
  ]);
  return {
    pid: process.pid,
    hostname: hostname(),
    ...(bootId === undefined ? {} : { bootId }),
    ...(pidNamespace === undefined ? {} : { pidNamespace }),
    ...(startTime === undefined ? {} : { startTime }),
  };
}

/** A process's start time in clock ticks since boot (undefined without a readable `/proc/<pid>/stat`). */
export async function startTimeOf(pid: number | 'self'): Promise<number | undefined> {
  return readFile(`/proc/${pid}/stat`, 'utf8').then(parseStartTime, () => undefined);
}

/**
 * Field 22 (starttime) of a `/proc/<pid>/stat` line. Field 2 is the command in parentheses,
 * which may itself hold spaces and parentheses: the fields are counted after the last ')'.
 */
export function parseStartTime(stat: string): number | undefined {
  const close = stat.lastIndexOf(')');
  if (close < 0) return undefined;
  // Fields 3, 4, ... follow the command: field 22 is the 20th of them.
  const field = stat.slice(close + 1).trim().split(/\s+/)[19];
  return field !== undefined && /^\d+$/.test(field) && Number.isSafeInteger(Number(field)) ? Number(field) : undefined;
}

/** The holder a lock's text names; undefined when it names none (garbled). */
export function parseLock(text: string): LockHolder | undefined {
  const trimmed = text.trim();
  // The format of older versions: `<pid>\n`.
  if (/^\d+$/.test(trimmed)) return validPid(Number(trimmed)) ? { pid: Number(trimmed) } : undefined;
  let value: unknown;
  try {
    value = JSON.parse(trimmed);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const record = value as Record<string, unknown>;
  if (typeof record.pid !== 'number' || !validPid(record.pid)) return undefined;
  const string = (key: string): string | undefined => (typeof record[key] === 'string' && record[key] !== '' ? record[key] : undefined);
  const host = string('hostname');
  const bootId = string('bootId');
  const pidNamespace = string('pidNamespace');
  const startTime = typeof record.startTime === 'number' && Number.isSafeInteger(record.startTime) && record.startTime >= 0 ? record.startTime : undefined;
  return {
    pid: record.pid,
    ...(host === undefined ? {} : { hostname: host }),
    ...(bootId === undefined ? {} : { bootId }),
    ...(pidNamespace === undefined ? {} : { pidNamespace }),
    ...(startTime === undefined ? {} : { startTime }),
  };
}

function validPid(pid: number): boolean {
  return Number.isSafeInteger(pid) && pid > 0 && pid < 2 ** 31;
}

/** A lock as read: its holder (undefined: garbled), and its file's identity and age. */
interface FoundLock {
  readonly holder: LockHolder | undefined;
  /** Nothing written yet: the job that created it is writing it now (or died doing so). */
  readonly empty: boolean;
  readonly ino: number;
  readonly ctimeMs: number;
  readonly mtimeMs: number;
}

/** Read the lock; undefined when it no longer exists. */
async function readLock(path: string): Promise<FoundLock | undefined> {
  for (let read = 0; ; read++) {
    let found: FoundLock;
    try {
      const handle = await open(path, 'r');
      try {
        const text = await handle.readFile('utf8');
        const info = await handle.stat();
        found = { holder: parseLock(text), empty: text === '', ino: info.ino, ctimeMs: info.ctimeMs, mtimeMs: info.mtimeMs };
      } finally {
        await handle.close();
      }
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
    if (!found.empty || read >= EMPTY_REREADS) return found;
    await sleep(EMPTY_REREAD_MS);
  }
}

/** Why the lock's holder is still writing the output (a message), or undefined when the lock is stale. */
async function holderConflict(path: string, found: FoundLock, me: LockHolder, staleMs: number): Promise<string | undefined> {
  const ageMs = Date.now() - found.mtimeMs;
  const holder = found.holder;
  if (holder === undefined) {
    if (found.empty && ageMs < staleMs) {
      return `another tessera batch is taking the lock of this output (${path} is being written); rerun once it has finished, or delete ${path} if no job is writing this output`;
    }
    return undefined;
  }
  const elsewhere = whereElse(holder, me);
  if (elsewhere !== undefined) {
    if (ageMs >= staleMs) return undefined;
    return (
      `another tessera batch (pid ${holder.pid} ${elsewhere}) is writing this output (${path}, refreshed ${seconds(Math.max(0, ageMs))} ago); ` +
      `if that job is gone, the lock is taken over once it has not been refreshed for ${seconds(staleMs)}, or delete ${path} to take it over now`
    );
  }
  // This machine: the pid tells, with the start time recorded for it.
  if (holder.pid === me.pid) {
    const sameProcess = holder.startTime === undefined || me.startTime === undefined || holder.startTime === me.startTime;
    // The pid is ours now: its holder is gone (or it is this process, holding the lock already).
    if (sameProcess && held.has(path)) return `this process is already writing this output (${path}); wait for its job to finish`;
    return undefined;
  }
  if (!isAlive(holder.pid)) return undefined;
  if (holder.startTime !== undefined) {
    const startTime = await startTimeOf(holder.pid);
    // Another process got the pid of a holder that died.
    if (startTime !== undefined && startTime !== holder.startTime) return undefined;
  }
  const host = holder.hostname === undefined ? 'on this host' : `on this host, ${holder.hostname}`;
  return `another tessera batch (pid ${holder.pid} ${host}) is writing this output (${path}); wait for it to finish, or stop it, before rerunning`;
}

/** Where the holder runs when it is not a process of this machine (whose pids say nothing here); undefined on this machine. */
function whereElse(holder: LockHolder, me: LockHolder): string | undefined {
  // A lock of an older Tessera, without a hostname: taken on this machine, as those versions assumed.
  if (holder.hostname === undefined) return undefined;
  if (holder.hostname !== me.hostname) return `on host ${holder.hostname}`;
  if (holder.bootId !== undefined && me.bootId !== undefined && holder.bootId !== me.bootId) {
    // A reboot, most likely; but it may be another machine of the same name, still writing.
    return `on host ${holder.hostname}, before this machine rebooted or on another machine of that name`;
  }
  if (holder.pidNamespace !== undefined && me.pidNamespace !== undefined && holder.pidNamespace !== me.pidNamespace) {
    return `on host ${holder.hostname}, in another container (pid namespace)`;
  }
  return undefined;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function seconds(ms: number): string {
  return ms >= 1000 ? `${Math.round(ms / 1000)} s` : `${Math.round(ms)} ms`;
}
