/**
 * FP16 conversion (src/core/float16.ts) against a reference computed with exact integer
 * arithmetic: every double is m * 2^e exactly, so the half it rounds to (nearest, ties to
 * even) can be found with BigInt and no floating-point rounding at all. The values tried are
 * the hard ones: every finite half, every midpoint between neighbouring halves, and doubles a
 * few ulps and tiny relative amounts either side of each, which is where rounding through
 * float32 first went wrong (1 + 2^-11 + 2^-30 rounded to 1 instead of 1 + 2^-10).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { fromHalfBits, toHalfBits } from '../src/core/float16.js';

const view = new DataView(new ArrayBuffer(8));

/** `value` (finite) as sign, integer significand and exponent: |value| = m * 2^e exactly. */
function exactParts(value: number): { negative: boolean; m: bigint; e: number } {
  view.setFloat64(0, value);
  const bits = view.getBigUint64(0);
  const negative = bits >> 63n === 1n;
  const biased = Number((bits >> 52n) & 0x7ffn);
  const fraction = bits & 0xfffffffffffffn;
  // Subnormal doubles have no implicit bit and the exponent of the smallest normal.
  return biased === 0 ? { negative, m: fraction, e: -1074 } : { negative, m: fraction | (1n << 52n), e: biased - 1075 };
}

/** The half bits of `value` by exact arithmetic: round to nearest, ties to even, overflow to Inf. */
function referenceHalfBits(value: number): number {
  if (Number.isNaN(value)) return 0x7e00;
  const sign = value < 0 || Object.is(value, -0) ? 0x8000 : 0;
  if (!Number.isFinite(value)) return sign | 0x7c00;
  const { m, e } = exactParts(value);
  if (m === 0n) return sign;
  // floor(log2 |value|), exactly; halves below 2^-14 share the subnormal spacing 2^-24.
  const log2 = m.toString(2).length - 1 + e;
  const unitExponent = Math.max(log2, -14) - 10;
  // |value| / 2^unitExponent = m * 2^shift, rounded to an integer, ties to even.
  const shift = e - unitExponent;
  let q: bigint;
  if (shift >= 0) {
    q = m << BigInt(shift);
  } else {
    const drop = BigInt(-shift);
    q = m >> drop;
    const rest = m - (q << drop);
    const tie = 1n << (drop - 1n);
    if (rest > tie || (rest === tie && (q & 1n) === 1n)) q += 1n;
  }
  // q is the significand with its implicit bit (1024..2048), or a subnormal's (0..1024); 2048 carries.
  const bits = log2 < -14 ? Number(q) : ((unitExponent + 10 + 14) << 10) + Number(q);
  return sign | Math.min(bits, 0x7c00);
}

function nextUp(value: number): number {
  view.setFloat64(0, value);
  const bits = view.getBigUint64(0);
  if (value === 0) return Number.MIN_VALUE;
  view.setBigUint64(0, value > 0 ? bits + 1n : bits - 1n);
  return view.getFloat64(0);
}

function nextDown(value: number): number {
  return -nextUp(-value);
}

function hex(bits: number): string {
  return `0x${bits.toString(16).padStart(4, '0')}`;
}

/** Check `values` and their negations; report the first few mismatches. */
function assertAllMatch(values: Iterable<number>): number {
  const failures: string[] = [];
  let count = 0;
  for (const positive of values) {
    for (const value of [positive, -positive]) {
      count++;
      const got = toHalfBits(value);
      const want = referenceHalfBits(value);
      if (got !== want && failures.length < 10) failures.push(`${value}: got ${hex(got)}, want ${hex(want)}`);
    }
  }
  assert.deepEqual(failures, [], `toHalfBits disagrees with exact rounding on ${failures.length}+ of ${count} values`);
  return count;
}

/** The finite positive halves in order, 0 to 65504. */
function finiteHalves(): number[] {
  const out: number[] = [];
  for (let bits = 0; bits <= 0x7bff; bits++) out.push(fromHalfBits(bits));
  return out;
}

describe('toHalfBits', () => {
  test('the exact reference agrees with known values (numpy.float16)', () => {
    const known: [number, number][] = [
      [1, 0x3c00],
      [65504, 0x7bff],
      [65519.99, 0x7bff],
      [65520, 0x7c00],
      [2 ** -24, 0x0001],
      [2 ** -25, 0x0000],
      [2049.0000001, 0x6801],
      [1 + 2 ** -11, 0x3c00],
      [1 + 2 ** -11 + 2 ** -30, 0x3c01],
    ];
    for (const [value, bits] of known) {
      assert.equal(hex(referenceHalfBits(value)), hex(bits), `reference of ${value}`);
      assert.equal(hex(toHalfBits(value)), hex(bits), `toHalfBits(${value})`);
    }
  });

  test('rounds values just off a midpoint from the double, not through float32', () => {
    // Each lies just above a tie that float32 cannot tell it from; the tie would go to even.
    assert.equal(fromHalfBits(toHalfBits(1.0004882812500002)), 1.0009765625);
    assert.equal(fromHalfBits(toHalfBits(1 + 2 ** -11 + 2 ** -30)), 1.0009765625);
    assert.equal(fromHalfBits(toHalfBits(2049.0000001)), 2050);
    assert.equal(fromHalfBits(toHalfBits(-2049.0000001)), -2050);
    // And just below a tie whose even side is up: must round down.
    assert.equal(fromHalfBits(toHalfBits(2051 - 1e-7)), 2050);
  });

  test('every half, every midpoint, and doubles just either side of each, as exact rounding', () => {
    const halves = finiteHalves();
    const values: number[] = [];
    for (let i = 0; i < halves.length; i++) {
      const h = halves[i]!;
      // The midpoint to the next half up (65520 past the largest, the tie with Inf); exact in a double.
      const mid = i + 1 < halves.length ? (h + halves[i + 1]!) / 2 : 65520;
      for (const point of [h, mid]) {
        values.push(point);
        let up = point;
        let down = point;
        for (let k = 0; k < 3; k++) {
          up = nextUp(up);
          down = nextDown(down);
          values.push(up, down);
        }
        // Beyond float32's resolution of the point (2^-24 relative) and around it.
        for (const epsilon of [2 ** -40, 2 ** -30, 2 ** -26, 2 ** -24, 2 ** -23, 2 ** -20]) {
          values.push(point * (1 + epsilon), point * (1 - epsilon), point + epsilon * 2 ** -14, point - epsilon * 2 ** -14);
        }
      }
    }
    const count = assertAllMatch(values.filter((value) => value >= 0));
    assert.ok(count > 1_000_000, `checked ${count} values`);
  });

  test('subnormal halves, underflow to zero, and the smallest doubles', () => {
    const values: number[] = [0, Number.MIN_VALUE, 2 ** -1022, 2 ** -149, 2 ** -126, 2 ** -60];
    // The subnormal range and below, in steps of 2^-30 (64 per subnormal half spacing).
    for (let k = 0; k <= 2 ** 21; k++) values.push(k * 2 ** -30);
    // Around the underflow threshold 2^-25 (the tie with zero) and the first subnormal.
    for (const point of [2 ** -25, 2 ** -24, 3 * 2 ** -25, 2 ** -14, 2 ** -14 - 2 ** -25]) {
      values.push(point, nextUp(point), nextDown(point), point * (1 + 2 ** -30), point * (1 - 2 ** -30));
    }
    assertAllMatch(values);
    assert.equal(toHalfBits(-0), 0x8000);
    assert.equal(toHalfBits(nextUp(2 ** -25)), 0x0001);
    assert.equal(toHalfBits(2 ** -25), 0x0000);
  });

  test('overflow to infinity, infinities and NaN', () => {
    assertAllMatch([65504, 65519, 65519.99999999999, 65520, nextDown(65520), nextUp(65520), 65536, 1e6, 3.4028234663852886e38, 3.5e38, 1e300, Number.MAX_VALUE]);
    assert.equal(toHalfBits(Infinity), 0x7c00);
    assert.equal(toHalfBits(-Infinity), 0xfc00);
    assert.equal(toHalfBits(1e300), 0x7c00);
    assert.equal(toHalfBits(-1e300), 0xfc00);
    const nan = toHalfBits(NaN);
    assert.equal(nan & 0x7c00, 0x7c00, 'NaN has the all-ones exponent');
    assert.notEqual(nan & 0x3ff, 0, 'and a non-zero significand');
    assert.ok(Number.isNaN(fromHalfBits(nan)));
  });

  test('random doubles across the half range, as exact rounding', () => {
    // A fixed-seed generator, so a failure replays.
    let state = 0x9e3779b9;
    const random = (): number => {
      state ^= state << 13;
      state ^= state >>> 17;
      state ^= state << 5;
      return (state >>> 0) / 2 ** 32;
    };
    const values: number[] = [];
    for (let i = 0; i < 200_000; i++) values.push(2 ** (random() * 44 - 28) * (1 + random()));
    assertAllMatch(values);
  });

  test('every half converts back to itself', () => {
    for (let bits = 0; bits <= 0xffff; bits++) {
      const value = fromHalfBits(bits);
      if (Number.isNaN(value)) continue;
      assert.equal(toHalfBits(value), bits, `half ${hex(bits)}`);
    }
  });
});
