/**
 * A FIFO over a power-of-two ring buffer: O(1) push and shift with no `Array.shift()`
 * re-indexing. It grows by doubling when full; callers bound it themselves.
 */
export class RingQueue<T> {
  private slots: (T | undefined)[];
  private head = 0;
  private size = 0;

  constructor(initialCapacity = 16) {
    let capacity = 1;
    while (capacity < initialCapacity) capacity *= 2;
    this.slots = new Array<T | undefined>(capacity);
  }

  get length(): number {
    return this.size;
  }

  get capacity(): number {
    return this.slots.length;
  }

  push(item: T): void {
    if (this.size === this.slots.length) this.grow();
    this.slots[(this.head + this.size) & (this.slots.length - 1)] = item;
    this.size++;
  }

  shift(): T | undefined {
    if (this.size === 0) return undefined;
    const item = this.slots[this.head];
    this.slots[this.head] = undefined;
    this.head = (this.head + 1) & (this.slots.length - 1);
    this.size--;
    return item;
  }

  peek(): T | undefined {
    return this.size === 0 ? undefined : this.slots[this.head];
  }

  /** The item `index` places from the head (0 = head), or undefined past the end. */
  at(index: number): T | undefined {
    if (index < 0 || index >= this.size) return undefined;
    return this.slots[(this.head + index) & (this.slots.length - 1)];
  }

  /** Keep only the items `keep` accepts, in order (the others are let go). */
  retain(keep: (item: T) => boolean): void {
    let kept = 0;
    for (let i = 0; i < this.size; i++) {
      const item = this.slots[(this.head + i) & (this.slots.length - 1)]!;
      if (keep(item)) this.slots[(this.head + kept++) & (this.slots.length - 1)] = item;
    }
    for (let i = kept; i < this.size; i++) this.slots[(this.head + i) & (this.slots.length - 1)] = undefined;
    this.size = kept;
  }

  *[Symbol.iterator](): IterableIterator<T> {
    for (let i = 0; i < this.size; i++) yield this.slots[(this.head + i) & (this.slots.length - 1)]!;
  }

  private grow(): void {
    const next = new Array<T | undefined>(this.slots.length * 2);
    for (let i = 0; i < this.size; i++) next[i] = this.slots[(this.head + i) & (this.slots.length - 1)];
    this.slots = next;
    this.head = 0;
  }
}
