/**
 * Raw onnxruntime throughput measured around each round of server cells, so that every round's
 * ratio compares the server with raw figures taken in the same minutes.
 *
 * On a shared 2-core machine the speed of the same work drifts by 10-15% over minutes (other
 * tenants, frequency), as much as the margins the targets ask about. A raw figure measured once
 * before a quarter of an hour of server cells compares the server with a machine that is no
 * longer there. Here the raw loop runs (in one layout: sessions side by side at a batch size)
 * before the first round and after every round; a round's raw figure is the mean of the
 * measurements either side of it, and its ratio is the server's items/s over that. The verdict is the median of the rounds' ratios.
 */
import { runRawBaseline, type RawLayout } from './children.js';

export interface RawModel {
  readonly key: string;
  readonly file: string;
  readonly input: string;
  readonly itemShape: readonly number[];
}

export class BracketedRaw {
  private readonly marks: number[] = [];

  constructor(private readonly measure: () => Promise<number>) {}

  /** Raw items/s of `model` in `layout` (sessions side by side at a batch size) with the server's default session options. */
  static forModel(model: RawModel, layout: RawLayout, quick: boolean): BracketedRaw {
    return new BracketedRaw(async () => (await runRawBaseline(model, [layout.batchSize], {}, quick, [layout.sessions])).best.itemsPerSecond);
  }

  /** Measure now (before the first round and after each round); returns the figure. */
  async mark(): Promise<number> {
    const value = await this.measure();
    this.marks.push(value);
    return value;
  }

  /** Every measurement so far, in order. */
  get measurements(): readonly number[] {
    return this.marks;
  }

  /** Raw items/s for 1-based `round`: the mean of the marks before and after it (the one before, if no mark follows yet). */
  forRound(round: number): number {
    const before = this.marks[round - 1];
    if (before === undefined) throw new Error(`no raw measurement before round ${round}`);
    const after = this.marks[round];
    return after === undefined ? before : (before + after) / 2;
  }
}
