import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RingQueue } from '../src/scheduler/ring-queue.js';

test('ring queue is FIFO across wrap-around and growth', () => {
  const queue = new RingQueue<number>(4);
  assert.equal(queue.capacity, 4);
  for (let i = 0; i < 3; i++) queue.push(i);
  assert.equal(queue.shift(), 0);
  assert.equal(queue.shift(), 1);
  // head is at slot 2: these pushes wrap around the end
  for (let i = 3; i < 6; i++) queue.push(i);
  assert.equal(queue.length, 4);
  assert.equal(queue.capacity, 4);
  queue.push(6); // full: grows while keeping order
  assert.equal(queue.capacity, 8);
  assert.deepEqual([...queue], [2, 3, 4, 5, 6]);
  assert.equal(queue.at(0), 2);
  assert.equal(queue.at(4), 6);
  assert.equal(queue.at(5), undefined);
  assert.equal(queue.peek(), 2);
  const drained: number[] = [];
  for (let v = queue.shift(); v !== undefined; v = queue.shift()) drained.push(v);
  assert.deepEqual(drained, [2, 3, 4, 5, 6]);
  assert.equal(queue.length, 0);
  assert.equal(queue.shift(), undefined);
});

test('ring queue fills 2047 and 2048 slots exactly', () => {
  for (const n of [2047, 2048, 2049]) {
    const queue = new RingQueue<number>(2048);
    for (let i = 0; i < n; i++) queue.push(i);
    assert.equal(queue.length, n);
    assert.equal(queue.capacity, n <= 2048 ? 2048 : 4096);
    let expected = 0;
    for (let v = queue.shift(); v !== undefined; v = queue.shift()) assert.equal(v, expected++);
    assert.equal(expected, n);
  }
});

test('ring queue rounds its initial capacity up to a power of two', () => {
  assert.equal(new RingQueue<number>(5).capacity, 8);
  assert.equal(new RingQueue<number>(1).capacity, 1);
});
