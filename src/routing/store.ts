import { open, readFile, rename, unlink } from 'node:fs/promises';
import { z } from 'zod';
import type { Logger } from '../core/logger.js';
import { canarySpecSchema, gatesSchema, mirrorSchema, shadowSpecSchema } from './config.js';

/**
 * The routing state file: what operators changed at run time (split, default version, aliases,
 * shadow, canaries and their progress), so a restart keeps it. One JSON document, written
 * atomically (a temporary file, fsync, rename) and one write at a time; a burst of changes
 * costs one write of the latest state. A missing file is an empty state; an unreadable one is
 * moved aside (`.corrupt-<time>`) and logged, and the server starts from the model configs.
 */

export const STATE_FORMAT = 1;

const decisionSchema = z.object({
  at: z.string(),
  decision: z.enum(['start', 'resume', 'step', 'wait', 'promote', 'rollback', 'abort']),
  step: z.number(),
  share: z.number(),
  reason: z.string(),
  measurements: z.unknown().optional(),
});

export const canaryRecordSchema = z.object({
  version: z.string(),
  stable: z.string(),
  steps: z.array(z.number()).min(1),
  holdMs: z.number().min(0),
  gates: gatesSchema,
  mirror: mirrorSchema,
  phase: z.enum(['running', 'promoted', 'rolled_back', 'aborted']),
  stepIndex: z.number().int().min(0),
  share: z.number(),
  startedAt: z.string(),
  stepStartedAt: z.string(),
  finishedAt: z.string().nullable(),
  reason: z.string().nullable(),
  history: z.array(decisionSchema),
});

const modelStateSchema = z.object({
  /** A version or alias; null = cleared (back to the engine's default). */
  defaultVersion: z.string().nullable().optional(),
  /** null = cleared at run time (the config's split no longer applies). */
  split: z.record(z.string(), z.number()).nullable().optional(),
  /** Alias -> version; null = removed at run time. */
  aliases: z.record(z.string(), z.string().nullable()).optional(),
  /** Earlier versions of each alias, newest last (for rollback). */
  aliasHistory: z.record(z.string(), z.array(z.string())).optional(),
  shadow: shadowSpecSchema.nullable().optional(),
  canary: canaryRecordSchema.optional(),
  /** The config canary this state already started (so a restart does not start it again). */
  configCanary: canarySpecSchema.pick({ version: true }).optional(),
  updatedAt: z.string().optional(),
});

export const stateFileSchema = z.object({
  format: z.literal(STATE_FORMAT),
  models: z.record(z.string(), modelStateSchema),
});

export type PersistedModelState = z.output<typeof modelStateSchema>;
export type PersistedState = z.output<typeof stateFileSchema>;

export class RoutingStateStore {
  private pending: PersistedState | undefined;
  private writing: Promise<void> | undefined;
  private sequence = 0;
  private lastErrorLog = -Infinity;

  constructor(
    readonly path: string,
    private readonly logger: Logger,
  ) {}

  /** The persisted state; empty when there is none or it cannot be read. */
  async load(): Promise<PersistedState> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') this.logger.error({ path: this.path, err: error }, 'cannot read the routing state file; starting from the model configs');
      return { format: STATE_FORMAT, models: {} };
    }
    let problem: string;
    try {
      const parsed = stateFileSchema.safeParse(JSON.parse(text));
      if (parsed.success) return parsed.data;
      problem = parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`).join('; ');
    } catch (error) {
      problem = (error as Error).message;
    }
    const aside = `${this.path}.corrupt-${Date.now()}`;
    await rename(this.path, aside).catch(() => undefined);
    this.logger.error({ path: this.path, movedTo: aside, problem }, 'the routing state file is invalid; moved aside, starting from the model configs');
    return { format: STATE_FORMAT, models: {} };
  }

  /** Write `state` soon (coalesced with other saves); never throws. */
  save(state: PersistedState): void {
    this.pending = structuredClone(state);
    this.writing ??= this.drain();
  }

  /** Resolves when every saved state is on disk (or failed and was logged). */
  async flush(): Promise<void> {
    while (this.writing !== undefined) await this.writing;
  }

  private async drain(): Promise<void> {
    try {
      while (this.pending !== undefined) {
        const state = this.pending;
        this.pending = undefined;
        await this.write(state);
      }
    } finally {
      this.writing = undefined;
    }
  }

  private async write(state: PersistedState): Promise<void> {
    const temporary = `${this.path}.tmp-${process.pid}-${++this.sequence}`;
    try {
      const file = await open(temporary, 'w', 0o644);
      try {
        await file.writeFile(`${JSON.stringify(state, null, 2)}\n`, 'utf8');
        await file.datasync();
      } finally {
        await file.close();
      }
      await rename(temporary, this.path);
    } catch (error) {
      await unlink(temporary).catch(() => undefined);
      if (Date.now() - this.lastErrorLog > 60_000) {
        this.lastErrorLog = Date.now();
        this.logger.error({ path: this.path, err: error }, 'cannot write the routing state file; run-time routing changes will not survive a restart');
      }
    }
  }
}
