/**
 * The lock of a batch job's checkpoint directory (src/batch/checkpoint-lock.ts): a lock of a
 * live process on this machine is refused, one whose pid died or was reused is taken over; a
 * lock from another machine (a shared network filesystem) is refused while it is refreshed and
 * taken over once it has gone 60 s without; the holder refreshes it until it lets go.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, test } from 'node:test';

import { Checkpoint } from '../src/batch/checkpoint.js';
import { CheckpointLock, LOCK_STALE_MS, ownIdentity, parseLock, parseStartTime, startTimeOf, type LockHolder } from '../src/batch/checkpoint-lock.js';
import { TesseraError } from '../src/core/errors.js';

let root: string;
let me: LockHolder;
/** A live process of this machine that is not this one. */
let child: ChildProcess;
let childPid: number;
/** The pid of a process that has exited. */
let deadPid: number;
const children: ChildProcess[] = [];

function sleeper(): ChildProcess {
  const proc = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)'], { stdio: 'ignore' });
  children.push(proc);
  return proc;
}

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'tessera-lock-'));
  me = await ownIdentity();
  child = sleeper();
  await once(child, 'spawn');
  childPid = child.pid!;
  const dead = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
  await once(dead, 'exit');
  deadPid = dead.pid!;
});

after(async () => {
  for (const proc of children) proc.kill('SIGKILL');
  await rm(root, { recursive: true, force: true });
});

/** A fresh checkpoint directory holding `lock` with `text`, last refreshed `ageMs` ago. */
async function lockedDir(text: string, ageMs = 0): Promise<string> {
  const dir = await mkdtemp(join(root, 'parts-'));
  await writeFile(join(dir, 'lock'), text);
  const when = new Date(Date.now() - ageMs);
  await utimes(join(dir, 'lock'), when, when);
  return dir;
}

/** Whether the file at `path` still has the hour-old modification time the test gave it (not refreshed). */
async function notRefreshed(path: string): Promise<boolean> {
  return (await stat(path)).mtimeMs < Date.now() - 1_800_000;
}

const json = (holder: Record<string, unknown>): string => `${JSON.stringify(holder)}\n`;

async function refused(dir: string, message: RegExp): Promise<void> {
  const was = await readFile(join(dir, 'lock'), 'utf8');
  await assert.rejects(CheckpointLock.acquire(dir), (error: unknown) => {
    assert.ok(error instanceof TesseraError, String(error));
    assert.equal(error.code, 'BATCH_CHECKPOINT_CONFLICT');
    assert.match(error.message, message);
    return true;
  });
  assert.equal(await readFile(join(dir, 'lock'), 'utf8'), was, 'a refused lock is left as it was');
}

/** Take the lock of `dir`, which must be taken over: it then names this process. */
async function takenOver(dir: string): Promise<void> {
  const lock = await CheckpointLock.acquire(dir);
  try {
    const holder = parseLock(await readFile(join(dir, 'lock'), 'utf8'));
    assert.deepEqual(holder, me);
  } finally {
    await lock.release();
  }
  await assert.rejects(stat(join(dir, 'lock')), 'released: the lock is gone');
}

test('the lock records pid, hostname, boot id and start time', async () => {
  const dir = await mkdtemp(join(root, 'parts-'));
  const lock = await CheckpointLock.acquire(dir);
  const recorded = JSON.parse(await readFile(join(dir, 'lock'), 'utf8')) as Record<string, unknown>;
  assert.equal(recorded.pid, process.pid);
  assert.equal(typeof recorded.hostname, 'string');
  if (process.platform === 'linux') {
    assert.match(String(recorded.bootId), /^[0-9a-f-]{36}$/);
    assert.equal(recorded.startTime, await startTimeOf(process.pid));
  }
  await lock.release();
  await assert.rejects(stat(join(dir, 'lock')));
});

test('the start time is field 22 of /proc/<pid>/stat, counted after the last parenthesis', () => {
  // Fields 3..21, then 22 = 987654, then more.
  const rest = ['S', ...Array.from({ length: 18 }, (_, i) => String(i + 4)), '987654', '23', '24'].join(' ');
  assert.equal(parseStartTime(`4242 (node) ${rest}\n`), 987654);
  assert.equal(parseStartTime(`4242 (a b) c) (d ) ${rest}\n`), 987654, 'a command with spaces and parentheses');
  assert.equal(parseStartTime('4242 (node) S 1 2'), undefined, 'too few fields');
  assert.equal(parseStartTime('garbage'), undefined);
});

test('a lock of a live process on this host is refused, naming its pid and host', async () => {
  const startTime = await startTimeOf(childPid);
  const dir = await lockedDir(json({ ...me, pid: childPid, ...(startTime === undefined ? {} : { startTime }) }), 5 * LOCK_STALE_MS);
  await refused(dir, new RegExp(`another tessera batch \\(pid ${childPid} on this host, ${me.hostname}\\) is writing this output`));
});

test('a lock whose pid was reused by another process (another start time) is taken over', async (t) => {
  const startTime = await startTimeOf(childPid);
  if (startTime === undefined) return t.skip('no /proc/<pid>/stat here');
  await takenOver(await lockedDir(json({ ...me, pid: childPid, startTime: startTime + 1 })));
});

test('a lock of a dead process on this host is taken over', async () => {
  await takenOver(await lockedDir(json({ ...me, pid: deadPid, startTime: 1 })));
  await takenOver(await lockedDir(json({ pid: deadPid, hostname: me.hostname })));
});

test('a lock of another host refreshed just now is refused, naming its pid and host and the way out', async () => {
  const dir = await lockedDir(json({ pid: process.pid, hostname: 'pod-b.example', bootId: 'another-boot', startTime: me.startTime ?? 1 }), 2_000);
  await refused(dir, /another tessera batch \(pid \d+ on host pod-b\.example\) is writing this output \(.*lock, refreshed 2 s ago\)/);
  await refused(dir, /once it has not been refreshed for 60 s, or delete .*lock to take it over now/);
  // Its pid, dead here or alive here, says nothing about the other host.
  await refused(await lockedDir(json({ pid: deadPid, hostname: 'pod-b.example' })), /pid \d+ on host pod-b\.example/);
  await refused(await lockedDir(json({ pid: childPid, hostname: 'pod-b.example' })), /pid \d+ on host pod-b\.example/);
});

test('a lock of another host not refreshed for 60 s is taken over', async () => {
  await takenOver(await lockedDir(json({ pid: 1, hostname: 'pod-b.example', bootId: 'another-boot', startTime: 5 }), LOCK_STALE_MS + 5_000));
  // Just under 60 s: still alive.
  await refused(await lockedDir(json({ pid: 1, hostname: 'pod-b.example' }), LOCK_STALE_MS - 5_000), /pid 1 on host pod-b\.example/);
});

test('this hostname with another boot id (a reboot, or another machine of the same name) follows the 60 s rule', async (t) => {
  if (me.bootId === undefined) return t.skip('no boot id here');
  const holder = json({ ...me, pid: childPid, bootId: '00000000-0000-0000-0000-000000000000' });
  await refused(await lockedDir(holder, 1_000), /before this machine rebooted or on another machine of that name/);
  await takenOver(await lockedDir(holder, LOCK_STALE_MS + 1_000));
});

test('a lock of another container on this host (another pid namespace) follows the 60 s rule', async (t) => {
  if (me.pidNamespace === undefined) return t.skip('no pid namespace here');
  const holder = json({ ...me, pid: deadPid, pidNamespace: 'pid:[1]' });
  await refused(await lockedDir(holder), /in another container/);
  await takenOver(await lockedDir(holder, LOCK_STALE_MS + 1_000));
});

test('a lock naming this very process is refused while this process holds it, and taken over when left behind', async () => {
  const dir = await mkdtemp(join(root, 'parts-'));
  const lock = await CheckpointLock.acquire(dir);
  await refused(dir, /this process is already writing this output/);
  await lock.release();
  // Left behind by this process (a release that could not delete it): stale.
  await takenOver(await lockedDir(json({ ...me })));
  // Our pid with another start time: an earlier process (another container's pid 1, say).
  await takenOver(await lockedDir(json({ ...me, startTime: (me.startTime ?? 0) + 1 })));
});

test('a lock in the old format (<pid>) still works: a live pid is refused, a dead one or ours taken over', async () => {
  await refused(await lockedDir(`${childPid}\n`), new RegExp(`another tessera batch \\(pid ${childPid} on this host\\)`));
  await takenOver(await lockedDir(`${deadPid}\n`));
  await takenOver(await lockedDir(`${process.pid}\n`));
});

test('a garbled lock is taken over; an empty one is being written, until it is old', async () => {
  await takenOver(await lockedDir('{"pid": "x"'));
  await takenOver(await lockedDir('hello\n'));
  await takenOver(await lockedDir(json({ pid: -3, hostname: 'pod-b.example' })));
  await refused(await lockedDir(''), /another tessera batch is taking the lock of this output/);
  await takenOver(await lockedDir('', LOCK_STALE_MS + 1_000));
});

test('the holder refreshes the lock until it stops or releases it', async () => {
  const dir = await mkdtemp(join(root, 'parts-'));
  const path = join(dir, 'lock');
  const old = new Date(Date.now() - 3_600_000);
  const lock = await CheckpointLock.acquire(dir, { heartbeatMs: 20 });
  const text = await readFile(path, 'utf8');
  await utimes(path, old, old);
  await sleep(200);
  assert.ok((await stat(path)).mtimeMs > Date.now() - 10_000, 'refreshed');

  lock.stop();
  await sleep(50);
  await utimes(path, old, old);
  await sleep(200);
  assert.ok(await notRefreshed(path), 'not refreshed once stopped');
  await lock.release();
  await assert.rejects(stat(path));

  const second = await CheckpointLock.acquire(dir, { heartbeatMs: 20 });
  await second.release();
  // The same lock written back: a heartbeat still running would refresh it.
  await writeFile(path, text);
  await utimes(path, old, old);
  await sleep(200);
  assert.ok(await notRefreshed(path), 'not refreshed once released');
});

test('a lock taken over by another job is neither refreshed nor deleted by its former holder', async () => {
  const dir = await mkdtemp(join(root, 'parts-'));
  const path = join(dir, 'lock');
  const lock = await CheckpointLock.acquire(dir, { heartbeatMs: 20 });
  const theirs = json({ pid: 7, hostname: 'pod-b.example' });
  const old = new Date(Date.now() - 3_600_000);
  await writeFile(path, theirs);
  await utimes(path, old, old);
  await sleep(200);
  assert.ok(await notRefreshed(path));
  await lock.release();
  assert.equal(await readFile(path, 'utf8'), theirs);
});

test('Checkpoint.open refuses an output another host writes, and keeps and releases its own lock', async () => {
  const output = join(await mkdtemp(join(root, 'out-')), 'scores.csv');
  const open = (): Promise<Checkpoint> => Checkpoint.open(output, { input: 'x' }, 16, [], 'csv', { restart: false, keepsState: false });
  const dir = Checkpoint.dirFor(output);
  const checkpoint = await open();
  assert.deepEqual(parseLock(await readFile(join(dir, 'lock'), 'utf8')), me);
  await assert.rejects(open(), /this process is already writing this output/);
  await checkpoint.release();
  await assert.rejects(stat(join(dir, 'lock')));

  const theirs = json({ pid: process.pid, hostname: 'pod-b.example' });
  await writeFile(join(dir, 'lock'), theirs);
  await assert.rejects(open(), (error: unknown) => error instanceof TesseraError && error.code === 'BATCH_CHECKPOINT_CONFLICT' && /on host pod-b\.example/.test(error.message));
  assert.equal(await readFile(join(dir, 'lock'), 'utf8'), theirs, 'the other job keeps its lock');

  const old = new Date(Date.now() - LOCK_STALE_MS - 1_000);
  await utimes(join(dir, 'lock'), old, old);
  const resumed = await open();
  assert.equal(resumed.resumed, true);
  await resumed.remove();
  await assert.rejects(stat(dir));
});
