import { describe, expect, it } from 'vitest';
import { snapshotOf } from '../../functions/cli/commands/jobs.ts';
import { Writable } from 'node:stream';
import { progressLine, ProgressDisplay } from '../../functions/cli/progress.ts';
import { jobView, type JobRecord } from '../../functions/core/jobs/record.ts';

describe('progressLine', () => {
  it('shows the bar, the counts, the rate and the time left', () => {
    expect(progressLine({ label: 'j-1', state: 'running', done: 250, total: 1000, ratePerSecond: 2.5, stage: 'scoring' })).toBe(
      'j-1 running [#####---------------] 25% 250/1000 2.5/s eta 5m00s scoring',
    );
    expect(progressLine({ label: 'j-1', state: 'running', done: 1, total: 20_000, ratePerSecond: 1 })).toBe('j-1 running [--------------------] 0% 1/20000 1.0/s eta 5h33m');
    expect(progressLine({ label: 'j-1', state: 'running', done: 3, total: 4, ratePerSecond: 0.75 })).toBe('j-1 running [###############-----] 75% 3/4 0.8/s eta 2s');
  });

  it('leaves out what it does not know: no rate yet, no total, and no time left once done or ended', () => {
    expect(progressLine({ label: 'j-1', state: 'running', done: 1, total: 4, ratePerSecond: 0 })).toBe('j-1 running [#####---------------] 25% 1/4');
    expect(progressLine({ label: 'j-1', state: 'queued' })).toBe('j-1 queued');
    expect(progressLine({ label: 'j-1', state: 'succeeded', done: 4, total: 4, ratePerSecond: 2 })).toBe('j-1 succeeded [####################] 100% 4/4 2.0/s');
    expect(progressLine({ label: 'j-1', state: 'cancelled', done: 30, total: 120, ratePerSecond: 3, stage: 'demo' })).toBe('j-1 cancelled [#####---------------] 25% 30/120 3.0/s demo');
  });
});

describe('snapshotOf', () => {
  const job: JobRecord = {
    id: 'j-1',
    kind: 'batch',
    state: 'running',
    requestHash: 'h',
    request: {},
    attempts: 3,
    stepsTotal: 8,
    stepsSucceeded: 2,
    stepsFailed: 1,
    created: '2026-01-01T00:00:00.000Z',
    updated: '2026-01-01T00:00:00.000Z',
  };

  it("counts a job's steps when its steps report no progress of their own", () => {
    expect(snapshotOf(jobView(job))).toEqual({ label: 'j-1', state: 'running', done: 3, total: 8 });
  });

  it("uses the job's own progress when it has one", () => {
    const progress = { done: 40, total: 50, ratePerSecond: 4, stage: 'summing', updated: '2026-01-01T00:00:10.000Z' };
    expect(snapshotOf(jobView({ ...job, progress }))).toEqual({ label: 'j-1', state: 'running', done: 40, total: 50, ratePerSecond: 4, stage: 'summing' });
  });
});

describe('ProgressDisplay', () => {
  /** A stream that says what a terminal or a pipe says about itself, and keeps what was written. */
  function stream(isTTY: boolean): NodeJS.WriteStream & { text(): string } {
    const chunks: string[] = [];
    const fake = new Writable({ write: (chunk, _encoding, done) => (chunks.push(String(chunk)), done()) }) as unknown as NodeJS.WriteStream & { text(): string };
    Object.assign(fake, { isTTY, columns: 120, cursorTo: () => true, clearLine: () => true, moveCursor: () => true, text: () => chunks.join('') });
    return fake;
  }

  it('prints one line per change to a pipe, and nothing for an unchanged snapshot', () => {
    const out = stream(false);
    const display = new ProgressDisplay(out);
    display.update({ label: 'j-1', state: 'running', done: 1, total: 4 });
    display.update({ label: 'j-1', state: 'running', done: 1, total: 4 });
    display.update({ label: 'j-1', state: 'succeeded', done: 4, total: 4 });
    display.stop();
    expect(out.text()).toBe('j-1 running [#####---------------] 25% 1/4\nj-1 succeeded [####################] 100% 4/4\n');
  });

  it("draws cli-progress's bar in place on a terminal, the cursor hidden until it stops", () => {
    const out = stream(true);
    const display = new ProgressDisplay(out);
    display.update({ label: 'j-1', state: 'running', done: 1, total: 4 });
    display.update({ label: 'j-1', state: 'succeeded', done: 4, total: 4 });
    display.stop();
    const text = out.text();
    expect(text).toContain('\x1b[?25l'); // hidden while drawing
    expect(text.indexOf('j-1 running [#####---------------] 25% 1/4')).toBeLessThan(text.indexOf('j-1 succeeded [####################] 100% 4/4'));
    expect(text.endsWith('\n')).toBe(true);
    expect(text.lastIndexOf('\x1b[?25h')).toBeGreaterThan(text.indexOf('succeeded')); // shown again at the end
    expect(text.split('\n')).toHaveLength(2); // one line redrawn, then the newline that leaves it on screen
  });
});
