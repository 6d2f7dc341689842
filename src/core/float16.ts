/** IEEE 754 half-precision conversion (FP16 tensors keep raw half bits in a Uint16Array). */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/**
 * Half bits of `value`, rounded to nearest even from the exact double.
 *
 * The conversion reads the bits of `value` rounded to float32, which is cheap, and rounds
 * those to half. Rounding twice goes wrong in one case only: when the float32 rounding lands
 * exactly on a midpoint between two halves (1 + 2^-11 + 2^-30 becomes 1 + 2^-11, which then
 * ties to even, 1, where the double lies above the tie and rounds to 1 + 2^-10). Every
 * midpoint, the overflow threshold 65520 and the underflow threshold 2^-25 included, is a
 * float32, and rounding to nearest is monotonic, so a float32 rounding can reach a midpoint
 * but never cross one: anywhere else the float32 is on the same side of every midpoint as the
 * double. So at a tie of the float32, the double decides (roundsUpAtTie); the common path is
 * unchanged.
 */
export function toHalfBits(value: number): number {
  f32[0] = value;
  const bits = u32[0]!;
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  let mantissa = bits & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa !== 0 ? 0x200 : 0); // Inf / NaN
  let e = exponent - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow to Inf
  if (e <= 0) {
    if (e < -10) return sign; // underflow to zero
    mantissa |= 0x800000;
    const shift = 14 - e;
    const half = mantissa >>> shift;
    const remainder = mantissa & ((1 << shift) - 1);
    const midpoint = 1 << (shift - 1);
    return sign | (half + (remainder > midpoint || (remainder === midpoint && roundsUpAtTie(value, half)) ? 1 : 0));
  }
  const half = (e << 10) | (mantissa >>> 13);
  const remainder = mantissa & 0x1fff;
  e = half + (remainder > 0x1000 || (remainder === 0x1000 && roundsUpAtTie(value, half)) ? 1 : 0);
  return sign | e;
}

/**
 * Whether to round up (away from zero) when `value`, as float32 (still in `f32`), lies
 * exactly half way between half `half` and the next: ties to even when the double is the
 * midpoint itself, else towards the side of the midpoint the double is on.
 */
function roundsUpAtTie(value: number, half: number): boolean {
  const rounded = f32[0]!;
  if (rounded === value) return (half & 1) === 1;
  return Math.abs(value) > Math.abs(rounded);
}

/** The number that half bits `bits` encode. */
export function fromHalfBits(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >>> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa === 0 ? sign * Infinity : NaN;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}
