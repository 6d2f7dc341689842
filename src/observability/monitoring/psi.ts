/**
 * Population Stability Index over fixed bins. A bin is found by the number of inner edges at
 * or below the value (bin 0 is below the first edge, the last bin at or above the last edge),
 * so bins are open-ended and every finite value has one.
 */

/** Index of the bin `value` falls in: how many of the ascending `edges` are <= value. */
export function binIndex(edges: ArrayLike<number>, value: number): number {
  let lo = 0;
  let hi = edges.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((edges[mid] as number) <= value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Floor of baseline proportions: a bin the baseline never saw still gets this much mass. */
export const EXPECTED_FLOOR = 1e-4;

/**
 * PSI = Σ (actual − expected) · ln(actual / expected) over the bins. `expected` are the
 * baseline's proportions; `counts[offset .. offset + expected.length)` the window's counts.
 * Actual proportions are Laplace-smoothed ((count + 0.5) / (n + 0.5·bins)) so an empty bin in a
 * small window does not read as infinite drift. Returns NaN when the window holds no value.
 */
export function psi(expected: ArrayLike<number>, counts: ArrayLike<number>, offset = 0): number {
  const bins = expected.length;
  let n = 0;
  for (let i = 0; i < bins; i++) n += counts[offset + i] as number;
  if (n <= 0) return Number.NaN;
  const denominator = n + 0.5 * bins;
  let total = 0;
  for (let i = 0; i < bins; i++) {
    const e = Math.max(expected[i] as number, EXPECTED_FLOOR);
    const a = ((counts[offset + i] as number) + 0.5) / denominator;
    total += (a - e) * Math.log(a / e);
  }
  return total;
}
