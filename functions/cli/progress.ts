import cliProgress from 'cli-progress';

/**
 * The one progress display of every long-running command (`mass jobs|batch|quantize|evaluate|train|
 * tune|federation ... --watch`), drawn by cli-progress: its bar on a terminal (redrawn in place, the
 * cursor hidden while it runs), and the same line, formatted by cli-progress's formatter, printed
 * once per change elsewhere (logs, CI, pipes: cli-progress's own non-terminal mode prints on a timer,
 * which repeats unchanged lines and drops changes between ticks).
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
const BAR_OPTIONS = { barsize: BAR_WIDTH, barCompleteString: '#'.repeat(BAR_WIDTH), barIncompleteString: '-'.repeat(BAR_WIDTH), barGlue: '' };

/** One line: label, state, and with counts the bar, percent, counts, rate and time left; then the stage. */
export function progressLine(p: ProgressSnapshot): string {
  const parts = [p.label, p.state];
  if (p.total !== undefined && p.total > 0 && p.done !== undefined) {
    const fraction = Math.min(1, Math.max(0, p.done / p.total));
    parts.push(`[${cliProgress.Format.BarFormat(fraction, BAR_OPTIONS)}]`, `${Math.floor(fraction * 100)}%`, `${p.done}/${p.total}`);
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

/** Progress on a stream: cli-progress's bar on a terminal, one line per change otherwise. */
export class ProgressDisplay {
  private readonly stream: NodeJS.WriteStream;
  private bar: cliProgress.SingleBar | undefined;
  private last = '';

  constructor(stream: NodeJS.WriteStream = process.stderr) {
    this.stream = stream;
  }

  update(snapshot: ProgressSnapshot): void {
    const line = progressLine(snapshot);
    if (this.stream.isTTY) {
      const value = snapshot.done ?? 0;
      const total = snapshot.total ?? 0;
      if (!this.bar) {
        this.bar = new cliProgress.SingleBar({ stream: this.stream, hideCursor: true, clearOnComplete: false, linewrap: false, fps: 10, format: (_options, _params, payload: { line: string }) => payload.line });
        this.bar.start(total, value, { line });
      } else {
        this.bar.setTotal(total);
        this.bar.update(value, { line });
      }
    } else if (line !== this.last) {
      this.stream.write(`${line}\n`);
    }
    this.last = line;
  }

  /** Leaves the last line on screen and moves below it. */
  stop(): void {
    this.bar?.stop();
    this.bar = undefined;
  }
}
