/**
 * Orders strings by their UTF-16 code units, as `Array.prototype.sort()` does without a
 * comparator: the same on every machine. `localeCompare` follows the server's locale, so
 * model listings came out in another order under, say, da_DK ("aa" sorts after "z" there).
 */
export function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
