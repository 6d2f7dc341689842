import assert from 'node:assert/strict';
import { test } from 'node:test';
import { explicitlySet, tuneHeapForServing } from '../src/server/v8-tuning.js';

test('the pretenuring flag counts as set in either form, on the command line or in NODE_OPTIONS', () => {
  assert.equal(explicitlySet(['--allocation-site-pretenuring'], ''), true);
  assert.equal(explicitlySet(['--no-allocation-site-pretenuring'], ''), true);
  assert.equal(explicitlySet(['--no_allocation_site_pretenuring'], ''), true);
  assert.equal(explicitlySet([], '--max-old-space-size=4096 --allocation-site-pretenuring'), true);
  assert.equal(explicitlySet(['--import', 'tsx', '--expose-gc'], '--max-old-space-size=4096'), false);
  // Other flags that merely contain the words are not it.
  assert.equal(explicitlySet(['--trace-pretenuring', '--allocation-site-pretenuring-extra'], ''), false);
});

test('a server turns pretenuring off unless the process chose for itself', () => {
  assert.equal(tuneHeapForServing([], ''), true);
  assert.equal(tuneHeapForServing(['--allocation-site-pretenuring'], ''), false);
  assert.equal(tuneHeapForServing([], '--allocation-site-pretenuring'), false);
});
