/**
 * The `emulate` executor: N worker threads are N simulated GPUs.
 *
 * Cluster.start() launches a piscina pool with minThreads = maxThreads = N and one long-lived task
 * per rank (concurrentTasksPerWorker = 1, so a rank blocked in Atomics.wait never starves another).
 * Jobs go to ranks over per-rank MessagePorts; ranks share one control SharedArrayBuffer
 * (runtime/control.ts) and map each other's device memories (runtime/memory.ts).
 *
 * Failure handling: a rank that throws sets the abort flag, every other rank stops at its next
 * wait, and run() rejects with that rank's error. A watchdog samples every rank's state; when every
 * unfinished rank is blocked and nothing has progressed for DEADLOCK_MS, it aborts the run and
 * rejects with each rank's pending operation. Never a hang.
 */
import { availableParallelism } from 'node:os';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, resolve } from 'node:path';
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { Piscina } from 'piscina';
import type { CollSpec } from '../collectives/types.js';
import {
  ControlLayout, makeDescTable, H_ABORT, H_AWAKE, H_BAR_COUNT, R_BELL, R_JOB_BELL, R_PC, R_PROGRESS, R_STATE, R_WAIT_PEER, R_WAIT_SEQ,
  ST_BARRIER, ST_CONSUME, ST_IDLE, ST_RECV, ST_SLOT, STATE_NAMES,
} from './control.js';
import { ELEM_BYTES, type BufName, type BufferSizes, type Program } from './ir.js';
import type { BufferLayout, RankResult, RunJob } from './job.js';
import { checkHostFootprint, collectGarbage, DeviceMemory, makeBacking, STAGE_BYTES } from './memory.js';
import { describeOp } from './simulate.js';
import { TopologyError, type Topology } from './topology.js';
import { contendedTimes } from './contention.js';
import { TRACE_STRIDE, unpackTrace, type TraceEvent } from './trace.js';

export const DEADLOCK_MS = 600;

export class RankFailure extends Error {
  readonly rank: number;
  constructor(rank: number, detail: string) {
    super(`rank ${rank} failed: ${detail}`);
    this.name = 'RankFailure';
    this.rank = rank;
  }
}

export class EmulatorDeadlock extends Error {
  readonly pending: string[];
  constructor(pending: string[]) {
    super(`deadlock: every unfinished rank is blocked and nothing moved for ${DEADLOCK_MS} ms\n${pending.map((s) => '  ' + s).join('\n')}`);
    this.name = 'EmulatorDeadlock';
    this.pending = pending;
  }
}

/** Locate the compiled worker (tests import the TypeScript sources; workers need JavaScript). */
export function workerFile(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const direct = resolve(here, 'worker.js');
  if (existsSync(direct) && !import.meta.url.endsWith('.ts')) return direct;
  // running from sources: <repo>/runtime/cluster.ts -> <repo>/dist/runtime/worker.js
  const built = resolve(here, '..', 'dist', 'runtime', 'worker.js');
  if (!existsSync(built)) throw new Error(`compiled worker not found at ${built}: run \`npm run build\` first`);
  return built;
}

export interface ClusterOptions {
  /** spin iterations before blocking (adaptive: a rank spins only while awake ranks <= cores); 0 = never */
  spin?: number;
  /** use WASM SIMD kernels (default true); false: plain JavaScript kernels only */
  simd?: boolean;
  /** use the native reduce/copy kernels where built (runtime/native.ts; default true, only with simd) */
  native?: boolean;
}

export interface RunOptions {
  /** one program per rank */
  programs: Program[];
  /** buffer sizes in elements (the same layout on every rank: pass the max) */
  sizes: BufferSizes;
  warmup?: number;
  iters?: number;
  /** bench pattern: fill inputs before warm-up; with check, verify a fresh run */
  pattern?: CollSpec;
  check?: boolean;
  /**
   * Move no data: ranks run the same programs with the same timing, ordering, send-buffer and
   * deadlock behaviour, but copies and reductions are skipped and buffers are only accounted
   * (out-of-memory is still checked), so sizes far beyond host memory can be timed.
   */
  timingOnly?: boolean;
  trace?: boolean;
  /** wall-clock dilation, 0 = off */
  pace?: number;
  /** called after memory is laid out and before ranks start: write inputs here */
  beforeRun?: (cluster: Cluster) => void;
}

export interface RunResult {
  /** virtual time of one iteration: max over ranks, seconds */
  time: number;
  rankTimes: number[];
  /** host wall time per timed iteration, max over ranks, seconds */
  hostTime: number;
  wrong: number;
  maxErr: number;
  /** receives whose data the workers did in fused runs (one pass per region; native kernels only) */
  fusedRecvs: number;
  events?: TraceEvent[];
}

export class Cluster {
  readonly topo: Topology;
  readonly p: number;
  readonly L: ControlLayout;
  readonly control: SharedArrayBuffer;
  readonly ctl: Int32Array;
  private pool: Piscina;
  private ports: MessagePort[] = [];
  private tasks: Promise<unknown>[] = [];
  private pending = new Map<number, { results: (RankResult | undefined)[]; left: number; resolve: (r: RankResult[]) => void }>();
  private mems: WebAssembly.Memory[] = [];
  private memBytes = 0;
  private memsSent = false;
  private topoSent = false;
  layout: BufferLayout = { stage: 0, in: STAGE_BYTES, out: STAGE_BYTES, tmp: STAGE_BYTES };
  sizes: BufferSizes = { in: 0, out: 0, tmp: 0 };
  private nextId = 1;
  private closed = false;
  private busy = false;
  private taskError: Error | undefined;
  readonly spin: number;
  readonly cores: number;
  readonly simd: boolean;
  readonly native: boolean;
  readonly epoch = Date.now();
  /** device memory accounting per rank (capacity from the topology's GPU, or scaled down) */
  readonly memory: DeviceMemory[];

  private constructor(topo: Topology, opts: ClusterOptions) {
    this.topo = topo;
    this.p = topo.p;
    this.L = new ControlLayout(this.p);
    this.control = new SharedArrayBuffer(this.L.bytes);
    this.ctl = new Int32Array(this.control);
    // measured (bench/dataplane.ts, README): spinning pays only when every rank has a core
    this.spin = opts.spin ?? (this.p <= availableParallelism() ? 20000 : 0);
    this.cores = availableParallelism();
    this.simd = opts.simd ?? true;
    this.native = this.simd && (opts.native ?? true);
    this.memory = Array.from({ length: this.p }, (_, r) => new DeviceMemory(r, topo.data.memCapacity));
    this.pool = new Piscina({
      filename: workerFile(),
      minThreads: this.p,
      maxThreads: this.p,
      concurrentTasksPerWorker: 1,
      idleTimeout: Infinity,
      maxQueue: 'auto',
      atomics: 'disabled',
    });
  }

  static async start(topo: Topology, opts: ClusterOptions = {}): Promise<Cluster> {
    if (!Number.isInteger(topo.p) || topo.p < 1) throw new Error(`ranks must be >= 1 (got ${topo.p})`);
    const c = new Cluster(topo, opts);
    for (let r = 0; r < c.p; r++) {
      const { port1, port2 } = new MessageChannel();
      port1.on('message', (m: RankResult) => c.onResult(m));
      port1.unref();
      c.ports.push(port1);
      const t = c.pool.run({ rank: r, p: c.p, control: c.control, port: port2 }, { transferList: [port2] });
      t.catch((e: Error) => {
        c.taskError = new RankFailure(r, `worker thread died: ${e.message}`);
        c.failAll(c.taskError);
      });
      c.tasks.push(t);
    }
    return c;
  }

  private onResult(m: RankResult): void {
    const job = this.pending.get(m.id);
    if (!job || job.results[m.rank]) return;
    job.results[m.rank] = m;
    if (--job.left === 0) {
      this.pending.delete(m.id);
      job.resolve(job.results as RankResult[]);
    }
  }

  private failAll(e: Error): void {
    Atomics.store(this.ctl, H_ABORT, 1);
    for (let r = 0; r < this.p; r++) this.ring(r);
    for (const [id, job] of this.pending) {
      this.pending.delete(id);
      job.resolve(job.results.map((x, r) => x ?? { rank: r, id, vtime: 0, hostMs: 0, wrong: 0, maxErr: 0, error: e.message }));
    }
  }

  private ring(r: number): void {
    const b = this.L.rank(r, R_BELL);
    Atomics.add(this.ctl, b, 1);
    Atomics.notify(this.ctl, b);
  }

  /** Lay out in/out/tmp in every rank's device memory; allocate host backing when it grows. */
  private prepareMemory(sizes: BufferSizes, timingOnly = false): void {
    const order: BufName[] = ['in', 'out', 'tmp'];
    const layout: BufferLayout = { stage: 0, in: 0, out: 0, tmp: 0 };
    let need = 0;
    for (const dm of this.memory) {
      dm.reset();
      for (const b of order) {
        const a = dm.alloc(`'${b}' buffer`, sizes[b] * ELEM_BYTES);
        layout[b] = STAGE_BYTES + a.byteOff;
      }
      need = dm.used;
    }
    this.layout = layout;
    this.sizes = { ...sizes };
    if (timingOnly) need = Math.min(need, this.memBytes);
    if (need > this.memBytes || this.mems.length === 0) {
      checkHostFootprint(this.p, need);
      this.mems = [];
      this.mems = Array.from({ length: this.p }, () => makeBacking(need));
      this.memBytes = need;
      this.memsSent = false;
    }
  }

  /** Float32 view of rank r's buffer (for writing inputs and reading results on the main thread). */
  view(rank: number, buf: BufName, off = 0, len?: number): Float32Array {
    const f = new Float32Array(this.mems[rank]!.buffer);
    const start = (this.layout[buf] >> 2) + off;
    return f.subarray(start, start + (len ?? this.sizes[buf] - off));
  }

  async run(opts: RunOptions): Promise<RunResult> {
    if (this.closed) throw new Error('cluster is closed');
    if (this.busy) throw new Error('cluster is already running a job');
    if (this.taskError) throw this.taskError;
    if (opts.programs.length !== this.p) throw new Error(`${opts.programs.length} programs for ${this.p} ranks`);
    this.busy = true;
    try {
      if (opts.timingOnly && (opts.check || opts.pattern || opts.beforeRun)) throw new Error('a timing-only run has no data to fill or check');
      if (this.topo.data.contention && (opts.pace ?? 0) > 0) throw new TopologyError('--pace cannot be combined with --contention (the contended times are computed after the run)');
      this.prepareMemory(opts.sizes, !!opts.timingOnly);
      opts.beforeRun?.(this);
      // fresh counters for every job: all ranks are idle between jobs
      const [a, b] = this.L.pairRange;
      this.ctl.fill(0, a, b);
      Atomics.store(this.ctl, H_BAR_COUNT, 0);
      Atomics.store(this.ctl, H_ABORT, 0);
      Atomics.store(this.ctl, H_AWAKE, this.p);
      const id = this.nextId++;
      const results = new Promise<RankResult[]>((res) => {
        this.pending.set(id, { results: new Array(this.p), left: this.p, resolve: res });
      });
      // descriptor slots: one per message a pair carries per iteration (a multicast copy is a message
      // of its own, to its own peer; a switch message to oneself uses the pair (r, r))
      const counts = new Int32Array(this.p * this.p);
      for (let r = 0; r < this.p; r++) for (const o of opts.programs[r]!) if (o.k === 'send') counts[r * this.p + o.peer]!++;
      const base: Omit<RunJob, 'program'> = {
        kind: 'run', id, layout: this.layout, desc: makeDescTable(this.p, counts), warmup: opts.warmup ?? 0, iters: opts.iters ?? 1,
        pattern: opts.pattern, check: !!opts.check, timingOnly: !!opts.timingOnly, trace: !!opts.trace, pace: opts.pace ?? 0, spin: this.spin, cores: this.cores,
        simd: this.simd, native: this.native, epoch: this.epoch,
      };
      if (!this.memsSent) base.mems = this.mems;
      if (!this.topoSent) base.topo = this.topo.data;
      for (let r = 0; r < this.p; r++) {
        this.ports[r]!.postMessage({ ...base, program: opts.programs[r] } satisfies RunJob);
        const jb = this.L.rank(r, R_JOB_BELL);
        Atomics.add(this.ctl, jb, 1);
        Atomics.notify(this.ctl, jb);
      }
      this.memsSent = true;
      this.topoSent = true;
      const deadlock = this.watch(id, opts.programs);
      let res: RankResult[];
      try {
        res = await Promise.race([results, deadlock.promise]);
      } finally {
        deadlock.stop();
      }
      if (this.taskError) throw this.taskError;
      if (deadlock.report) throw new EmulatorDeadlock(deadlock.report);
      const failed = res.find((x) => x.error);
      if (failed) throw new RankFailure(failed.rank, failed.error!.split('\n').slice(0, 6).join('\n'));
      if (res.some((x) => x.aborted)) throw new Error('run aborted');
      let rankTimes = res.map((x) => x.vtime);
      let events: TraceEvent[] | undefined;
      if (opts.trace) {
        events = [];
        for (const x of res) if (x.trace) events.push(...unpackTrace(x.trace, x.trace.length / TRACE_STRIDE));
      }
      if (this.topo.data.contention) {
        // shared resources are timed in start-time order across ranks, which no rank sees alone:
        // the same programs' contention pass (runtime/contention.ts) gives the virtual times; the
        // workers moved and checked the data
        const ct = contendedTimes(opts.programs, this.topo, { trace: !!opts.trace });
        rankTimes = Array.from(ct.rankTimes);
        if (events && ct.events) events = withVirtualTimes(events, ct.events);
      }
      return {
        time: Math.max(...rankTimes),
        rankTimes,
        hostTime: Math.max(...res.map((x) => x.hostMs)) / 1000,
        wrong: res.reduce((s, x) => s + x.wrong, 0),
        maxErr: Math.max(...res.map((x) => x.maxErr)),
        fusedRecvs: res.reduce((s, x) => s + (x.fused ?? 0), 0),
        events,
      };
    } finally {
      this.busy = false;
    }
  }

  /** Deadlock watchdog for job `id`. */
  private watch(id: number, programs: Program[]): { promise: Promise<RankResult[]>; stop: () => void; report?: string[] } {
    const w: { promise: Promise<RankResult[]>; stop: () => void; report?: string[] } = { promise: new Promise(() => {}), stop: () => {} };
    let lastProgress = -1;
    let stuckSince = 0;
    w.promise = new Promise<RankResult[]>((resolve) => {
      const timer = setInterval(() => {
        let progress = 0;
        let allBlocked = true;
        for (let r = 0; r < this.p; r++) {
          progress += this.ctl[this.L.rank(r, R_PROGRESS)]!;
          const s = Atomics.load(this.ctl, this.L.rank(r, R_STATE));
          if (!(s === ST_RECV || s === ST_CONSUME || s === ST_SLOT || s === ST_BARRIER || s === ST_IDLE)) allBlocked = false;
        }
        const now = Date.now();
        if (!allBlocked || progress !== lastProgress) {
          lastProgress = progress;
          stuckSince = now;
          return;
        }
        if (now - stuckSince < DEADLOCK_MS) return;
        // every rank blocked with no progress: report and abort
        const job = this.pending.get(id);
        const lines: string[] = [];
        for (let r = 0; r < this.p; r++) {
          if (job?.results[r]) { lines.push(`rank ${r}: finished`); continue; }
          const s = Atomics.load(this.ctl, this.L.rank(r, R_STATE));
          const pc = this.ctl[this.L.rank(r, R_PC)]!;
          const peer = this.ctl[this.L.rank(r, R_WAIT_PEER)]!;
          const seq = this.ctl[this.L.rank(r, R_WAIT_SEQ)]!;
          const op = describeOp(programs[r]![pc]);
          let what = STATE_NAMES[s] ?? `state ${s}`;
          if (s === ST_RECV) what = `waits for message #${seq} from ${peer === r ? 'itself (through the switch)' : `rank ${peer}`}`;
          else if (s === ST_CONSUME) what = `waits for ${peer === r ? 'itself' : `rank ${peer}`} to receive message #${seq} it sent (send buffer reuse)`;
          else if (s === ST_SLOT) what = `waits for a free message slot towards rank ${peer}`;
          else if (s === ST_IDLE) what = 'finished its program';
          lines.push(`rank ${r} at op ${pc} (${op}): ${what}`);
        }
        w.report = lines;
        clearInterval(timer);
        // stop every rank; they report 'aborted' within one wait period and run() rejects
        Atomics.store(this.ctl, H_ABORT, 1);
        for (let r = 0; r < this.p; r++) this.ring(r);
        void resolve;
      }, 100);
      timer.unref();
      w.stop = () => clearInterval(timer);
    });
    return w;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    Atomics.store(this.ctl, H_ABORT, 1);
    for (let r = 0; r < this.p; r++) {
      this.ports[r]!.postMessage({ kind: 'shutdown' });
      const jb = this.L.rank(r, R_JOB_BELL);
      Atomics.add(this.ctl, jb, 1);
      Atomics.notify(this.ctl, jb);
      this.ring(r);
    }
    await Promise.allSettled(this.tasks);
    for (const port of this.ports) port.close();
    await this.pool.destroy();
    // the workers are gone: drop this thread's references to the device memories and free them now
    const big = this.p * this.memBytes >= 256 * 1024 * 1024;
    this.mems = [];
    this.memBytes = 0;
    if (big) collectGarbage();
  }
}

/**
 * Worker trace events (host times) with the virtual times of the contention pass: both list each
 * rank's ops in program order.
 */
function withVirtualTimes(host: TraceEvent[], virt: TraceEvent[]): TraceEvent[] {
  const byRank = new Map<number, TraceEvent[]>();
  for (const e of virt) {
    let l = byRank.get(e.rank);
    if (!l) byRank.set(e.rank, (l = []));
    l.push(e);
  }
  const seen = new Map<number, number>();
  return host.map((e) => {
    const i = seen.get(e.rank) ?? 0;
    seen.set(e.rank, i + 1);
    const v = byRank.get(e.rank)?.[i];
    return v ? { ...e, vStart: v.vStart, vEnd: v.vEnd } : e;
  });
}
