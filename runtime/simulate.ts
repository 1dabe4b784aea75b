/**
 * The `simulate` executor: runs the per-rank IR programs in one thread as a discrete-event
 * simulation, with or without payload data. It applies the same timing rules (runtime/timing.ts)
 * and the same send-buffer semantics as the worker-thread emulator, so virtual times are identical
 * and a program that deadlocks in one deadlocks in the other.
 *
 * With `data`, it also moves and reduces real Float32 data (plain TypeScript kernels), which makes
 * it a fast single-thread reference for algorithm tests.
 */
import { ELEM_BYTES, type BufName, type Op, type Program, type Region } from './ir.js';
import { reduceJs, scaleJs } from './reduce.js';
import { localTimes, recvTimes, sendTimes, VClock } from './timing.js';
import type { Topology } from './topology.js';
import { KIND_CODES, TraceRecorder, type TraceEvent } from './trace.js';

export type RankBuffers = Record<BufName, Float32Array>;

export interface SimulateOptions {
  topo: Topology;
  /** one program per rank, or a generator (programs made lazily, one rank at a time) */
  programs: Program[] | ((rank: number) => Program);
  /** per-rank buffers; without them no data moves (timing only) */
  data?: RankBuffers[];
  trace?: boolean;
  /** peak FLOP/s for compute ops (default: the topology GPU's bf16 peak) */
  peakFlops?: number;
}

export interface SimulateResult {
  /** virtual completion time of each rank, seconds */
  rankTimes: Float64Array;
  /** max over ranks */
  time: number;
  events?: TraceEvent[];
  /** number of messages delivered */
  messages: number;
}

export class DeadlockError extends Error {
  readonly pending: string[];
  constructor(pending: string[]) {
    super(`deadlock: every unfinished rank is blocked\n${pending.map((s) => '  ' + s).join('\n')}`);
    this.name = 'DeadlockError';
    this.pending = pending;
  }
}

interface Msg { arrival: number; src: Region; seq: number }
interface PairQ { msgs: Msg[]; head: number; consumed: number; posted: number }
interface Outstanding { peer: number; seq: number; region: Region }

const overlaps = (a: Region, b: Region) => a.buf === b.buf && a.off < b.off + b.len && b.off < a.off + a.len && a.len > 0 && b.len > 0;

function writeRegion(o: Op): Region | undefined {
  switch (o.k) {
    case 'recv': return o.dst;
    case 'copy': return o.dst;
    case 'reduce': return o.dst;
    case 'scale': return o.dst;
    default: return undefined;
  }
}

export function describeOp(o: Op | undefined): string {
  if (!o) return 'end of program';
  const r = (x: Region) => `${x.buf}[${x.off}..${x.off + x.len})`;
  switch (o.k) {
    case 'send': return `send ${r(o.src)} to rank ${o.peer}`;
    case 'recv': return `recv${o.op ? `-${o.op}` : ''} into ${r(o.dst)} from rank ${o.peer}`;
    case 'copy': return `copy ${r(o.src)} -> ${r(o.dst)}`;
    case 'reduce': return `reduce-${o.op} ${r(o.a)}, ${r(o.b)} -> ${r(o.dst)}`;
    case 'scale': return `scale ${r(o.dst)} by ${o.factor}`;
    case 'compute': return `compute ${o.label ?? ''} ${o.flops} flops`;
  }
}

export function simulate(opts: SimulateOptions): SimulateResult {
  const { topo, data } = opts;
  const p = topo.p;
  const peak = opts.peakFlops ?? topo.hw.peakFlops.bf16;
  const progs: Program[] = new Array(p);
  const getProg = (r: number): Program => {
    let pr = progs[r];
    if (!pr) {
      pr = typeof opts.programs === 'function' ? opts.programs(r) : opts.programs[r]!;
      if (!pr) throw new Error(`no program for rank ${r}`);
      progs[r] = pr;
    }
    return pr;
  };
  if (Array.isArray(opts.programs) && opts.programs.length !== p) {
    throw new Error(`${opts.programs.length} programs for ${p} ranks`);
  }
  const pc = new Int32Array(p);
  const done = new Uint8Array(p);
  const clocks: VClock[] = [];
  for (let r = 0; r < p; r++) clocks.push(new VClock(topo.nPorts));
  const pairs = new Map<number, PairQ>();
  const pair = (src: number, dst: number): PairQ => {
    const key = src * p + dst;
    let q = pairs.get(key);
    if (!q) pairs.set(key, (q = { msgs: [], head: 0, consumed: 0, posted: 0 }));
    return q;
  };
  const outstanding: Outstanding[][] = Array.from({ length: p }, () => []);
  // who waits for what: rank r blocked on recv from q -> waitRecv[r] = q; on consumption by q -> waitCons[r] = q
  const waitRecv = new Int32Array(p).fill(-1);
  const waitCons = new Int32Array(p).fill(-1);
  const tracer = opts.trace ? new TraceRecorder() : undefined;
  const ready: number[] = [];
  for (let r = p - 1; r >= 0; r--) ready.push(r);
  const queued = new Uint8Array(p).fill(1);
  const wake = (r: number) => {
    if (!queued[r] && !done[r]) {
      queued[r] = 1;
      ready.push(r);
    }
  };
  let messages = 0;
  const view = (r: number, reg: Region): Float32Array => data![r]![reg.buf].subarray(reg.off, reg.off + reg.len);

  const blockedOnHazard = (r: number, w: Region | undefined, atEnd: boolean): Outstanding | undefined => {
    const outs = outstanding[r]!;
    if (outs.length === 0) return undefined;
    // prune consumed
    let j = 0;
    for (const o of outs) if (pair(r, o.peer).consumed <= o.seq) outs[j++] = o;
    outs.length = j;
    if (atEnd) return outs[0];
    if (!w) return undefined;
    for (const o of outs) if (overlaps(o.region, w)) return o;
    return undefined;
  };

  while (ready.length > 0) {
    const r = ready.pop()!;
    queued[r] = 0;
    if (done[r]) continue;
    const prog = getProg(r);
    const c = clocks[r]!;
    for (;;) {
      const i = pc[r]!;
      if (i >= prog.length) {
        const h = blockedOnHazard(r, undefined, true);
        if (h) { waitCons[r] = h.peer; break; }
        done[r] = 1;
        break;
      }
      const o = prog[i]!;
      const h = blockedOnHazard(r, writeRegion(o), false);
      if (h) { waitCons[r] = h.peer; break; }
      waitCons[r] = -1;
      if (o.k === 'send') {
        const bytes = o.src.len * ELEM_BYTES;
        const [vs, arrival] = sendTimes(c, topo, r, o.peer, bytes);
        const q = pair(r, o.peer);
        const seq = q.posted++;
        q.msgs.push({ arrival, src: o.src, seq });
        outstanding[r]!.push({ peer: o.peer, seq, region: o.src });
        tracer?.add(r, 0, o.peer, bytes, topo.classOf(r, o.peer), vs, arrival, 0, 0, seq, 0);
        if (waitRecv[o.peer] === r) wake(o.peer);
      } else if (o.k === 'recv') {
        const q = pair(o.peer, r);
        if (q.head >= q.msgs.length) { waitRecv[r] = o.peer; break; }
        waitRecv[r] = -1;
        const m = q.msgs[q.head]!;
        q.msgs[q.head++] = undefined as unknown as Msg;
        if (q.head === q.msgs.length) { q.msgs.length = 0; q.head = 0; }
        const bytes = o.dst.len * ELEM_BYTES;
        const [vs, ve] = recvTimes(c, topo, m.arrival, bytes, !!o.op);
        if (data) {
          const src = view(o.peer, m.src);
          const dst = view(r, o.dst);
          if (o.op) reduceJs(dst, o.acc ? view(r, o.acc) : dst, src, o.op);
          else dst.set(src);
        }
        q.consumed++;
        messages++;
        tracer?.add(r, 1, o.peer, bytes, topo.classOf(o.peer, r), vs, ve, 0, 0, m.seq, 0);
        if (waitCons[o.peer] === r) wake(o.peer);
      } else {
        const [vs, ve] = localTimes(c, o, topo, peak);
        if (data) {
          if (o.k === 'copy') view(r, o.dst).set(view(r, o.src));
          else if (o.k === 'reduce') reduceJs(view(r, o.dst), view(r, o.a), view(r, o.b), o.op);
          else if (o.k === 'scale') scaleJs(view(r, o.dst), o.factor);
        }
        if (tracer) {
          const bytes = o.k === 'compute' ? o.bytes : o.k === 'copy' ? o.src.len * ELEM_BYTES : o.dst.len * ELEM_BYTES;
          tracer.add(r, KIND_CODES.indexOf(o.k), -1, bytes, -1, vs, ve, 0, 0, -1, 0);
        }
      }
      pc[r] = i + 1;
    }
  }
  const pending: string[] = [];
  for (let r = 0; r < p; r++) {
    if (done[r]) continue;
    const prog = getProg(r);
    const i = pc[r]!;
    if (waitCons[r] >= 0) {
      pending.push(`rank ${r} at op ${i} (${describeOp(prog[i])}): waits for rank ${waitCons[r]} to receive a message it sent (send buffer reuse)`);
    } else {
      pending.push(`rank ${r} at op ${i} (${describeOp(prog[i])}): waits for a message from rank ${waitRecv[r]}`);
    }
  }
  if (pending.length) throw new DeadlockError(pending);
  const rankTimes = new Float64Array(p);
  let time = 0;
  for (let r = 0; r < p; r++) {
    rankTimes[r] = clocks[r]!.t;
    if (clocks[r]!.t > time) time = clocks[r]!.t;
  }
  return { rankTimes, time, events: tracer?.events(), messages };
}
