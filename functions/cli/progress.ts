/**
 * One progress display for every long-running command: a single line with a bar, the counts, the
 * rate and the time left, rewritten in place on a terminal and printed only when it changes
 * elsewhere (logs, CI, pipes). Hand-written because no progress library is installed yet.
 */
export interface ProgressSnapshot {
  label: string;
  state: string;
  done?: number | undefined;
  total?: number | undefined;
  ratePerSecond?: number | undefined;
  stage?: string | undefined;
}

const BAR_WIDTH = 20;

export function progressLine(p: ProgressSnapshot): string {
  const parts = [p.label, p.state];
  if (p.total !== undefined && p.total > 0 && p.done !== undefined) {
    const fraction = Math.min(1, Math.max(0, p.done / p.total));
    const filled = Math.round(fraction * BAR_WIDTH);
    parts.push(`[${'#'.repeat(filled)}${'-'.repeat(BAR_WIDTH - filled)}]`, `${Math.floor(fraction * 100)}%`, `${p.done}/${p.total}`);
    if (p.ratePerSecond !== undefined && p.ratePerSecond > 0) {
      parts.push(`${p.ratePerSecond.toFixed(1)}/s`);
      // Time left only while it runs: a job that ended (or waits) has none.
      if (p.done < p.total && p.state === 'running') parts.push(`eta ${formatSeconds((p.total - p.done) / p.ratePerSecond)}`);
    }
  }
  if (p.stage) parts.push(p.stage);
  return parts.join(' ');
}

function formatSeconds(seconds: number): string {
  const s = Math.ceil(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** Writes progress lines to a stream: in place on a terminal, one per change otherwise. */
export class ProgressDisplay {
  private readonly stream: NodeJS.WriteStream;
  private last = '';

  constructor(stream: NodeJS.WriteStream = process.stderr) {
    this.stream = stream;
  }

  update(snapshot: ProgressSnapshot): void {
    const line = progressLine(snapshot);
    if (this.stream.isTTY) this.stream.write(`\r${line}\x1b[K`);
    else if (line !== this.last) this.stream.write(`${line}\n`);
    this.last = line;
  }

  /** Leaves the last line on screen and moves below it. */
  stop(): void {
    if (this.stream.isTTY && this.last) this.stream.write('\n');
  }
}
