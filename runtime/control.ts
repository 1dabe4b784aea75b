/**
 * Layout of the control SharedArrayBuffer shared by the cluster and its rank workers.
 * Every counter a thread spins or blocks on sits on its own 64-byte cache line.
 *
 *  header:   abort flag, barrier count/generation, barrier release wall time (float64)
 *  per rank: doorbell (the word the rank blocks on with Atomics.wait), state, what it waits for,
 *            progress counter, job doorbell
 *  per directed pair (src, dst): `posted` (written by src) and `consumed` (written by dst) counters
 * Message descriptors [byteOff, len, arrival, seq] (float64) live in a per-job SharedArrayBuffer
 * (DescTable): each pair gets as many slots as its programs send per iteration, so a sender never
 * waits for a slot within an iteration (the IR's unbounded-buffer semantics); across iterations a
 * slot is reused once the previous iteration's message in it was consumed.
 */

export const LINE = 16; // int32 per cache line
export const DESC_F64 = 4;

export const H_ABORT = 0;
export const H_BAR_COUNT = LINE;
export const H_BAR_GEN = 2 * LINE;
/** number of ranks not asleep in Atomics.wait (adaptive spinning) */
export const H_AWAKE = 4 * LINE;
/** float64 index of the barrier release time (ms since epoch) */
export const H_BAR_T0_F64 = (3 * LINE) / 2;
/** number of ranks running a job and not waiting in waitGE / a barrier (yield-polling pays only below the core count) */
export const H_BUSY = 5 * LINE;
const HEADER_I32 = 6 * LINE;

// per-rank fields (offsets within the rank's line)
export const R_BELL = 0;
export const R_STATE = 1;
export const R_WAIT_PEER = 2;
export const R_WAIT_SEQ = 3;
export const R_PC = 4;
export const R_ITER = 5;
export const R_PROGRESS = 6;
export const R_JOB_BELL = 8; // a separate line would be nicer; job hand-offs are rare

/** Rank states, as reported in deadlock diagnostics. */
export const ST_RUNNING = 0;
export const ST_RECV = 1;
export const ST_CONSUME = 2;
export const ST_SLOT = 3;
export const ST_BARRIER = 4;
export const ST_IDLE = 5;
export const ST_SLEEP = 6;
export const ST_DONE = 7;
export const STATE_NAMES = ['running', 'waiting for a message', 'waiting for a send buffer to be consumed', 'waiting for a free message slot', 'in a barrier', 'idle', 'pacing (sleeping to track virtual time)', 'done'];

export class ControlLayout {
  readonly p: number;
  readonly rank0: number;
  readonly posted0: number;
  readonly consumed0: number;
  readonly bytes: number;
  constructor(p: number) {
    this.p = p;
    this.rank0 = HEADER_I32;
    this.posted0 = this.rank0 + p * LINE;
    this.consumed0 = this.posted0 + p * p * LINE;
    const endI32 = this.consumed0 + p * p * LINE;
    this.bytes = endI32 * 4;
  }
  rank(r: number, field: number): number { return this.rank0 + r * LINE + field; }
  posted(src: number, dst: number): number { return this.posted0 + (src * this.p + dst) * LINE; }
  consumed(src: number, dst: number): number { return this.consumed0 + (src * this.p + dst) * LINE; }
  /** int32 range [start, end) of the pair counters, zeroed between jobs */
  get pairRange(): [number, number] { return [this.posted0, this.consumed0 + this.p * this.p * LINE]; }
}

/**
 * Per-job descriptor slots: `base[pair]` is the first slot of the pair (src * p + dst), `count[pair]`
 * the number of messages it carries per iteration; slot of message seq = base + seq mod count.
 * Switch operations (runtime/ir.ts) need nothing special: every multicast copy (`mc` send) is a
 * message of its own pair with its own descriptor (the same arrival as the send it copies), and a
 * rank's switch messages to itself use the diagonal pair (r, r), which has counters like any other.
 */
export interface DescTable {
  /** Int32Array [base..., count...] over p*p pairs each */
  index: SharedArrayBuffer;
  /** Float64Array of DESC_F64 floats per slot */
  slots: SharedArrayBuffer;
}

export function makeDescTable(p: number, sendCounts: Int32Array): DescTable {
  const index = new SharedArrayBuffer(2 * p * p * 4);
  const ix = new Int32Array(index);
  let total = 0;
  for (let k = 0; k < p * p; k++) {
    ix[k] = total;
    ix[p * p + k] = sendCounts[k]!;
    total += sendCounts[k]!;
  }
  return { index, slots: new SharedArrayBuffer(Math.max(1, total) * DESC_F64 * 8) };
}
