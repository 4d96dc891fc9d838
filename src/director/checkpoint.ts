// Periodic saves during a long run, so that killing tsup hard (SIGKILL, power loss) loses at most
// the last interval of finished work instead of the whole run. A checkpoint is exactly what an
// interrupted run saves: finished steps with their fingerprints, running and unfinished ones
// without, so a later run never skips a step whose outputs are stale.

export class Checkpointer {
  private timer: NodeJS.Timeout | undefined;
  private saving: Promise<void> | undefined;
  private stopped = false;
  private lastProgress = 0;

  constructor(
    /** Write the current state (atomically). */
    private readonly save: () => Promise<void>,
    /** A number that grows when there is new finished work worth saving. */
    private readonly progress: () => number,
    private readonly intervalMs: number,
  ) {}

  start(): void {
    this.schedule(this.intervalMs);
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.tick(), ms);
    // A pending checkpoint must not keep tsup alive.
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    const progress = this.progress();
    if (progress === this.lastProgress) {
      this.schedule(this.intervalMs);
      return;
    }
    const started = performance.now();
    this.saving = this.save();
    try {
      await this.saving;
      this.lastProgress = progress;
    } finally {
      this.saving = undefined;
    }
    // Saving a huge workflow takes a while: never spend more than about 5% of the time on it.
    this.schedule(Math.max(this.intervalMs, 20 * (performance.now() - started)));
  }

  /** No more checkpoints; resolves once a save in progress has finished. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.saving;
  }
}
