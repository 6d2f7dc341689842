/**
 * What the engine needs to know about a caller going away: whether it has, and a way to hear
 * when it does. `AbortSignal` has exactly this shape, so front doors that already hold one
 * (gRPC calls, programmatic callers) pass it as it is. {@link CancelFlag} is the cheaper one
 * the HTTP front door makes per request: an AbortController is an EventTarget whose creation
 * and listener bookkeeping cost several microseconds, a measurable share of a small model's
 * whole request.
 */
export interface CancelSignal {
  readonly aborted: boolean;
  /** Calls `listener` once, when the signal fires (never if it already has, as AbortSignal does). */
  addEventListener(type: 'abort', listener: () => void, options?: { readonly once?: boolean }): void;
  removeEventListener(type: 'abort', listener: () => void): void;
}

/** A one-shot cancellation signal: {@link cancel} fires it; listeners run once, in order of registration. */
export class CancelFlag implements CancelSignal {
  private fired = false;
  // Nearly always zero or one listener (the scheduler's), so one slot before an array.
  private first: (() => void) | undefined;
  private rest: (() => void)[] | undefined;

  get aborted(): boolean {
    return this.fired;
  }

  addEventListener(_type: 'abort', listener: () => void): void {
    if (this.fired) return;
    if (this.first === undefined) this.first = listener;
    else (this.rest ??= []).push(listener);
  }

  removeEventListener(_type: 'abort', listener: () => void): void {
    if (this.first === listener) {
      this.first = this.rest?.shift();
      return;
    }
    const index = this.rest?.indexOf(listener) ?? -1;
    if (index >= 0) this.rest!.splice(index, 1);
  }

  /** Fire the signal: `aborted` turns true and every listener runs once. Idempotent. */
  cancel(): void {
    if (this.fired) return;
    this.fired = true;
    const first = this.first;
    const rest = this.rest;
    this.first = undefined;
    this.rest = undefined;
    first?.();
    if (rest !== undefined) for (const listener of rest) listener();
  }
}
