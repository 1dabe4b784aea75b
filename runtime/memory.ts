/**
 * Device memory: one arena per rank with a capacity (the GPU's HBM from the hardware profile, or a
 * scaled-down figure). Allocations are accounted against the capacity; exceeding it is an
 * out-of-memory error naming the rank, the requested and the free bytes, as on a GPU.
 *
 * The backing store is a shared WebAssembly.Memory per rank (a SharedArrayBuffer that a WASM SIMD
 * kernel instance can address), sized to what is actually allocated: an 80 GB H100 is accounted as
 * 80 GB, but only the bytes the emulation touches exist on the host. Every rank maps every other
 * rank's memory, so a receive reads straight from the sender's region (zero copy).
 */
import { totalmem } from 'node:os';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

export const PAGE = 65536;
/** wasm32 limit on one memory */
export const MAX_BACKING_BYTES = 65536 * PAGE;
/** per-rank staging area at the start of each rank's memory (cache-sized slices for SIMD reduce) */
export const STAGE_BYTES = 256 * 1024;
const ALIGN = 256;

export class OutOfMemoryError extends Error {
  readonly rank: number;
  readonly requested: number;
  readonly free: number;
  constructor(rank: number, what: string, requested: number, free: number, capacity: number) {
    super(`rank ${rank}: out of device memory allocating ${what}: requested ${fmtBytes(requested)}, free ${fmtBytes(free)} of ${fmtBytes(capacity)}`);
    this.name = 'OutOfMemoryError';
    this.rank = rank;
    this.requested = requested;
    this.free = free;
  }
}

export function fmtBytes(b: number): string {
  if (b >= 1e9) return `${(b / 1e9).toFixed(2)} GB (${b} B)`;
  if (b >= 1e6) return `${(b / 1e6).toFixed(2)} MB (${b} B)`;
  if (b >= 1e3) return `${(b / 1e3).toFixed(2)} KB (${b} B)`;
  return `${b} B`;
}

export interface Allocation { name: string; byteOff: number; bytes: number }

/** Accounting arena for one rank's device memory. */
export class DeviceMemory {
  readonly rank: number;
  readonly capacity: number;
  private top = 0;
  readonly allocations: Allocation[] = [];
  constructor(rank: number, capacity: number) {
    this.rank = rank;
    this.capacity = capacity;
  }
  get used(): number { return this.top; }
  get free(): number { return this.capacity - this.top; }
  alloc(name: string, bytes: number): Allocation {
    if (!Number.isFinite(bytes) || bytes < 0) throw new Error(`rank ${this.rank}: bad allocation size ${bytes} for ${name}`);
    const off = Math.ceil(this.top / ALIGN) * ALIGN;
    if (off + bytes > this.capacity) throw new OutOfMemoryError(this.rank, name, bytes, Math.max(0, this.capacity - off), this.capacity);
    this.top = off + bytes;
    const a = { name, byteOff: off, bytes };
    this.allocations.push(a);
    return a;
  }
  reset(): void {
    this.top = 0;
    this.allocations.length = 0;
  }
}

/** Create the shared backing memory for `bytes` of device allocations plus the staging area. */
export function makeBacking(bytes: number): WebAssembly.Memory {
  const total = STAGE_BYTES + bytes;
  const pages = Math.max(1, Math.ceil(total / PAGE));
  if (pages * PAGE > MAX_BACKING_BYTES) {
    throw new Error(`emulation limit: one rank needs ${fmtBytes(total)} of host memory, above the 4 GiB a shared WebAssembly memory can hold; use smaller sizes`);
  }
  return new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
}

/** Refuse host footprints that would swap or crash the host instead of failing clearly. */
export function checkHostFootprint(ranks: number, perRankBytes: number): void {
  const total = ranks * (perRankBytes + STAGE_BYTES);
  const limit = totalmem() * 0.7;
  if (total > limit) {
    throw new Error(`emulation limit: ${ranks} ranks x ${fmtBytes(perRankBytes)} = ${fmtBytes(total)} of host memory, more than 70% of this machine's ${fmtBytes(totalmem())}; use smaller sizes or fewer ranks`);
  }
}

let gcFn: (() => void) | null | undefined;
/**
 * Run a full garbage collection on this thread, so that device memories a closed cluster dropped
 * are freed now. A shared WebAssembly.Memory is freed only when no thread holds it, and V8 collects
 * the small objects that hold gigabytes of shared memory late: without this, a program that runs
 * several large clusters one after another runs out of host memory (64 ranks x 64 MB: the third
 * cluster in a row was killed by the kernel on a 24 GiB machine). Uses V8's gc() (exposed at run
 * time, as --expose-gc would); does nothing if that is not possible.
 */
export function collectGarbage(): void {
  if (gcFn === undefined) {
    try {
      setFlagsFromString('--expose-gc');
      gcFn = runInNewContext('gc') as () => void;
    } catch {
      gcFn = null;
    }
  }
  gcFn?.();
}
