/**
 * The longest delay a Node.js timer holds: 2^31 - 1 ms, about 24.8 days. A longer one fires
 * after 1 ms, so every duration that becomes a timer is capped (or refused) at this.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;
