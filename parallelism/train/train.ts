/**
 * `collemu train`: compile a parallel training run of the small Llama model to per-rank IR programs
 * (parallelism/train/step.ts), run them with real Float32 data on the worker-thread emulator (or
 * the one-thread simulator), and check it against the serial single-rank model
 * (parallelism/train/parity.ts): every step's loss and every copy of its gradients against the
 * serial step at the same parameters, every copy of the final parameters, and the trajectory of
 * the independent serial run (trainSerial).
 */
import { makeSchedule, fromCsv, validateSchedule, type Schedule } from '../schedules.js';
import { Cluster } from '../../runtime/cluster.js';
import { validateKernelOps } from '../../runtime/compute.js';
import { validatePrograms, type BufferSizes, type Program, type Region } from '../../runtime/ir.js';
import { simulate } from '../../runtime/simulate.js';
import { makeTopology, TopologyError, type Topology } from '../../runtime/topology.js';
import { loadModelConfig, validateConfig, type ModelConfig } from '../model/config.js';
import { initParams, makeBatch, type OptimizerConfig, type Params } from '../model/reference.js';
import { DeviceMesh } from '../mesh.js';
import { labelEvents, type TraceEvent } from '../../runtime/trace.js';
import type { MemCategory } from './arena.js';
import type { CommStat } from './program.js';
import { compileRank, TrainConfigError, validateLayout, zeroShardDims, type CompiledRank, type CpMode, type TrainLayout } from './step.js';
import { assemble, checkParity, paramCopies, type Parity, type RankMem } from './parity.js';

export interface TrainOptions {
  model: string | ModelConfig;
  mesh: string;
  zero?: number;
  sequenceParallel?: boolean;
  cpMode?: CpMode;
  /** schedule name, or a PyTorch pipelining CSV text via scheduleCsv */
  schedule?: string;
  scheduleCsv?: string;
  /** where scheduleCsv came from (its name in messages and the layout), default 'csv' */
  scheduleCsvName?: string;
  virtual?: number;
  microbatches?: number;
  /** global batch (sequences per step); default dp x microbatches x 2 */
  batch?: number;
  steps?: number;
  seed?: number;
  optimizer?: OptimizerConfig;
  overlap?: boolean;
  /** device memory per rank in bytes (default: the topology GPU's HBM) */
  memCapacity?: number;
  executor?: 'emulate' | 'simulate';
  /** topology preset or file for the virtual time (default hgx-h100) */
  topology?: string;
  /**
   * check against the serial model (default true; parallelism/train/parity.ts): the programs then
   * also copy each step's gradients into 'out' (free in virtual time, outside the arena)
   */
  parity?: boolean;
  /** record every executed op (TrainResult.events) */
  trace?: boolean;
  /**
   * Fault injection (tests): edit the compiled programs before they run, e.g. to break a
   * reduction; they are validated again.
   */
  inject?: (c: Compiled) => void;
}

export interface RankMemory {
  rank: number;
  peak_memory_bytes: number;
  at_peak: Record<MemCategory, number>;
  peak_at: string;
  /** peak over time of parameters + gradients + optimizer states */
  peak_model_states_bytes: number;
}

export interface TrainResult {
  model: ModelConfig;
  mesh: string;
  world: number;
  layout: { zero: number; sequence_parallel: boolean; cp_mode: CpMode; schedule: string; microbatches: number; batch: number; stages: number };
  steps: { step: number; loss: number; reference_loss?: number }[];
  parity?: Parity;
  ranks: RankMemory[];
  /** virtual time of the run divided by the steps, seconds */
  virtual_step_time_s: number;
  /** per collective type, over all ranks: calls and payload bytes */
  comm: Record<string, { calls: number; bytes: number }>;
  /**
   * per collective type and group dimension: calls and bytes of one rank (the max over ranks), and
   * the totals of that collective on that group dimension over all ranks
   */
  comm_by_group: { coll: string; group: string; calls_per_rank: number; bytes_per_rank: number; calls: number; bytes: number }[];
  /** every rank's calls: collective type, group dimensions and payload bytes of each call */
  comm_per_rank: CommStat[][];
  executor: 'emulate' | 'simulate';
  host_seconds: number;
  /** the final parameters, full tensors assembled from the first copy of every block */
  params: Params;
  /** with `trace`: every executed op (runtime/trace.ts), and the topology's link class names */
  events?: TraceEvent[];
  links: string[];
}

const DEFAULT_OPT: OptimizerConfig = { kind: 'adam', lr: 1e-2 };

export interface Compiled {
  layout: TrainLayout;
  ranks: CompiledRank[];
  programs: Program[];
  sizes: BufferSizes;
  topo: Topology;
}

/** The optimizer and learning rate of a compiled training, for messages. */
function layoutLr(c: Compiled): string {
  const o = c.layout.optimizer;
  return `${o.kind}, lr ${o.lr}`;
}

/** Resolve options and compile every rank's program (no execution). */
export function compileTraining(o: TrainOptions): Compiled {
  const cfg = typeof o.model === 'string' ? loadModelConfig(o.model) : validateConfig(o.model);
  const mesh = DeviceMesh.parse(o.mesh);
  const pp = mesh.size('pp');
  const dp = mesh.size('ep') * mesh.size('dp') * mesh.size('dp_shard');
  const M = o.microbatches ?? (pp > 1 ? 2 * pp : 1);
  let schedule: Schedule;
  if (o.scheduleCsv !== undefined) {
    schedule = fromCsv(o.scheduleCsv, o.scheduleCsvName ?? 'csv');
    if (schedule.ranks !== pp) throw new TrainConfigError(`the CSV schedule has ${schedule.ranks} ranks, but the mesh has pp=${pp}`);
  } else {
    schedule = makeSchedule(o.schedule ?? '1f1b', pp, M, o.virtual);
  }
  validateSchedule(schedule);
  const zero = o.zero ?? 0;
  if (![0, 1, 2, 3].includes(zero)) throw new TrainConfigError(`--zero must be 0, 1, 2 or 3 (got ${zero})`);
  const layout: TrainLayout = {
    cfg, mesh, zero: zero as 0 | 1 | 2 | 3, sequenceParallel: !!o.sequenceParallel, cpMode: o.cpMode ?? 'ring', schedule,
    microbatches: schedule.microbatches, batch: o.batch ?? dp * schedule.microbatches * 2, steps: o.steps ?? 3,
    optimizer: o.optimizer ?? DEFAULT_OPT, overlap: o.overlap ?? true, capacity: Infinity, capture: o.parity !== false,
  };
  if (layout.cpMode !== 'ring' && layout.cpMode !== 'ulysses') throw new TrainConfigError(`--cp-mode must be ring or ulysses (got ${layout.cpMode})`);
  validateLayout(layout);
  let topo: Topology;
  try {
    topo = makeTopology(o.topology ?? 'hgx-h100', { ranks: mesh.world, memCapacity: o.memCapacity, ranksName: 'the mesh\'s rank count' });
  } catch (e) {
    if (e instanceof TopologyError) throw new TrainConfigError(`--topology ${o.topology ?? 'hgx-h100'} cannot hold the mesh ${o.mesh} (${mesh.world} ranks): ${e.message}`);
    throw e;
  }
  layout.capacity = topo.data.memCapacity;
  let ranks: CompiledRank[] = [];
  for (let r = 0; r < mesh.world; r++) ranks.push(compileRank(layout, r));
  // second pass: every receiver knows the order in which its peers send (see RankBuilder.recv)
  const incoming = Array.from({ length: mesh.world }, () => new Map<number, { tag: string; len: number }[]>());
  for (const cr of ranks) for (const [peer, list] of cr.builder.sent) incoming[peer]!.set(cr.plan.rank, list);
  ranks = ranks.map((_, r) => compileRank(layout, r, incoming[r]));
  const programs = ranks.map((c) => c.program);
  const sizes: BufferSizes = {
    in: Math.max(16, ...ranks.map((c) => c.builder.arena.report().arenaElems)), out: Math.max(0, ...ranks.map((c) => c.plan.captureElems)), tmp: 0,
  };
  validatePrograms(programs, sizes);
  validateKernelOps(programs);
  return { layout, ranks, programs, sizes, topo };
}

/** Write parameters, optimizer state (zeros) and data into a rank's arena ('in'). */
export function fillRank(c: Compiled, rank: number, mem: Float32Array, full: Params, batches: { tokens: Float32Array; targets: Float32Array }[]): void {
  mem.fill(0);
  const { plan } = c.ranks[rank]!;
  const { cfg, mesh } = c.layout;
  const w = (r: Region, off: number, src: ArrayLike<number>) => mem.set(src, r.off + off);
  for (const { unit, params, pshard } of plan.units) {
    const zIx = mesh.group(rank, zeroShardDims(c.layout, unit.expert)).indexOf(rank);
    const flat = new Float32Array(unit.padded);
    for (const lp of unit.params) {
      const src = full.get(lp.name)!;
      const cols = lp.full[1];
      for (let i = 0; i < lp.nr; i++) {
        flat.set(src.subarray((lp.r0 + i) * cols + lp.c0, (lp.r0 + i) * cols + lp.c0 + lp.nc), lp.off + i * lp.nc);
      }
    }
    if (params) w(params, 0, flat);
    if (pshard) w(pshard, 0, flat.subarray(zIx * unit.shard, (zIx + 1) * unit.shard));
  }
  const S = cfg.seq;
  for (let k = 0; k < plan.tokens.length; k++) {
    for (let m = 0; m < plan.seqFirst[k]!.length; m++) {
      const first = plan.seqFirst[k]![m]!;
      const tok = new Float32Array(plan.seqs * plan.seqLocal);
      const tgt = new Float32Array(plan.seqs * plan.seqLocal);
      for (let j = 0; j < plan.seqs; j++) {
        const base = (first + j) * S + plan.pos0;
        tok.set(batches[k]!.tokens.subarray(base, base + plan.seqLocal), j * plan.seqLocal);
        tgt.set(batches[k]!.targets.subarray(base, base + plan.seqLocal), j * plan.seqLocal);
      }
      if (plan.tokens[k]![m]) w(plan.tokens[k]![m]!, 0, tok);
      if (plan.targets[k]![m]) w(plan.targets[k]![m]!, 0, tgt);
    }
  }
}

export async function runTraining(o: TrainOptions): Promise<TrainResult> {
  const h0 = performance.now();
  const c = compileTraining(o);
  if (o.inject) {
    o.inject(c);
    validatePrograms(c.programs, c.sizes);
    validateKernelOps(c.programs);
  }
  const { cfg, mesh, steps } = c.layout;
  const seed = o.seed ?? 1;
  const full = initParams(cfg, seed);
  const batches = Array.from({ length: steps }, (_, k) => makeBatch(cfg, seed, k, c.layout.batch));
  const world = mesh.world;
  const executor = o.executor ?? 'emulate';
  let mems: RankMem[];
  let time: number;
  let events: TraceEvent[] | undefined;
  if (executor === 'simulate') {
    const data = Array.from({ length: world }, (_, r) => {
      const mem = new Float32Array(c.sizes.in);
      fillRank(c, r, mem, full, batches);
      return { in: mem, out: new Float32Array(c.sizes.out), tmp: new Float32Array(0) };
    });
    const res = simulate({ topo: c.topo, programs: c.programs, data, trace: o.trace });
    mems = data;
    time = res.time;
    events = res.events;
  } else {
    // The emulator places 'in', 'out' and 'tmp' in the device memory of the topology. The model's
    // memory is the arena in 'in' (checked against the capacity when compiling); 'out' holds only
    // the parity check's gradient captures, host-side instrumentation: not charged to the device.
    const topo = c.sizes.out > 0
      ? makeTopology(o.topology ?? 'hgx-h100', { ranks: world, memCapacity: c.topo.data.memCapacity + c.sizes.out * 4 + 4096 })
      : c.topo;
    const cluster = await Cluster.start(topo);
    try {
      const res = await cluster.run({
        programs: c.programs, sizes: c.sizes, iters: 1, warmup: 0, trace: o.trace,
        beforeRun: (cl) => { for (let r = 0; r < world; r++) fillRank(c, r, cl.view(r, 'in'), full, batches); },
      });
      time = res.time;
      events = res.events;
      mems = Array.from({ length: world }, (_, r) => ({ in: cluster.view(r, 'in').slice(), out: c.sizes.out > 0 ? cluster.view(r, 'out').slice() : new Float32Array(0) }));
    } finally {
      await cluster.close();
    }
  }
  if (events) labelEvents(events, c.programs);
  // losses: sum over the ranks that report (last stage, tp rank 0) of their per-step accumulators
  const losses = new Array<number>(steps).fill(0);
  for (let r = 0; r < world; r++) {
    const { plan } = c.ranks[r]!;
    if (!plan.reportsLoss || !plan.losses) continue;
    for (let k = 0; k < steps; k++) losses[k]! += mems[r]!.in[plan.losses.off + k]!;
  }
  const shapes = new Map<string, [number, number]>();
  for (const cr of c.ranks) for (const { unit } of cr.plan.units) for (const lp of unit.params) shapes.set(lp.name, lp.full);
  const params = assemble(paramCopies(c, mems), shapes);
  let parity: TrainResult['parity'];
  let refLosses: number[] | undefined;
  if (o.parity !== false) ({ parity, refLosses } = checkParity(c, mems, losses, seed, batches));
  // a loss that overflowed is the optimizer's divergence (the serial model's too), not a wrong
  // parallel run: say so instead of comparing NaNs
  const bad = losses.findIndex((x) => !Number.isFinite(x));
  if (bad >= 0) {
    const ref = refLosses?.[bad];
    const both = ref !== undefined && !Number.isFinite(ref) ? ', as in the serial reference' : '';
    throw new TrainConfigError(`training diverged: the loss is ${losses[bad]} at step ${bad}${both}; lower --lr (${layoutLr(c)})`);
  }
  const comm: TrainResult['comm'] = {};
  const byGroup = new Map<string, TrainResult['comm_by_group'][number]>();
  for (const cr of c.ranks) {
    for (const s of cr.builder.commStats() as CommStat[]) {
      const x = (comm[s.coll] ??= { calls: 0, bytes: 0 });
      x.calls += s.calls;
      x.bytes += s.bytes;
      const key = `${s.coll}/${s.dims}`;
      const g = byGroup.get(key) ?? { coll: s.coll, group: s.dims, calls_per_rank: 0, bytes_per_rank: 0, calls: 0, bytes: 0 };
      g.calls_per_rank = Math.max(g.calls_per_rank, s.calls);
      g.bytes_per_rank = Math.max(g.bytes_per_rank, s.bytes);
      g.calls += s.calls;
      g.bytes += s.bytes;
      byGroup.set(key, g);
    }
  }
  return {
    model: cfg, mesh: mesh.describe(), world,
    layout: {
      zero: c.layout.zero, sequence_parallel: c.layout.sequenceParallel, cp_mode: c.layout.cpMode, schedule: c.layout.schedule.name,
      microbatches: c.layout.microbatches, batch: c.layout.batch, stages: c.layout.schedule.stages,
    },
    steps: losses.map((loss, k) => ({ step: k, loss, reference_loss: refLosses?.[k] })),
    parity,
    ranks: c.ranks.map((cr) => {
      const m = cr.builder.arena.report();
      return { rank: cr.plan.rank, peak_memory_bytes: m.peakBytes, at_peak: m.atPeak, peak_at: m.peakWhere, peak_model_states_bytes: m.peakModelStates };
    }),
    virtual_step_time_s: time / steps,
    comm,
    comm_by_group: [...byGroup.values()],
    comm_per_rank: c.ranks.map((cr) => cr.builder.commStats()),
    executor,
    host_seconds: (performance.now() - h0) / 1000,
    params,
    events,
    links: c.topo.data.links.map((l) => l.name),
  };
}
