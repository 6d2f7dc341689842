/** Tensor shapes: element counts with overflow checks, formatting and compatibility. */

/** A concrete tensor shape (all dims >= 0). */
export type Shape = readonly number[];

/** A declared shape in model metadata: -1 marks a variable dimension. */
export type ShapeSpec = readonly number[];

/** Largest element count any one tensor may have: keeps byte sizes below 2^53 and typed arrays allocatable. */
export const MAX_ELEMENTS = 2 ** 32;

/**
 * Number of elements of `shape`, or an explanation of why the shape is not a valid concrete
 * shape (negative, fractional or too large dims, or a product that overflows MAX_ELEMENTS).
 */
export function elementCount(shape: Shape): number | { problem: string } {
  let count = 1;
  for (let i = 0; i < shape.length; i++) {
    const dim = shape[i]!;
    if (!Number.isSafeInteger(dim) || dim < 0) {
      return { problem: `dimension ${i} is ${dim}; dimensions must be non-negative integers` };
    }
    count *= dim;
    if (count > MAX_ELEMENTS) {
      return { problem: `shape ${formatShape(shape)} has more than ${MAX_ELEMENTS} elements` };
    }
  }
  return count;
}

export function formatShape(shape: Shape | ShapeSpec): string {
  return `[${shape.join(',')}]`;
}

/** True when concrete `shape` fits `spec` (same rank; each spec dim is -1 or equal). */
export function shapeMatches(spec: ShapeSpec, shape: Shape): boolean {
  if (spec.length !== shape.length) return false;
  for (let i = 0; i < spec.length; i++) {
    const want = spec[i]!;
    if (want !== -1 && want !== shape[i]) return false;
  }
  return true;
}

export function shapesEqual(a: Shape, b: Shape): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
