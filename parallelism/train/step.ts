/**
 * The training step of the small Llama model (parallelism/model/) under a parallel layout, written
 * SPMD style: `compileRank` runs once per rank with its mesh coordinates and emits its IR program
 * (parallelism/train/program.ts) for K training steps. The layout composes:
 *
 *  - TP (Megatron, Shoeybi et al. 2019): wq/wk/wv and w_gate/w_up split by output rows (heads, ffn
 *    columns: "column parallel"), wo and w_down by input columns ("row parallel"); the row-parallel
 *    outputs are summed with an AllReduce over the TP group (2 forward + 2 backward per layer). The
 *    LM head is split over the vocabulary: logits are all-gathered over TP for the loss and the input
 *    gradient is all-reduced. Embedding and norms are replicated.
 *  - SP (Korthikanti et al. 2022): the residual stream between TP regions is split by tokens; each
 *    AllReduce becomes a ReduceScatter + AllGather (same bytes); norm and embedding gradients, then
 *    partial per TP rank, are all-reduced over TP.
 *  - CP: each CP rank holds a contiguous 1/cp of every sequence. Ring attention (Liu et al. 2023):
 *    K/V blocks travel around the CP ring with online-softmax merging, and in the backward pass K/V
 *    with their gradient accumulators travel the ring once more (blocks that the causal mask hides
 *    entirely are skipped). Ulysses (Jacobs et al. 2023): AllToAll from sequence- to head-sharded
 *    q, k, v before attention and back after (4 forward, 4 backward).
 *  - PP with any schedule of parallelism/schedules.ts (GPipe, 1F1B, interleaved, ZB-H1, ZB-V, or a
 *    PyTorch CSV): stage s holds a contiguous block of layers (stage 0 the embedding, the last the
 *    final norm, head and loss); activations go forward and gradients back by send/recv.
 *  - EP (GShard / Switch, Lepikhin et al. 2020): with a mixture-of-experts model, the ep ranks
 *    split the batch like data parallelism and split the experts: each holds E/ep experts. Tokens
 *    are routed (top-k, fixed capacity per expert and sequence, so every message has a fixed size),
 *    dispatched to their experts' ranks with an AllToAll, and the results combined with another
 *    (2 AllToAll forward, 2 backward per MoE layer). Dense gradients are reduced over dp x cp x ep,
 *    expert gradients over dp x cp.
 *  - DP over the dp x cp ranks that share (tp, pp) coordinates (dp = dp_shard x dp_replicate), with ZeRO level z:
 *    0 = DDP: each unit's gradients (a unit = the embedding, one layer, or the final norm + head;
 *    the "buckets") are all-reduced asynchronously as soon as the last microbatch's backward
 *    finishes them, overlapping the remaining backward; 1 = optimizer states sharded (gradients
 *    reduce-scattered after the backward, parameters all-gathered after the update); 2 = gradients
 *    too (reduce-scattered per unit during the backward, the full buffer freed); 3 = parameters
 *    too (FSDP: each unit's parameters all-gathered before every forward and backward use, freed
 *    after). The shards span every data-parallel rank, except with HSDP (mesh dp_shard > 1 and
 *    dp > 1, ZeRO >= 1): shards span dp_shard x cp (x ep) and are replicated across dp: each
 *    reduce-scattered gradient shard is all-reduced across dp_replicate (zeroShardDims).
 * Losses use the global mean over all tokens of the global batch, so gradients of shards simply add.
 */
import { makeSchedule, type Action, type Schedule } from '../schedules.js';
import { blocks } from '../../collectives/types.js';
import type { ReduceOp, Region } from '../../runtime/ir.js';
import { moeCapacity, type ModelConfig } from '../model/config.js';
import { adamParams, type OptimizerConfig } from '../model/reference.js';
import { DeviceMesh, type MeshDim } from '../mesh.js';
import type { Tensor } from './arena.js';
import { RankBuilder, view, type Arg } from './program.js';

export type CpMode = 'ring' | 'ulysses';

export interface TrainLayout {
  cfg: ModelConfig;
  mesh: DeviceMesh;
  /** ZeRO level 0..3 over the dp x cp group */
  zero: 0 | 1 | 2 | 3;
  sequenceParallel: boolean;
  cpMode: CpMode;
  /** pipeline schedule (name or an imported Schedule over mesh pp ranks) */
  schedule: Schedule;
  microbatches: number;
  /** global batch, sequences per step */
  batch: number;
  steps: number;
  optimizer: OptimizerConfig;
  /** overlap communication with compute on a second stream (default true) */
  overlap: boolean;
  /** device memory per rank in bytes (Infinity: unlimited) */
  capacity: number;
  /**
   * Copy every gradient the optimizer consumes, each step, into the rank's 'out' buffer (outside
   * the arena: not device memory of the model, and free in virtual time) for the parity check.
   */
  capture?: boolean;
}

export class TrainConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TrainConfigError';
  }
}

/** A parameter as one rank holds it: its slice of the full tensor. */
export interface LocalParam {
  /** full parameter name (parallelism/model/reference.ts paramShapes) */
  name: string;
  /** full shape [rows, cols] */
  full: [number, number];
  /** the local block: rows [r0, r0+nr) x cols [c0, c0+nc) of the full matrix */
  r0: number; nr: number; c0: number; nc: number;
  /** gradient is partial per TP rank and must be all-reduced over TP (SP norms and embedding) */
  tpPartial: boolean;
  /** offset in the unit's flat buffer */
  off: number;
}

/** A DP/FSDP unit: a group of parameters with one flat buffer (the embedding, a layer, or the head). */
export interface Unit {
  name: string;
  stage: number;
  params: LocalParam[];
  /** elements (unpadded), padded to a multiple of the dp x cp group, and the shard length */
  len: number; padded: number; shard: number;
  /** experts of a MoE layer: reduced and sharded over dp x cp (not ep) */
  expert: boolean;
}

export function validateLayout(L: Omit<TrainLayout, 'schedule'> & { schedule?: Schedule }): void {
  const { cfg, mesh } = L;
  const tp = mesh.size('tp'), cp = mesh.size('cp'), pp = mesh.size('pp'), dp = mesh.size('ep') * mesh.size('dp') * mesh.size('dp_shard');
  const fail = (m: string): never => { throw new TrainConfigError(m); };
  const ep = mesh.size('ep');
  if (ep > 1 && !cfg.moe) fail(`ep=${ep} needs a mixture-of-experts model (e.g. --model tiny-moe)`);
  if (cfg.moe) {
    if (tp > 1 || cp > 1) fail('the mixture-of-experts model runs with tp = 1 and cp = 1 (experts are split by ep)');
    if (cfg.moe.experts % ep) fail(`experts (${cfg.moe.experts}) must be divisible by ep (${ep})`);
  }
  if (cfg.heads % tp) fail(`heads (${cfg.heads}) must be divisible by tp (${tp})`);
  if (cfg.kvHeads % tp) fail(`kv heads (${cfg.kvHeads}) must be divisible by tp (${tp})`);
  if (cfg.ffn % tp) fail(`ffn (${cfg.ffn}) must be divisible by tp (${tp})`);
  if (cfg.vocab % tp) fail(`vocab (${cfg.vocab}) must be divisible by tp (${tp})`);
  if (cfg.seq % cp) fail(`sequence length (${cfg.seq}) must be divisible by cp (${cp})`);
  if (L.cpMode === 'ulysses' && cp > 1 && ((cfg.heads / tp) % cp || (cfg.kvHeads / tp) % cp)) {
    fail(`Ulysses needs the heads per TP rank (${cfg.heads / tp} query, ${cfg.kvHeads / tp} kv) divisible by cp (${cp})`);
  }
  if (!Number.isInteger(L.batch) || L.batch < 1) fail(`batch must be an integer >= 1 (got ${L.batch})`);
  if (!Number.isInteger(L.microbatches) || L.microbatches < 1) fail(`microbatches must be an integer >= 1 (got ${L.microbatches})`);
  if (L.batch % (dp * L.microbatches)) fail(`global batch ${L.batch} must be divisible by dp${mesh.size('ep') > 1 ? ' x ep' : ''} (${dp}) x microbatches (${L.microbatches})`);
  const rows = (L.batch / (dp * L.microbatches)) * (cfg.seq / cp);
  if (L.sequenceParallel && rows % tp) fail(`sequence parallel needs the tokens per microbatch and rank (${rows}) divisible by tp (${tp})`);
  if (L.sequenceParallel && tp === 1) fail('--sequence-parallel needs tp > 1 (it splits the tokens of the TP region over the TP ranks); the mesh has tp=1');
  if (!Number.isInteger(L.steps) || L.steps < 1) fail(`steps must be an integer >= 1 (got ${L.steps})`);
  if (![0, 1, 2, 3].includes(L.zero)) fail(`zero must be 0, 1, 2 or 3 (got ${L.zero})`);
  if (L.schedule) {
    if (L.schedule.ranks !== pp) fail(`the schedule has ${L.schedule.ranks} pipeline ranks, the mesh pp=${pp}`);
    if (L.schedule.microbatches !== L.microbatches) fail(`the schedule has ${L.schedule.microbatches} microbatches, --microbatches is ${L.microbatches}`);
    if (L.schedule.stages > cfg.layers) fail(`${L.schedule.stages} pipeline stages for ${cfg.layers} layers: every stage needs a layer`);
  }
}

/** HSDP (ZeRO >= 1 with dp_shard > 1 and dp > 1): shard within dp_shard (x cp, x ep), replicate across dp. */
export function isHsdp(L: { zero: number; mesh: DeviceMesh }): boolean {
  return L.zero >= 1 && L.mesh.size('dp_shard') > 1 && L.mesh.size('dp') > 1;
}

/**
 * The ZeRO group of a unit, innermost first: for ZeRO 0 the gradient AllReduce group (every
 * data-parallel rank: cp x ep x dp_shard x dp; expert units without ep); for ZeRO >= 1 the shard
 * group: the same, except that with HSDP (isHsdp) it is only cp x (ep x) dp_shard.
 */
export function zeroShardDims(L: { zero: number; mesh: DeviceMesh }, expert: boolean): MeshDim[] {
  const d: MeshDim[] = expert ? ['cp', 'dp_shard', 'dp'] : ['cp', 'ep', 'dp_shard', 'dp'];
  return isHsdp(L) ? d.filter((x) => x !== 'dp') : d;
}

/**
 * The name of a unit's ZeRO group in the communication profile: 'dp+cp' (every data-parallel rank,
 * dp_shard included), '+ep' for dense units with ep; with HSDP 'dp_shard+cp' (and the replicate
 * group 'dp_replicate').
 */
export function groupLabel(L: { zero: number; mesh: DeviceMesh }, expert: boolean): string {
  const base = isHsdp(L) ? 'dp_shard+cp' : 'dp+cp';
  return !expert && L.mesh.size('ep') > 1 ? `${base}+ep` : base;
}

export function scheduleFor(name: string, pp: number, m: number, v?: number): Schedule {
  return makeSchedule(name, pp, m, v);
}

// ------------------------------------------------------------------ parameter placement

/** Layers of each stage (contiguous blocks). */
export function stageLayers(layers: number, stages: number): number[][] {
  return blocks(layers, stages).map((b) => Array.from({ length: b.len }, (_, i) => b.off + i));
}

/** The units (and their local parameter slices) a rank holds, for its TP coordinate. */
export function rankUnits(cfg: ModelConfig, sched: Schedule, ppRank: number, tpRank: number, tp: number, sp: boolean, zgroup: number,
  ep = 1, epRank = 0, zExpert = zgroup): Unit[] {
  const h = cfg.hidden, hd = cfg.hidden / cfg.heads, f = cfg.ffn, V = cfg.vocab;
  const nq = cfg.heads, nkv = cfg.kvHeads;
  const S = sched.stages;
  const per = stageLayers(cfg.layers, S);
  const units: Unit[] = [];
  const col = (name: string, rows: number, cols: number): Omit<LocalParam, 'off'> => {
    const nr = rows / tp;
    return { name, full: [rows, cols], r0: tpRank * nr, nr, c0: 0, nc: cols, tpPartial: false };
  };
  const row = (name: string, rows: number, cols: number): Omit<LocalParam, 'off'> => {
    const nc = cols / tp;
    return { name, full: [rows, cols], r0: 0, nr: rows, c0: tpRank * nc, nc, tpPartial: false };
  };
  const rep = (name: string, rows: number, cols: number, partial: boolean): Omit<LocalParam, 'off'> =>
    ({ name, full: [rows, cols], r0: 0, nr: rows, c0: 0, nc: cols, tpPartial: partial && tp > 1 });
  const mk = (name: string, stage: number, ps: Omit<LocalParam, 'off'>[], expert = false): Unit => {
    let off = 0;
    const params = ps.map((p) => { const lp = { ...p, off }; off += p.nr * p.nc; return lp; });
    const z = expert ? zExpert : zgroup;
    const padded = Math.ceil(off / z) * z;
    return { name, stage, params, len: off, padded, shard: padded / z, expert };
  };
  /** this ep rank's experts: a contiguous block of rows of an [E * rows, cols] expert tensor */
  const experts = (name: string, rows: number, cols: number): Omit<LocalParam, 'off'> => {
    const El = cfg.moe!.experts / ep;
    return { name, full: [cfg.moe!.experts * rows, cols], r0: epRank * El * rows, nr: El * rows, c0: 0, nc: cols, tpPartial: false };
  };
  for (let s = 0; s < S; s++) {
    if (sched.stageToRank[s] !== ppRank) continue;
    if (s === 0) units.push(mk('embedding', s, [rep('tok_emb', V, h, sp)]));
    for (const l of per[s]!) {
      const p = `layers.${l}.`;
      const attn = [
        rep(p + 'attn_norm', 1, h, sp), col(p + 'wq', nq * hd, h), col(p + 'wk', nkv * hd, h), col(p + 'wv', nkv * hd, h), row(p + 'wo', h, nq * hd),
        rep(p + 'mlp_norm', 1, h, sp),
      ];
      if (cfg.moe) {
        units.push(mk(`layer ${l}`, s, [...attn, rep(p + 'router', cfg.moe.experts, h, false)]));
        units.push(mk(`layer ${l} experts`, s, [experts(p + 'w_gate', f, h), experts(p + 'w_up', f, h), experts(p + 'w_down', h, f)], true));
      } else {
        units.push(mk(`layer ${l}`, s, [...attn, col(p + 'w_gate', f, h), col(p + 'w_up', f, h), row(p + 'w_down', h, f)]));
      }
    }
    if (s === S - 1) units.push(mk('head', s, [rep('final_norm', 1, h, sp), col('lm_head', V, h)]));
  }
  return units;
}

// ------------------------------------------------------------------ the per-rank program

interface UnitState {
  u: Unit;
  /** full parameters (ZeRO 0-2: persistent; ZeRO 3: only while gathered) */
  params?: Tensor;
  /** ZeRO 3: the persistent shard */
  pshard?: Tensor;
  /** full gradient buffer (accumulated over microbatches) */
  grads?: Tensor;
  /** ZeRO 2: the reduced gradient shard */
  gshard?: Tensor;
  m?: Tensor; v?: Tensor;
  /** uses of gathered ZeRO-3 params still open */
  gathered: number;
}

/** Host-visible layout of a rank's arena: where to write inputs and read results. */
export interface RankPlan {
  rank: number;
  units: { unit: Unit; params?: Region; pshard?: Region; m?: Region; v?: Region }[];
  /** tokens and targets per [step][microbatch] (stage 0 / last stage ranks) */
  tokens: Region[][];
  targets: Region[][];
  /** loss accumulator per step (last stage ranks; the loss counts on TP rank 0 only) */
  losses?: Region;
  /** the rank's part of the loss is reported (last stage, tp rank 0) */
  reportsLoss: boolean;
  /** rows of a microbatch on this rank, its first sequence and first position */
  seqs: number; seqFirst: number[][]; pos0: number; seqLocal: number;
  /**
   * With `capture`: the gradient each optimizer step consumed, per step and unit, in buffer 'out';
   * `shard`: it is this rank's ZeRO shard (index in the zeroShardDims group), else the whole unit.
   */
  captures: { step: number; unit: string; region: Region; shard: boolean }[];
  /** elements of 'out' the captures use */
  captureElems: number;
}

export interface CompiledRank {
  program: ReturnType<RankBuilder['program']>;
  builder: RankBuilder;
  plan: RankPlan;
}

/** Saved forward state of one layer for one microbatch. */
interface LayerSaved {
  x: Tensor; rstd1: Tensor; xg: Tensor; q: Tensor; kv: Tensor; att: Tensor; lse: Tensor;
  x2: Tensor; rstd2: Tensor; xg2: Tensor; g: Tensor; u: Tensor; a: Tensor;
  /** MoE: routing, the expert-side inputs [ep][E/ep, G C, h] and the combined-side outputs [E, G C, h] */
  moe?: { probs: Tensor; idx: Tensor; gates: Tensor; slot: Tensor; xe: Tensor; yb: Tensor };
  /** Ulysses: head-sharded q, kv (full sequence) */
  uq?: Tensor; ukv?: Tensor; uatt?: Tensor;
}

interface PendingW { run: () => void }

export function compileRank(L: TrainLayout, rank: number, incoming?: Map<number, { tag: string; len: number }[]>): CompiledRank {
  const { cfg, mesh, schedule: sched } = L;
  const tp = mesh.size('tp'), cp = mesh.size('cp');
  const ep = mesh.size('ep');
  const dpSize = ep * mesh.size('dp') * mesh.size('dp_shard');
  const c = mesh.coords(rank);
  const tpRank = c.tp, cpRank = c.cp, ppRank = c.pp;
  const dpRank = c.ep + ep * (c.dp_shard + mesh.size('dp_shard') * c.dp);
  const gTP = mesh.group(rank, ['tp']);
  const gCP = mesh.group(rank, ['cp']);
  const gEP = mesh.group(rank, ['ep']);
  // ZeRO 0: gradients all-reduced over every data-parallel rank; ZeRO >= 1: the shard group
  // (zeroShardDims: with HSDP only dp_shard x cp (x ep)), then all-reduced across dp_replicate
  const hsdp = isHsdp(L);
  const gShardDense = mesh.group(rank, zeroShardDims(L, false));
  const gShardExpert = mesh.group(rank, zeroShardDims(L, true));
  const gRep = mesh.group(rank, ['dp']);
  const grp = (u: Unit) => (u.expert ? gShardExpert : gShardDense);
  const zOf = (u: Unit) => grp(u).indexOf(rank);
  const gdims = (u: Unit) => groupLabel(L, u.expert);
  const ppPeer = (stage: number) => mesh.rankWith(rank, { pp: sched.stageToRank[stage]! });
  const S = sched.stages;
  const M = L.microbatches;
  const h = cfg.hidden, hd = cfg.hidden / cfg.heads, f = cfg.ffn / tp, V = cfg.vocab, Vl = V / tp;
  const nq = cfg.heads / tp, nkv = cfg.kvHeads / tp;
  const qd = nq * hd, kvd = nkv * hd;
  const sl = cfg.seq / cp; // tokens of a sequence on this rank
  const bm = L.batch / (dpSize * M); // sequences per microbatch per dp rank
  const N = bm * sl; // rows of a microbatch (full TP region)
  const sp = L.sequenceParallel && tp > 1;
  const R = sp ? N / tp : N; // rows of the residual stream on this rank
  const scaleLoss = 1 / (L.batch * cfg.seq);
  const b = new RankBuilder(rank, L.capacity, L.overlap, incoming);
  const opt = L.optimizer;
  const zero = L.zero;

  const units = rankUnits(cfg, sched, ppRank, tpRank, tp, sp, gShardDense.length, ep, c.ep, gShardExpert.length);
  const st = new Map<string, UnitState>();
  const plan: RankPlan = {
    rank, units: [], tokens: [], targets: [], reportsLoss: false, seqs: bm,
    seqFirst: [], pos0: cpRank * sl, seqLocal: sl, captures: [], captureElems: 0,
  };
  // ---- persistent state
  b.where = 'setup';
  for (const u of units) {
    const s: UnitState = { u, gathered: 0 };
    if (zero === 3) s.pshard = b.alloc(`${u.name} param shard`, u.shard, 'param');
    else s.params = b.alloc(`${u.name} params`, u.padded, 'param');
    const olen = zero >= 1 ? u.shard : u.padded;
    void olen;
    if (opt.kind === 'adam') {
      s.m = b.alloc(`${u.name} adam m`, olen, 'optim');
      s.v = b.alloc(`${u.name} adam v`, olen, 'optim');
    }
    st.set(u.name, s);
    plan.units.push({ unit: u, params: s.params?.region, pshard: s.pshard?.region, m: s.m?.region, v: s.v?.region });
  }
  const ownsFirst = sched.stageToRank[0] === ppRank;
  const ownsLast = sched.stageToRank[S - 1] === ppRank;
  for (let k = 0; k < L.steps; k++) {
    plan.tokens.push([]); plan.targets.push([]); plan.seqFirst.push([]);
    for (let m = 0; m < M; m++) {
      plan.seqFirst[k]!.push(dpRank * (L.batch / dpSize) + m * bm);
      // every TP rank embeds (replicated) and computes the loss; SP ranks use their token shard
      if (ownsFirst) plan.tokens[k]!.push(b.alloc(`tokens s${k} m${m}`, N, 'data').region);
      if (ownsLast) plan.targets[k]!.push(b.alloc(`targets s${k} m${m}`, N, 'data').region);
    }
  }
  let losses: Tensor | undefined;
  if (ownsLast) {
    losses = b.alloc('losses', L.steps, 'data');
    plan.losses = losses.region;
    plan.reportsLoss = tpRank === 0;
  }

  const P = (s: UnitState, name: string): Region => {
    const lp = s.u.params.find((x) => x.name === name)!;
    if (!s.params) throw new Error(`rank ${rank}: ${s.u.name} parameters used while not gathered`);
    return view(s.params, lp.off, lp.nr * lp.nc);
  };
  const G = (s: UnitState, name: string): Region => {
    const lp = s.u.params.find((x) => x.name === name)!;
    ensureGrads(s); // gradient buffers appear when the backward first produces them
    return view(s.grads!, lp.off, lp.nr * lp.nc);
  };
  const unitOf = (name: string) => st.get(name)!;

  // ---- ZeRO-3 gather / release
  const gather = (s: UnitState): void => {
    if (zero !== 3) return;
    if (s.gathered++ > 0) return;
    s.params = b.alloc(`${s.u.name} params (gathered)`, s.u.padded, 'param');
    b.copy(s.pshard!, view(s.params, zOf(s.u) * s.u.shard, s.u.shard));
    b.collective('allgather', grp(s.u), s.u.shard, { output: s.params }, { dims: gdims(s.u) });
  };
  const release = (s: UnitState): void => {
    if (zero !== 3) return;
    if (--s.gathered > 0) return;
    b.free(s.params);
    s.params = undefined;
  };
  function ensureGrads(s: UnitState): void {
    if (s.grads) return;
    s.grads = b.alloc(`${s.u.name} grads`, s.u.padded, 'grad');
    b.kernel('zero', [s.grads], [s.u.padded]);
  }

  // ---- small helpers
  const mm = (A: Arg, B: Arg, C: Arg, m: number, n: number, k: number, tA: 0 | 1, tB: 0 | 1, beta: 0 | 1) =>
    b.kernel('matmul', [A, B, C], [m, n, k, tA, tB, beta]);
  /** y = x W^T for W stored [out, in] */
  const linear = (x: Arg, W: Arg, y: Arg, rows: number, out: number, inn: number, acc: 0 | 1 = 0) => mm(x, W, y, rows, out, inn, 0, 1, acc);
  const tpAllReduce = (t: Arg, n: number) => { if (tp > 1) b.collective('allreduce', gTP, n, { output: t }, { dims: 'tp' }); };
  /** SP: gather the sequence shards [R,h] into [N,h] */
  const spGather = (x: Tensor, name: string): Tensor => {
    const full = b.alloc(name, N * h, 'activation');
    b.copy(x, view(full, tpRank * R * h, R * h));
    b.collective('allgather', gTP, R * h, { output: full }, { dims: 'tp' });
    return full;
  };
  /** SP: reduce-scatter [N,h] partial sums into this rank's [R,h] shard */
  const spScatter = (full: Tensor, name: string): Tensor => {
    b.collective('reducescatter', gTP, R * h, { output: full }, { dims: 'tp' });
    const out = b.alloc(name, R * h, 'activation');
    b.copy(view(full, tpRank * R * h, R * h), out);
    return out;
  };
  const rope = (x: Tensor, heads: number, kind: 'rope_fwd' | 'rope_bwd', rowsPerSeq: number, nSeq: number, pos0: number, off = 0) => {
    for (let j = 0; j < nSeq; j++) b.kernel(kind, [view(x, off + j * rowsPerSeq * heads * hd, rowsPerSeq * heads * hd)], [rowsPerSeq, heads, hd, pos0, cfg.ropeTheta]);
  };

  // ---- attention (on [N] rows: bm sequences of sl tokens)
  const kOf = (kv: Arg, rows: number, d: number, j: number, ts: number) => view(kv, j * ts * d, ts * d);
  const vOf = (kv: Arg, rows: number, d: number, j: number, ts: number) => view(kv, rows * d + j * ts * d, ts * d);

  /** local causal attention of all sequences (no CP, or Ulysses after the AllToAll) */
  const attnLocal = (q: Tensor, kv: Tensor, att: Tensor, lse: Tensor, rows: number, ts: number, heads: number, kvh: number) => {
    const nSeq = rows / ts;
    for (let j = 0; j < nSeq; j++) {
      b.kernel('attn_fwd', [view(q, j * ts * heads * hd, ts * heads * hd), kOf(kv, rows, kvh * hd, j, ts), vOf(kv, rows, kvh * hd, j, ts),
        view(att, j * ts * heads * hd, ts * heads * hd), view(lse, j * ts * heads, ts * heads)], [ts, ts, heads, kvh, hd, 0, 0, 1]);
    }
  };
  const attnLocalBwd = (q: Tensor, kv: Tensor, att: Tensor, lse: Tensor, datt: Tensor, dq: Tensor, dkv: Tensor, rows: number, ts: number, heads: number, kvh: number) => {
    const nSeq = rows / ts;
    const D = b.alloc('attn D', rows * heads, 'activation');
    b.kernel('attn_bwd_prep', [att, datt, D], [rows, heads, hd]);
    b.kernel('zero', [dq], [rows * heads * hd]);
    b.kernel('zero', [dkv], [2 * rows * kvh * hd]);
    for (let j = 0; j < nSeq; j++) {
      const qv = (t: Arg) => view(t, j * ts * heads * hd, ts * heads * hd);
      b.kernel('attn_bwd', [qv(q), kOf(kv, rows, kvh * hd, j, ts), vOf(kv, rows, kvh * hd, j, ts), qv(datt), view(lse, j * ts * heads, ts * heads),
        view(D, j * ts * heads, ts * heads), qv(dq), kOf(dkv, rows, kvh * hd, j, ts), vOf(dkv, rows, kvh * hd, j, ts)], [ts, ts, heads, kvh, hd, 0, 0, 1]);
    }
    b.free(D);
  };

  /** ring attention forward over the CP group: q [N, nq, hd] own, kv own; returns out, lse */
  const ringFwd = (q: Tensor, kv: Tensor, att: Tensor, lse: Tensor) => {
    const next = gCP[(cpRank + 1) % cp]!, prev = gCP[(cpRank - 1 + cp) % cp]!;
    const bufs = [b.alloc('ring kv A', 2 * N * kvd, 'comm'), b.alloc('ring kv B', 2 * N * kvd, 'comm')];
    const tOut = b.alloc('ring block out', sl * qd, 'activation');
    const tLse = b.alloc('ring block lse', sl * nq, 'activation');
    let cur: Tensor = kv;
    for (let i = 0; i < cp; i++) {
      const src = (cpRank - i + cp) % cp;
      let nextBuf: Tensor | undefined;
      if (i < cp - 1) {
        // a received block is forwarded as soon as it arrived (only the own K/V waits for compute)
        const tag = `ring fwd ${tagNow} block ${i}`;
        b.send(next, cur, 'cp', tag, { afterCompute: i === 0 });
        nextBuf = bufs[i % 2]!;
        b.recv(prev, nextBuf, tag, { async: true });
      }
      if (src <= cpRank) {
        for (let j = 0; j < bm; j++) {
          const qv = (t: Arg) => view(t, j * sl * qd, sl * qd);
          const lv = (t: Arg) => view(t, j * sl * nq, sl * nq);
          const first = i === 0;
          b.kernel('attn_fwd', [qv(q), kOf(cur, N, kvd, j, sl), vOf(cur, N, kvd, j, sl), first ? qv(att) : tOut, first ? lv(lse) : tLse],
            [sl, sl, nq, nkv, hd, cpRank * sl, src * sl, 1]);
          if (!first) b.kernel('attn_merge', [qv(att), lv(lse), tOut, tLse], [sl, nq, hd]);
        }
      }
      if (nextBuf) { b.sync(); cur = nextBuf; }
    }
    b.free(tOut, tLse, ...bufs);
  };
  /** ring attention backward: dq local; K/V and their gradient accumulators travel the ring */
  const ringBwd = (q: Tensor, kv: Tensor, att: Tensor, lse: Tensor, datt: Tensor, dq: Tensor, dkv: Tensor) => {
    const next = gCP[(cpRank + 1) % cp]!, prev = gCP[(cpRank - 1 + cp) % cp]!;
    const D = b.alloc('attn D', N * nq, 'activation');
    b.kernel('attn_bwd_prep', [att, datt, D], [N, nq, hd]);
    b.kernel('zero', [dq], [N * qd]);
    // a travelling block: [k | v | dk | dv]
    const W = 4 * N * kvd;
    const bufs = [b.alloc('ring kvg A', W, 'comm'), b.alloc('ring kvg B', W, 'comm'), b.alloc('ring kvg C', W, 'comm')];
    let cur = bufs[2]!;
    b.copy(kv, view(cur, 0, 2 * N * kvd));
    b.kernel('zero', [view(cur, 2 * N * kvd, 2 * N * kvd)], [2 * N * kvd]);
    for (let i = 0; i < cp; i++) {
      const src = (cpRank - i + cp) % cp;
      if (src <= cpRank) {
        for (let j = 0; j < bm; j++) {
          const qv = (t: Arg) => view(t, j * sl * qd, sl * qd);
          const lv = (t: Arg) => view(t, j * sl * nq, sl * nq);
          const g = view(cur, 2 * N * kvd, 2 * N * kvd);
          b.kernel('attn_bwd', [qv(q), kOf(cur, N, kvd, j, sl), vOf(cur, N, kvd, j, sl), qv(datt), lv(lse), lv(D), qv(dq), kOf(g, N, kvd, j, sl), vOf(g, N, kvd, j, sl)],
            [sl, sl, nq, nkv, hd, cpRank * sl, src * sl, 1]);
        }
      }
      // pass the block on (after the last step only its gradients, home to their owner)
      const nb = bufs[i % 2]!;
      const tag = `ring bwd ${tagNow} block ${i}`;
      if (i < cp - 1) {
        b.send(next, cur, 'cp', tag);
        b.recv(prev, nb, tag);
      } else {
        b.send(next, view(cur, 2 * N * kvd, 2 * N * kvd), 'cp', tag);
        b.recv(prev, view(nb, 2 * N * kvd, 2 * N * kvd), tag);
      }
      cur = nb;
    }
    b.copy(view(cur, 2 * N * kvd, 2 * N * kvd), dkv);
    b.free(D, ...bufs);
  };

  // Ulysses: [N rows (bm seqs x sl), H heads, hd] sequence-sharded <-> [bm x seq rows, H/cp heads, hd]
  const Hq = nq / cp, Hkv = nkv / cp;
  /** pack per destination (head group) then AllToAll then unpack into [bm, seq, H/cp, hd] */
  const seqToHead = (x: Region, heads: number, name: string): Tensor => {
    const hg = heads / cp;
    const blk = N * hg * hd;
    const send = b.alloc(`${name} a2a in`, cp * blk, 'comm');
    for (let j = 0; j < cp; j++) for (let r = 0; r < N; r++) b.copy(view(x, (r * heads + j * hg) * hd, hg * hd), view(send, j * blk + r * hg * hd, hg * hd));
    const recv = b.alloc(`${name} a2a out`, cp * blk, 'comm');
    b.collective('alltoall', gCP, blk, { input: send, output: recv }, { dims: 'cp' });
    b.free(send);
    const out = b.alloc(name, cp * blk, 'activation');
    // from rank i: its [bm, sl] tokens of head group cpRank -> rows (j*seq + i*sl + t)
    for (let i = 0; i < cp; i++) for (let j = 0; j < bm; j++) {
      b.copy(view(recv, i * blk + j * sl * hg * hd, sl * hg * hd), view(out, (j * cfg.seq + i * sl) * hg * hd, sl * hg * hd));
    }
    b.free(recv);
    return out;
  };
  const headToSeq = (x: Region, heads: number, out: Region): void => {
    const hg = heads / cp;
    const blk = N * hg * hd;
    const send = b.alloc('a2a back in', cp * blk, 'comm');
    for (let i = 0; i < cp; i++) for (let j = 0; j < bm; j++) {
      b.copy(view(x, (j * cfg.seq + i * sl) * hg * hd, sl * hg * hd), view(send, i * blk + j * sl * hg * hd, sl * hg * hd));
    }
    const recv = b.alloc('a2a back out', cp * blk, 'comm');
    b.collective('alltoall', gCP, blk, { input: send, output: recv }, { dims: 'cp' });
    b.free(send);
    for (let j = 0; j < cp; j++) for (let r = 0; r < N; r++) b.copy(view(recv, j * blk + r * hg * hd, hg * hd), view(out, (r * heads + j * hg) * hd, hg * hd));
    b.free(recv);
  };

  // ---- one layer
  /** names ring-attention messages: step, stage, microbatch, layer */
  let tagNow = '';
  const layerFwd = (s: UnitState, l: number, x: Tensor): { y: Tensor; saved: LayerSaved } => {
    const p = `layers.${l}.`;
    tagNow = b.where + ` layer ${l}`;
    const rstd1 = b.alloc('rstd1', R, 'activation');
    let xn = b.alloc('xn', R * h, 'activation');
    b.kernel('rmsnorm_fwd', [x, P(s, p + 'attn_norm'), xn, rstd1], [R, h, cfg.normEps]);
    let xg = xn;
    if (sp) { xg = spGather(xn, 'xg'); b.free(xn); }
    const q = b.alloc('q', N * qd, 'activation');
    const kv = b.alloc('kv', 2 * N * kvd, 'activation');
    linear(xg, P(s, p + 'wq'), q, N, qd, h);
    linear(xg, P(s, p + 'wk'), view(kv, 0, N * kvd), N, kvd, h);
    linear(xg, P(s, p + 'wv'), view(kv, N * kvd, N * kvd), N, kvd, h);
    rope(q, nq, 'rope_fwd', sl, bm, cpRank * sl);
    rope(kv, nkv, 'rope_fwd', sl, bm, cpRank * sl);
    const att = b.alloc('attn out', N * qd, 'activation');
    const saved: Partial<LayerSaved> = {};
    let lse: Tensor;
    if (cp === 1) {
      lse = b.alloc('lse', N * nq, 'activation');
      attnLocal(q, kv, att, lse, N, sl, nq, nkv);
    } else if (L.cpMode === 'ring') {
      lse = b.alloc('lse', N * nq, 'activation');
      ringFwd(q, kv, att, lse);
    } else {
      const uq = seqToHead(q.region, nq, 'uq');
      const ukv = b.alloc('ukv', 2 * bm * cfg.seq * Hkv * hd, 'activation');
      const uk = seqToHead(view(kv, 0, N * kvd), nkv, 'uk');
      const uv = seqToHead(view(kv, N * kvd, N * kvd), nkv, 'uv');
      b.copy(uk, view(ukv, 0, uk.region.len));
      b.copy(uv, view(ukv, uk.region.len, uv.region.len));
      b.free(uk, uv);
      const uatt = b.alloc('uatt', bm * cfg.seq * Hq * hd, 'activation');
      lse = b.alloc('lse', bm * cfg.seq * Hq, 'activation');
      attnLocal(uq, ukv, uatt, lse, bm * cfg.seq, cfg.seq, Hq, Hkv);
      headToSeq(uatt.region, nq, att.region);
      Object.assign(saved, { uq, ukv, uatt });
    }
    const yo = b.alloc('attn proj', N * h, 'activation');
    linear(att, P(s, p + 'wo'), yo, N, h, qd);
    let x2: Tensor;
    if (sp) { x2 = spScatter(yo, 'x2'); b.free(yo); } else { tpAllReduce(yo, N * h); x2 = yo; }
    b.kernel('add', [x, x2], [R * h]);
    const rstd2 = b.alloc('rstd2', R, 'activation');
    let xn2 = b.alloc('xn2', R * h, 'activation');
    b.kernel('rmsnorm_fwd', [x2, P(s, p + 'mlp_norm'), xn2, rstd2], [R, h, cfg.normEps]);
    let xg2 = xn2;
    if (sp) { xg2 = spGather(xn2, 'xg2'); b.free(xn2); }
    let g: Tensor, u: Tensor, a: Tensor, yd: Tensor;
    if (cfg.moe) ({ g, u, a, yd } = moeFwd(s, l, xg2, saved));
    else {
      g = b.alloc('gate', N * f, 'activation');
      u = b.alloc('up', N * f, 'activation');
      a = b.alloc('act', N * f, 'activation');
      linear(xg2, P(s, p + 'w_gate'), g, N, f, h);
      linear(xg2, P(s, p + 'w_up'), u, N, f, h);
      b.kernel('swiglu_fwd', [g, u, a], [N * f]);
      yd = b.alloc('mlp out', N * h, 'activation');
      linear(a, P(s, p + 'w_down'), yd, N, h, f);
    }
    let y: Tensor;
    if (sp) { y = spScatter(yd, 'x3'); b.free(yd); } else { tpAllReduce(yd, N * h); y = yd; }
    b.kernel('add', [x2, y], [R * h]);
    Object.assign(saved, { x, rstd1, xg, q, kv, att, lse, x2, rstd2, xg2, g, u, a });
    return { y, saved: saved as LayerSaved };
  };

  /** dense SwiGLU MLP backward: d(output) [N,h] -> d(input) [N,h] (partial over TP) */
  const denseMlpBwd = (s: UnitState, p: string, sv: LayerSaved, dyg: Tensor, ws: PendingW[]): Tensor => {
    const da = b.alloc('d act', N * f, 'activation');
    mm(dyg, P(s, p + 'w_down'), da, N, f, h, 0, 0, 0);
    { const dygW = dyg, aW = sv.a; ws.push({ run: () => { mm(dygW, aW, G(s, p + 'w_down'), h, f, N, 1, 0, 1); if (sp) b.free(dygW); b.free(aW); } }); }
    const dg = b.alloc('d gate', N * f, 'activation');
    const du = b.alloc('d up', N * f, 'activation');
    b.kernel('swiglu_bwd', [sv.g, sv.u, da, dg, du], [N * f]);
    b.free(da, sv.g, sv.u);
    const dxg2 = b.alloc('d xg2', N * h, 'activation');
    mm(dg, P(s, p + 'w_gate'), dxg2, N, h, f, 0, 0, 0);
    mm(du, P(s, p + 'w_up'), dxg2, N, h, f, 0, 0, 1);
    { const xg2 = sv.xg2; ws.push({ run: () => { mm(dg, xg2, G(s, p + 'w_gate'), f, h, N, 1, 0, 1); mm(du, xg2, G(s, p + 'w_up'), f, h, N, 1, 0, 1); b.free(dg, du, xg2); } }); }
    return dxg2;
  };

  // ---- mixture of experts (tp = cp = 1): routing groups are the bm sequences of the microbatch
  const moeDims = () => {
    const { experts: E, topk } = cfg.moe!;
    const C = moeCapacity(cfg);
    const rowsE = bm * C; // slot rows per expert on this rank
    return { E, topk, C, rowsE, S: E * rowsE, El: E / ep };
  };
  /** expert-side blocks: from source rank i, local expert e: rows [(i El + e) rowsE, +rowsE) */
  const forBlocks = (fn: (row0: number, e: number) => void) => {
    const { El, rowsE } = moeDims();
    for (let i = 0; i < ep; i++) for (let e = 0; e < El; e++) fn((i * El + e) * rowsE, e);
  };
  const a2a = (x: Tensor, name: string): Tensor => {
    if (ep === 1) return x;
    const { S } = moeDims();
    const out = b.alloc(name, S * h, 'activation');
    b.collective('alltoall', gEP, (S / ep) * h, { input: x, output: out }, { dims: 'ep' });
    b.free(x);
    return out;
  };
  const moeFwd = (s: UnitState, l: number, xg2: Tensor, saved: Partial<LayerSaved>) => {
    const p = `layers.${l}.`;
    const { E, topk, C, S } = moeDims();
    const eu = unitOf(`layer ${l} experts`);
    gather(eu);
    const logits = b.alloc('router logits', N * E, 'activation');
    linear(xg2, P(s, p + 'router'), logits, N, E, h);
    const probs = b.alloc('router probs', N * E, 'activation');
    const idx = b.alloc('router idx', N * topk, 'activation');
    const gates = b.alloc('router gates', N * topk, 'activation');
    const slot = b.alloc('router slots', N * topk, 'activation');
    b.kernel('router_fwd', [logits, probs, idx, gates, slot], [N, E, topk, C, bm]);
    b.free(logits);
    const buf = b.alloc('dispatch', S * h, 'activation');
    b.kernel('moe_dispatch', [xg2, slot, buf], [N, h, topk, S]);
    const xe = a2a(buf, 'expert in');
    const g = b.alloc('gate', S * f, 'activation');
    const u = b.alloc('up', S * f, 'activation');
    const a = b.alloc('act', S * f, 'activation');
    const ye = b.alloc('expert out', S * h, 'activation');
    const { rowsE } = moeDims();
    forBlocks((r0, e) => {
      const W = (n: string, rows: number, cols: number) => view(P(eu, p + n), e * rows * cols, rows * cols);
      linear(view(xe, r0 * h, rowsE * h), W('w_gate', f, h), view(g, r0 * f, rowsE * f), rowsE, f, h);
      linear(view(xe, r0 * h, rowsE * h), W('w_up', f, h), view(u, r0 * f, rowsE * f), rowsE, f, h);
    });
    b.kernel('swiglu_fwd', [g, u, a], [S * f]);
    forBlocks((r0, e) => linear(view(a, r0 * f, rowsE * f), view(P(eu, p + 'w_down'), e * h * f, h * f), view(ye, r0 * h, rowsE * h), rowsE, h, f));
    release(eu);
    const yb = a2a(ye, 'expert out (combine side)');
    const yd = b.alloc('mlp out', N * h, 'activation');
    b.kernel('moe_combine', [yb, slot, gates, yd], [N, h, topk, S]);
    saved.moe = { probs, idx, gates, slot, xe, yb };
    return { g, u, a, yd };
  };
  const moeBwd = (s: UnitState, l: number, sv: LayerSaved, dyg: Tensor, ws: PendingW[]): Tensor => {
    const p = `layers.${l}.`;
    const { E, topk, S, rowsE } = moeDims();
    const mo = sv.moe!;
    const eu = unitOf(`layer ${l} experts`);
    gather(eu);
    const dybuf = b.alloc('d expert out (combine side)', S * h, 'activation');
    const dgates = b.alloc('d gates', N * topk, 'activation');
    b.kernel('moe_combine_bwd', [mo.yb, mo.slot, mo.gates, dyg, dybuf, dgates], [N, h, topk, S]);
    b.free(mo.yb);
    const dye = a2a(dybuf, 'd expert out');
    const da = b.alloc('d act', S * f, 'activation');
    forBlocks((r0, e) => mm(view(dye, r0 * h, rowsE * h), view(P(eu, p + 'w_down'), e * h * f, h * f), view(da, r0 * f, rowsE * f), rowsE, f, h, 0, 0, 0));
    const dg = b.alloc('d gate', S * f, 'activation');
    const du = b.alloc('d up', S * f, 'activation');
    b.kernel('swiglu_bwd', [sv.g, sv.u, da, dg, du], [S * f]);
    b.free(da, sv.g, sv.u);
    const dxe = b.alloc('d expert in', S * h, 'activation');
    forBlocks((r0, e) => {
      const W = (n: string) => view(P(eu, p + n), e * f * h, f * h);
      mm(view(dg, r0 * f, rowsE * f), W('w_gate'), view(dxe, r0 * h, rowsE * h), rowsE, h, f, 0, 0, 0);
      mm(view(du, r0 * f, rowsE * f), W('w_up'), view(dxe, r0 * h, rowsE * h), rowsE, h, f, 0, 0, 1);
    });
    release(eu);
    {
      const a = sv.a, xe = mo.xe;
      ws.push({ run: () => {
        forBlocks((r0, e) => {
          const GW = (n: string, rows: number, cols: number) => view(G(eu, p + n), e * rows * cols, rows * cols);
          mm(view(dye, r0 * h, rowsE * h), view(a, r0 * f, rowsE * f), GW('w_down', h, f), h, f, rowsE, 1, 0, 1);
          mm(view(dg, r0 * f, rowsE * f), view(xe, r0 * h, rowsE * h), GW('w_gate', f, h), f, h, rowsE, 1, 0, 1);
          mm(view(du, r0 * f, rowsE * f), view(xe, r0 * h, rowsE * h), GW('w_up', f, h), f, h, rowsE, 1, 0, 1);
        });
        b.free(dye, a, dg, du, xe);
      } });
    }
    const dbuf = a2a(dxe, 'd dispatch');
    const dxg2 = b.alloc('d xg2', N * h, 'activation');
    b.kernel('moe_dispatch_bwd', [dbuf, mo.slot, dxg2], [N, h, topk, S]);
    b.free(dbuf);
    const dlogits = b.alloc('d router logits', N * E, 'activation');
    b.kernel('router_bwd', [mo.probs, mo.idx, dgates, dlogits], [N, E, topk]);
    b.free(mo.probs, mo.idx, dgates, mo.gates, mo.slot);
    mm(dlogits, P(s, p + 'router'), dxg2, N, h, E, 0, 0, 1);
    { const xg2 = sv.xg2; ws.push({ run: () => { mm(dlogits, xg2, G(s, p + 'router'), E, h, N, 1, 0, 1); b.free(dlogits, xg2); } }); }
    return dxg2;
  };

  /** backward of one layer: returns dx; weight-gradient matmuls go to `ws` (run now, or later for ZB's W) */
  const layerBwd = (s: UnitState, l: number, sv: LayerSaved, dy: Tensor, ws: PendingW[]): Tensor => {
    const p = `layers.${l}.`;
    tagNow = b.where + ` layer ${l}`;
    // MLP
    let dyg = dy;
    if (sp) dyg = spGather(dy, 'd mlp out');
    const dxg2 = cfg.moe ? moeBwd(s, l, sv, dyg, ws) : denseMlpBwd(s, p, sv, dyg, ws);
    let dxn2: Tensor;
    if (sp) { dxn2 = spScatter(dxg2, 'd xn2'); b.free(dxg2); } else { tpAllReduce(dxg2, N * h); dxn2 = dxg2; }
    const dx2 = b.alloc('d x2', R * h, 'activation');
    b.kernel('rmsnorm_bwd', [sv.x2, P(s, p + 'mlp_norm'), sv.rstd2, dxn2, dx2, G(s, p + 'mlp_norm')], [R, h]);
    b.free(dxn2, sv.rstd2, sv.x2);
    b.kernel('add', [dy, dx2], [R * h]);
    // without SP, dy itself is the w_down weight-gradient input: freed by that W
    if (sp) b.free(dy); else ws.push({ run: () => b.free(dy) });
    // attention
    let dx2g = dx2;
    if (sp) dx2g = spGather(dx2, 'd attn proj');
    const datt = b.alloc('d attn out', N * qd, 'activation');
    mm(dx2g, P(s, p + 'wo'), datt, N, qd, h, 0, 0, 0);
    { const g2 = dx2g, att = sv.att; ws.push({ run: () => { mm(g2, att, G(s, p + 'wo'), h, qd, N, 1, 0, 1); if (sp) b.free(g2); } }); }
    const dq = b.alloc('d q', N * qd, 'activation');
    const dkv = b.alloc('d kv', 2 * N * kvd, 'activation');
    if (cp === 1) attnLocalBwd(sv.q, sv.kv, sv.att, sv.lse, datt, dq, dkv, N, sl, nq, nkv);
    else if (L.cpMode === 'ring') ringBwd(sv.q, sv.kv, sv.att, sv.lse, datt, dq, dkv);
    else {
      const rows = bm * cfg.seq;
      const udatt = seqToHead(datt.region, nq, 'u d att');
      const udq = b.alloc('u dq', rows * Hq * hd, 'activation');
      const udkv = b.alloc('u dkv', 2 * rows * Hkv * hd, 'activation');
      attnLocalBwd(sv.uq!, sv.ukv!, sv.uatt!, sv.lse, udatt, udq, udkv, rows, cfg.seq, Hq, Hkv);
      headToSeq(udq.region, nq, dq.region);
      headToSeq(view(udkv, 0, rows * Hkv * hd), nkv, view(dkv, 0, N * kvd));
      headToSeq(view(udkv, rows * Hkv * hd, rows * Hkv * hd), nkv, view(dkv, N * kvd, N * kvd));
      b.free(udatt, udq, udkv, sv.uq, sv.ukv, sv.uatt);
    }
    b.free(datt, sv.lse);
    // ws of wo still needs att: free it there
    { const att = sv.att; ws.push({ run: () => b.free(att) }); }
    rope(dq, nq, 'rope_bwd', sl, bm, cpRank * sl);
    rope(dkv, nkv, 'rope_bwd', sl, bm, cpRank * sl);
    b.free(sv.q, sv.kv);
    const dxg = b.alloc('d xg', N * h, 'activation');
    mm(dq, P(s, p + 'wq'), dxg, N, h, qd, 0, 0, 0);
    mm(view(dkv, 0, N * kvd), P(s, p + 'wk'), dxg, N, h, kvd, 0, 0, 1);
    mm(view(dkv, N * kvd, N * kvd), P(s, p + 'wv'), dxg, N, h, kvd, 0, 0, 1);
    {
      const xg = sv.xg;
      ws.push({ run: () => {
        mm(dq, xg, G(s, p + 'wq'), qd, h, N, 1, 0, 1);
        mm(view(dkv, 0, N * kvd), xg, G(s, p + 'wk'), kvd, h, N, 1, 0, 1);
        mm(view(dkv, N * kvd, N * kvd), xg, G(s, p + 'wv'), kvd, h, N, 1, 0, 1);
        b.free(dq, dkv, xg);
      } });
    }
    let dxn: Tensor;
    if (sp) { dxn = spScatter(dxg, 'd xn'); b.free(dxg); } else { tpAllReduce(dxg, N * h); dxn = dxg; }
    const dx = b.alloc('d x', R * h, 'activation');
    b.kernel('rmsnorm_bwd', [sv.x, P(s, p + 'attn_norm'), sv.rstd1, dxn, dx, G(s, p + 'attn_norm')], [R, h]);
    b.free(dxn, sv.rstd1, sv.x);
    b.kernel('add', [dx2, dx], [R * h]);
    if (sp) b.free(dx2); else ws.push({ run: () => b.free(dx2) });
    return dx;
  };

  // ---- stages
  interface StageSaved { layers: LayerSaved[]; x0?: Tensor; head?: { xf: Tensor; rstd: Tensor; xfg: Tensor; dlT: Tensor }; tokens?: Region }
  const saved = new Map<string, StageSaved>();
  /** activations and gradients passed between two stages on this rank */
  const handoff = new Map<string, Tensor>();
  /** sent tensors released at the end of the step */
  const afterStep: Tensor[] = [];
  const pendingW = new Map<string, PendingW[]>();
  const perStage = stageLayers(cfg.layers, S);
  const stageUnits = (s: number) => units.filter((u) => u.stage === s).map((u) => st.get(u.name)!);
  let step = 0;

  const tokenShard = (t: Region): Region => (sp ? view(t, tpRank * R, R) : t);

  const forward = (s: number, m: number): void => {
    b.where = `step ${step} forward stage ${s} microbatch ${m}`;
    const ss: StageSaved = { layers: [] };
    let x: Tensor;
    if (s === 0) {
      const e = unitOf('embedding');
      gather(e);
      x = b.alloc('x0', R * h, 'activation');
      b.kernel('embed_fwd', [tokenShard(plan.tokens[step]![m]!), P(e, 'tok_emb'), x], [R, h, 0, V]);
      release(e);
    } else if (ppPeer(s - 1) === rank) {
      // the previous stage is on this rank (e.g. ZB-V's turn): no message
      x = handoff.get(`F${s}/${m}`)!;
      handoff.delete(`F${s}/${m}`);
    } else {
      x = b.recvTensor(ppPeer(s - 1), `act ${step}/${s}/${m}`, 'x in', R * h, 'activation');
    }
    for (const l of perStage[s]!) {
      const us = unitOf(`layer ${l}`);
      gather(us);
      const r = layerFwd(us, l, x);
      x = r.y;
      ss.layers.push(r.saved);
      release(us);
    }
    if (s === S - 1) {
      const hu = unitOf('head');
      gather(hu);
      const xf = x;
      const rstd = b.alloc('final rstd', R, 'activation');
      const xn = b.alloc('final xn', R * h, 'activation');
      b.kernel('rmsnorm_fwd', [xf, P(hu, 'final_norm'), xn, rstd], [R, h, cfg.normEps]);
      let xfg = xn;
      if (sp) { xfg = spGather(xn, 'final xg'); b.free(xn); }
      // vocab-parallel head: logits^T [V/tp, N], gathered over TP to [V, N], transposed to [N, V]
      const lT = b.alloc('logits^T', V * N, 'activation');
      mm(P(hu, 'lm_head'), xfg, view(lT, tpRank * Vl * N, Vl * N), Vl, N, h, 0, 1, 0);
      if (tp > 1) b.collective('allgather', gTP, Vl * N, { output: lT }, { dims: 'tp' });
      const logits = b.alloc('logits', N * V, 'activation');
      b.kernel('transpose', [lT, logits], [V, N]);
      const dlogits = b.alloc('d logits', N * V, 'activation');
      b.kernel('xent', [logits, plan.targets[step]![m]!, dlogits, view(losses!, step, 1)], [N, V, scaleLoss]);
      b.free(logits);
      b.kernel('transpose', [dlogits, lT], [N, V]);
      b.free(dlogits);
      ss.head = { xf, rstd, xfg, dlT: lT };
      release(hu);
    } else if (ppPeer(s + 1) === rank) {
      handoff.set(`F${s + 1}/${m}`, x); // the next stage, on this rank, owns it now
    } else {
      b.send(ppPeer(s + 1), x, 'pp', `act ${step}/${s + 1}/${m}`);
      ss.x0 = x; // freed after the backward (the send buffer must stay until received)
    }
    saved.set(`${s}/${m}`, ss);
  };

  const lastMb = new Map<number, number>();
  // the action after which a stage's gradients are final: its last B or W (in schedule order)
  for (const a of sched.actions[ppRank]!) if (a.kind === 'B' || a.kind === 'W') lastMb.set(a.stage, a.mb);

  const finishUnit = (us: UnitState): void => {
    // gradients of this unit are final for the step: reduce them (async; overlapped)
    const tpParts = us.u.params.filter((x) => x.tpPartial);
    for (const lp of tpParts) tpAllReduce(view(us.grads!, lp.off, lp.nr * lp.nc), lp.nr * lp.nc);
    const g = grp(us.u), dims = gdims(us.u), zIx = zOf(us.u);
    if (g.length === 1) return;
    if (zero === 0) {
      b.collective('allreduce', g, us.u.padded, { output: us.grads! }, { dims, async: true });
      return;
    }
    b.collective('reducescatter', g, us.u.shard, { output: us.grads! }, { dims, async: true });
    // HSDP: the reduced shards are replicas across dp_replicate: all-reduce them there
    if (hsdp) b.collective('allreduce', gRep, us.u.shard, { output: view(us.grads!, zIx * us.u.shard, us.u.shard) }, { dims: 'dp_replicate', async: true });
    if (zero >= 2) {
      // keep only the shard: copied on the communication stream once the reduce-scatter is done
      us.gshard = b.alloc(`${us.u.name} grad shard`, us.u.shard, 'grad');
      b.ops.push({ k: 'copy', src: view(us.grads!, zIx * us.u.shard, us.u.shard), dst: us.gshard.region, s: L.overlap ? 1 : 0 });
      b.free(us.grads);
      us.grads = undefined;
    }
  };

  const backward = (s: number, m: number, kind: 'B' | 'I'): void => {
    b.where = `step ${step} backward${kind === 'I' ? ' (input)' : ''} stage ${s} microbatch ${m}`;
    const ss = saved.get(`${s}/${m}`)!;
    const ws: PendingW[] = [];
    let dy: Tensor;
    // a full backward (B) computes each block's weight gradients right after its input gradients,
    // so the last microbatch finishes the blocks one by one and their reductions overlap the rest
    // of the backward (DDP buckets); a split backward (I) leaves them to its W
    const flush = (us: UnitState) => {
      if (kind !== 'B') return;
      for (const w of ws.splice(0)) w.run();
      if (lastMb.get(s) === m) finishUnit(us);
    };
    if (s === S - 1) {
      const hu = unitOf('head');
      gather(hu);
      const { xf, rstd, xfg, dlT } = ss.head!;
      const dlocal = view(dlT, tpRank * Vl * N, Vl * N);
      const dxg = b.alloc('d final xg', N * h, 'activation');
      mm(dlocal, P(hu, 'lm_head'), dxg, N, h, Vl, 1, 0, 0);
      ws.push({ run: () => { mm(dlocal, xfg, G(hu, 'lm_head'), Vl, h, N, 0, 0, 1); b.free(dlT, xfg); } });
      let dxn: Tensor;
      if (sp) { dxn = spScatter(dxg, 'd final xn'); b.free(dxg); } else { tpAllReduce(dxg, N * h); dxn = dxg; }
      dy = b.alloc('d x', R * h, 'activation');
      b.kernel('rmsnorm_bwd', [xf, P(hu, 'final_norm'), rstd, dxn, dy, G(hu, 'final_norm')], [R, h]);
      b.free(dxn, rstd, xf);
      release(hu);
      flush(hu);
    } else if (ppPeer(s + 1) === rank) {
      dy = handoff.get(`B${s}/${m}`)!;
      handoff.delete(`B${s}/${m}`);
    } else {
      dy = b.recvTensor(ppPeer(s + 1), `grad ${step}/${s}/${m}`, 'd x in', R * h, 'activation');
      b.free(ss.x0);
    }
    const layers = perStage[s]!;
    for (let i = layers.length - 1; i >= 0; i--) {
      const us = unitOf(`layer ${layers[i]}`);
      gather(us);
      dy = layerBwd(us, layers[i]!, ss.layers[i]!, dy, ws);
      release(us);
      flush(us);
      if (cfg.moe) flush(unitOf(`layer ${layers[i]} experts`));
    }
    if (s === 0) {
      const e = unitOf('embedding');
      const tok = tokenShard(plan.tokens[step]![m]!);
      const dyE = dy;
      ws.push({ run: () => { b.kernel('embed_bwd', [tok, dyE, G(e, 'tok_emb')], [R, h, 0, V]); b.free(dyE); } });
      flush(e);
    } else if (ppPeer(s - 1) === rank) {
      handoff.set(`B${s - 1}/${m}`, dy); // the previous stage, on this rank, owns it now
    } else {
      b.send(ppPeer(s - 1), dy, 'pp', `grad ${step}/${s - 1}/${m}`);
      // The receiver consumes it in its own backward, which may come after this rank's next
      // allocations: reusing the memory earlier could make both wait on each other. Kept until
      // the end of the step, when every message of the step has been received.
      const dyS = dy;
      ws.push({ run: () => afterStep.push(dyS) });
    }
    saved.delete(`${s}/${m}`);
    if (kind === 'B') for (const w of ws.splice(0)) w.run();
    else pendingW.set(`${s}/${m}`, ws);
  };

  const weights = (s: number, m: number): void => {
    b.where = `step ${step} weight gradients stage ${s} microbatch ${m}`;
    const ws = pendingW.get(`${s}/${m}`)!;
    pendingW.delete(`${s}/${m}`);
    for (const w of ws) w.run();
    if (lastMb.get(s) === m) {
      // reverse layer order = the order the backward finished them (DDP buckets)
      for (const us of stageUnits(s).reverse()) finishUnit(us);
    }
  };

  const optimizerStep = (): void => {
    b.where = `step ${step} optimizer`;
    b.sync();
    for (const us of st.values()) {
      const u = us.u;
      const Z = grp(u).length, zIx = zOf(u);
      const grad: Region = zero >= 2 && Z > 1 ? us.gshard!.region : zero >= 1 && Z > 1 ? view(us.grads!, zIx * u.shard, u.shard) : us.grads!.region;
      const param: Region = zero === 3 ? us.pshard!.region : zero >= 1 && Z > 1 ? view(us.params!, zIx * u.shard, u.shard) : us.params!.region;
      // ZeRO 0 with Z = 1, or any level on a single replica: the whole buffer
      const n = param.len;
      if (L.capture) {
        // zero-cost copy into 'out' for the parity check (what the optimizer consumes)
        const dst: Region = { buf: 'out', off: plan.captureElems, len: grad.len };
        plan.captureElems += grad.len;
        b.kernel('capture', [grad, dst], [grad.len], 'parity capture');
        plan.captures.push({ step, unit: u.name, region: dst, shard: zero >= 1 && Z > 1 });
      }
      if (opt.kind === 'sgd') b.kernel('sgd', [param, grad], [n, opt.lr]);
      else b.kernel('adam', [param, grad, us.m!, us.v!], adamParams(opt, n, step + 1));
      if (zero >= 1 && zero < 3 && Z > 1) b.collective('allgather', grp(u), u.shard, { output: us.params! }, { dims: gdims(u), async: true });
      b.free(us.grads, us.gshard);
      us.grads = undefined;
      us.gshard = undefined;
    }
    b.sync();
    b.free(...afterStep.splice(0));
  };

  const run = (a: Action): void => {
    if (a.kind === 'F') forward(a.stage, a.mb);
    else if (a.kind === 'B' || a.kind === 'I') backward(a.stage, a.mb, a.kind);
    else weights(a.stage, a.mb);
  };

  for (step = 0; step < L.steps; step++) {
    for (const a of sched.actions[ppRank]!) run(a);
    optimizerStep();
  }
  return { program: b.program(), builder: b, plan };
}

/** Reduction op of the gradient collectives (sum: the loss is already a global mean). */
export const GRAD_OP: ReduceOp = 'sum';
