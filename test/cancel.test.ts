import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CancelFlag, type CancelSignal } from '../src/core/cancel.js';

test('CancelFlag fires each listener once, in order, and behaves as AbortSignal does after firing', () => {
  const flag = new CancelFlag();
  const calls: string[] = [];
  const a = (): void => void calls.push('a');
  const b = (): void => void calls.push('b');
  const c = (): void => void calls.push('c');
  flag.addEventListener('abort', a);
  flag.addEventListener('abort', b);
  flag.addEventListener('abort', c);
  flag.removeEventListener('abort', a); // the first slot is refilled from the rest
  assert.equal(flag.aborted, false);
  flag.cancel();
  flag.cancel();
  assert.equal(flag.aborted, true);
  assert.deepEqual(calls, ['b', 'c']);
  flag.addEventListener('abort', a); // already fired: never called, as with AbortSignal
  flag.cancel();
  assert.deepEqual(calls, ['b', 'c']);
});

test('removing a listener that was never added changes nothing', () => {
  const flag = new CancelFlag();
  let called = 0;
  flag.addEventListener('abort', () => called++);
  flag.removeEventListener('abort', () => called++);
  flag.cancel();
  assert.equal(called, 1);
});

test('an AbortSignal is a CancelSignal, so front doors that hold one pass it as it is', () => {
  const controller = new AbortController();
  const signal: CancelSignal = controller.signal;
  let called = 0;
  const listener = (): void => void called++;
  signal.addEventListener('abort', listener, { once: true });
  controller.abort();
  assert.equal(signal.aborted, true);
  assert.equal(called, 1);
});
