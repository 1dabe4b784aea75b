/**
 * A rank's device-memory plan: every tensor of a training run (parameters, gradients, optimizer
 * states, activations, communication buffers) gets a region of the rank's arena when it is
 * allocated and gives it back when freed, like a caching allocator replayed at compile time. The
 * plan is static (as in a captured CUDA graph), so the same program always uses the same memory.
 *
 * Accounting: live bytes per category and their peak, with a snapshot of what was live at the
 * peak. Exceeding the device capacity is an out-of-memory error naming the rank, the training step
 * and phase, and the largest live tensors.
 */
import { ELEM_BYTES, type Region } from '../../runtime/ir.js';

export type MemCategory = 'param' | 'grad' | 'optim' | 'activation' | 'comm' | 'data';
export const MEM_CATEGORIES: readonly MemCategory[] = ['param', 'grad', 'optim', 'activation', 'comm', 'data'];

export interface Tensor {
  name: string;
  cat: MemCategory;
  region: Region;
}

export class TrainOutOfMemory extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TrainOutOfMemory';
  }
}

export interface MemoryReport {
  /** peak live bytes */
  peakBytes: number;
  /** live bytes per category at the peak */
  atPeak: Record<MemCategory, number>;
  /** where the peak happened */
  peakWhere: string;
  /** arena size needed (elements), >= peak (fragmentation) */
  arenaElems: number;
  /** peak over time of the model states alone (parameters + gradients + optimizer states) */
  peakModelStates: number;
}

interface Block { off: number; len: number }

const fmtBytes = (b: number): string =>
  b >= 2 ** 30 ? `${(b / 2 ** 30).toFixed(2)} GiB` : b >= 2 ** 20 ? `${(b / 2 ** 20).toFixed(2)} MiB` : b >= 1024 ? `${(b / 1024).toFixed(1)} KiB` : `${b} B`;

export class Arena {
  readonly rank: number;
  /** capacity in bytes (Infinity: unlimited) */
  readonly capacity: number;
  private free: Block[] = [];
  private top = 0;
  private live = new Map<string, Tensor>();
  private liveBytes = 0;
  private byCat: Record<MemCategory, number> = { param: 0, grad: 0, optim: 0, activation: 0, comm: 0, data: 0 };
  private peak = 0;
  private peakCat: Record<MemCategory, number> = { ...this.byCat };
  private peakWhere = 'start';
  private peakStates = 0;
  /** where the program is (for messages): set by the builder */
  where = 'start';
  private counter = 0;

  constructor(rank: number, capacity = Infinity) {
    this.rank = rank;
    this.capacity = capacity;
  }

  /** Allocate `len` float32 elements (aligned to 16 elements, 64 bytes). */
  alloc(name: string, len: number, cat: MemCategory): Tensor {
    if (!Number.isInteger(len) || len < 0) throw new Error(`rank ${this.rank}: bad tensor length ${len} for ${name}`);
    if (this.live.has(name)) name = `${name}#${++this.counter}`;
    const need = Math.max(16, Math.ceil(len / 16) * 16);
    const bytes = len * ELEM_BYTES;
    if (this.liveBytes + bytes > this.capacity) {
      const top = [...this.live.values()].sort((a, b) => b.region.len - a.region.len).slice(0, 6);
      const cats = MEM_CATEGORIES.filter((c) => this.byCat[c] > 0).map((c) => `${c} ${fmtBytes(this.byCat[c])}`).join(', ');
      const largest = top.map((t) => `${t.name} ${fmtBytes(t.region.len * ELEM_BYTES)}`).join(', ');
      throw new TrainOutOfMemory(
        `out of memory on rank ${this.rank} at ${this.where}: allocating ${name} (${fmtBytes(bytes)}) ` +
          (this.live.size === 0
            ? `exceeds the device capacity of ${fmtBytes(this.capacity)} (nothing else is live)`
            : `with ${fmtBytes(this.liveBytes)} live (${cats}) exceeds the device capacity of ${fmtBytes(this.capacity)}; largest live: ${largest}`),
      );
    }
    let off = -1;
    // first fit over the free list (kept sorted by offset, coalesced)
    for (let i = 0; i < this.free.length; i++) {
      const b = this.free[i]!;
      if (b.len >= need) {
        off = b.off;
        if (b.len === need) this.free.splice(i, 1);
        else { b.off += need; b.len -= need; }
        break;
      }
    }
    if (off < 0) {
      // extend the arena, merging a free block that ends at the top
      const last = this.free[this.free.length - 1];
      if (last && last.off + last.len === this.top) {
        off = last.off;
        this.free.pop();
        this.top = off + need;
      } else {
        off = this.top;
        this.top += need;
      }
    }
    const t: Tensor = { name, cat, region: { buf: 'in', off, len } };
    (t as Tensor & { cap: number }).cap = need;
    this.live.set(name, t);
    this.liveBytes += bytes;
    this.byCat[cat] += bytes;
    const states = this.byCat.param + this.byCat.grad + this.byCat.optim;
    if (states > this.peakStates) this.peakStates = states;
    if (this.liveBytes > this.peak) {
      this.peak = this.liveBytes;
      this.peakCat = { ...this.byCat };
      this.peakWhere = this.where;
    }
    return t;
  }

  release(t: Tensor): void {
    const cur = this.live.get(t.name);
    if (cur !== t) throw new Error(`rank ${this.rank}: freeing ${t.name}, which is not live`);
    this.live.delete(t.name);
    const bytes = t.region.len * ELEM_BYTES;
    this.liveBytes -= bytes;
    this.byCat[t.cat] -= bytes;
    const need = (t as Tensor & { cap: number }).cap;
    // insert sorted, coalesce neighbours
    const b: Block = { off: t.region.off, len: need };
    let i = 0;
    while (i < this.free.length && this.free[i]!.off < b.off) i++;
    this.free.splice(i, 0, b);
    const next = this.free[i + 1];
    if (next && b.off + b.len === next.off) { b.len += next.len; this.free.splice(i + 1, 1); }
    const prev = this.free[i - 1];
    if (prev && prev.off + prev.len === b.off) { prev.len += b.len; this.free.splice(i, 1); }
  }

  isLive(t: Tensor): boolean {
    return this.live.get(t.name) === t;
  }

  get liveNow(): number {
    return this.liveBytes;
  }

  report(): MemoryReport {
    return { peakBytes: this.peak, atPeak: { ...this.peakCat }, peakWhere: this.peakWhere, arenaElems: this.top, peakModelStates: this.peakStates };
  }
}
