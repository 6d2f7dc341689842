import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CircuitBreaker, ManualClock, circuitBreakerSchema } from '../src/routing/index.js';

/**
 * The circuit breaker on its own: results of requests admitted before it opened (or before a
 * cool-down) are stale and must not move it; only the current state's permits count.
 */

const make = (failureThreshold: number) => {
  const clock = new ManualClock();
  const changes: string[] = [];
  const breaker = new CircuitBreaker(circuitBreakerSchema.parse({ failure_threshold: failureThreshold, cooldown: 1000 }), clock, (from, to) => changes.push(`${from}->${to}`));
  return { clock, changes, breaker };
};

describe('circuit breaker: stale results', () => {
  test('a permit acquired while closed and failing after the breaker opened does not open it again', () => {
    const { breaker, changes } = make(2);
    const stale = breaker.acquire();
    assert.equal(stale, 'allow');
    for (let i = 0; i < 2; i++) breaker.settle(breaker.acquire(), 'boom');
    assert.equal(breaker.state, 'open');
    const openedAt = breaker.snapshot().openedAt;
    breaker.settle(stale, 'late failure');
    assert.equal(breaker.state, 'open');
    assert.deepEqual(breaker.snapshot().transitions, { closed: 0, open: 1, half_open: 0 });
    assert.deepEqual(changes, ['closed->open']);
    const snapshot = breaker.snapshot();
    assert.equal(snapshot.openedAt, openedAt, 'the cool-down did not restart');
    assert.equal(snapshot.consecutiveFailures, 2);
    assert.equal(snapshot.lastFailure, 'boom');
  });

  test('a stale failure arriving while half-open neither opens it nor takes the probe slot', () => {
    const { breaker, clock, changes } = make(1);
    const stale = breaker.acquire();
    breaker.settle(breaker.acquire(), 'boom');
    clock.advance(1000);
    assert.equal(breaker.state, 'half_open');
    breaker.settle(stale, 'late failure');
    assert.equal(breaker.state, 'half_open');
    const probe = breaker.acquire();
    assert.equal(probe, 'probe');
    breaker.settle(probe, undefined);
    assert.equal(breaker.state, 'closed');
    assert.deepEqual(changes, ['closed->open', 'open->half_open', 'half_open->closed']);
  });

  test('a stale probe settled after an operator reset does not reopen the closed breaker', () => {
    const { breaker, clock } = make(1);
    breaker.settle(breaker.acquire(), 'boom');
    clock.advance(1000);
    const probe = breaker.acquire();
    assert.equal(probe, 'probe');
    breaker.reset();
    breaker.settle(probe, 'the probe failed after the reset');
    assert.equal(breaker.state, 'closed');
    assert.deepEqual(breaker.snapshot().transitions, { closed: 1, open: 1, half_open: 1 });
  });
});
