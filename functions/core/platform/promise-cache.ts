/**
 * Promises kept by key, for a value many callers need and one read gives: at most `size` of them
 * (the least recently used goes first), each for `ttlMs` from its read when given. A read that fails
 * is not kept, so the next caller reads again; the failure itself reaches every caller that holds it.
 */
export class PromiseCache<T> {
  private readonly entries = new Map<string, { at: number; value: Promise<T> }>();
  private readonly size: number;
  private readonly ttlMs: number;

  constructor(size: number, ttlMs = Infinity) {
    this.size = size;
    this.ttlMs = ttlMs;
  }

  get(key: string, read: () => Promise<T>): Promise<T> {
    const now = performance.now();
    const found = this.entries.get(key);
    this.entries.delete(key);
    if (found && now - found.at < this.ttlMs) {
      this.entries.set(key, found);
      return found.value;
    }
    const value = read();
    this.entries.set(key, { at: now, value });
    if (this.entries.size > this.size) this.entries.delete(this.entries.keys().next().value!);
    // Only forgets the failed read.
    value.catch(() => {
      if (this.entries.get(key)?.value === value) this.entries.delete(key);
    });
    return value;
  }
}
