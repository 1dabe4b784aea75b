/**
 * predictStep: the analytic step-time / MFU / memory model of one training step.
 *
 * Conventions (the other files of this directory give the details and sources):
 *  - FLOPs: Megatron-LM's formula (flops.ts): 12 B s L h^2 [(1 + g/a + s/(2h)) + f_eff/h + V/(2Lh)],
 *    the causal half of the attention scores; `attentionFlops: 'full'` counts all of them as
 *    Narayanan et al. 2021 eq. 3 (formulas.md). Recomputation is hardware work, not model work.
 *  - MFU = model FLOPs per step / (step time x GPUs x dense BF16 peak); HFU adds recomputation.
 *    tflops_per_gpu is model FLOP/s per GPU (Llama 3's "TFLOPs/GPU"); hardware_tflops_per_gpu adds
 *    recomputation (Narayanan et al.'s "achieved teraFLOP/s per GPU" with full recompute).
 *  - Bytes: bf16 (2 bytes) activations, weights and TP / CP / PP / EP traffic; fp32 (4 bytes)
 *    gradients (gradBytes) for the data-parallel reduction; fp32 Adam states (memory.ts).
 *  - Global batch in sequences; micro-batch b sequences; m = B / (dp b) microbatches per step.
 *    Tokens per step = B s.
 *  - Mesh order [TP, CP, PP, DP], innermost first: TP groups are stride 1, CP stride tp, PP stride
 *    tp cp, DP stride tp cp pp; EP groups are carved out of DP (stride tp cp pp, ep members); expert
 *    weights are data-parallel over the remaining dp / ep. clusters.ts prices each group's
 *    collectives with the collectives' closed forms on the link classes the group crosses.
 *    (parallelism/mesh.ts's DeviceMesh puts EP between CP and PP as its own dimension; here, as the
 *    issue's tp*cp*pp*dp = gpus and Megatron-LM, EP divides DP.)
 *  - Compute: compute.ts (shape-dependent GEMM efficiency, FlashAttention, memory-bound ops).
 *  - Pipeline chunking: without --vpp, predictStep picks 1F1B or interleaved with the best v (below).
 *
 * One step, on the critical pipeline rank (the one with the most work per microbatch):
 *  - per microbatch and layer: forward = compute + exposed TP / CP / EP communication; backward for
 *    inputs = compute + exposed communication + recomputation (full: the whole forward again,
 *    including its TP traffic; selective: the core attention forward, Korthikanti et al.); backward
 *    for weights = wgrad GEMMs + fp32 gradient accumulation.
 *  - TP: Megatron's 2 AllReduce forward + 2 backward of b s h per layer (with sequence parallelism a
 *    ReduceScatter + AllGather each, and 2 more AllGathers in backward that re-gather the inputs of
 *    the column-parallel GEMMs for their weight gradients, overlapped with the dgrad GEMMs as
 *    Megatron does). Exposed, unless `tpOverlap` (TransformerEngine-style overlap: each collective
 *    hides behind the GEMM next to it, exposed = max(0, comm - GEMM)).
 *  - CP: `cpComm` 'ring' (ring attention, formulas.md): the K,V block (2 b (s/c) kv bytes x 2) goes
 *    around the CP group c-1 times forward, K,V and their gradients c-1 times backward, each step
 *    overlapped with one block of attention (exposed = max(0, send - block)); 'allgather' (Llama 3):
 *    K,V all-gathered before attention, their gradients reduce-scattered after, exposed.
 *  - EP: dispatch + combine AllToAll of the routed tokens (top_k b s h) forward, the same backward;
 *    exposed.
 *  - PP: the schedule (parallelism/schedules.ts) with per-chunk times T_F, T_B (input grad), T_W, run
 *    on the simulator (parallelism/pipeline.ts runSchedule) with the stage-to-stage messages
 *    (b (s/cp) h / t bytes: each TP rank sends its slice, Narayanan et al.'s scatter/gather
 *    optimization; without SP the receiver all-gathers the slices over NVLink, charged as exposed
 *    TP), on the link the PP group crosses; the bubble is the makespan
 *    without messages minus the compute, "pp" what the messages add. Large schedules (more than
 *    PIPELINE_SIM_LIMIT chunk-microbatches) use the closed forms of pipeline.ts instead (zb-v:
 *    zbvIdle below, exact for any T_F, T_B, T_W), with 2 (p v - 1) message times for the fill and
 *    drain chains.
 *    Stages: the layers are spread so that the slowest rank has as little as possible, the
 *    embedding counting as work on rank 0 and the output layer on the rank of the last stage (the
 *    last rank; rank 0 for zb-v) (Llama 3 removes a layer from the first and last stages for the
 *    same reason); within a rank, the chunk next to the embedding or the output layer gets the
 *    deficit (stageLayers). The schedule runs with the slowest rank's chunk times.
 *  - Memory (memory.ts): model states by ZeRO level; activations by walking the schedule's actions
 *    with each stage's bytes (stageActivationPeak), on the ranks that can hold the peak.
 *    activationMemory 'lean' adds the backward's recomputation of the norm outputs and the MLP
 *    activation (memory-bound) to "recompute".
 *  - DP (gradient reduction and parameter gathering, by ZeRO level; memory.ts): ZeRO-0 AllReduce of
 *    the gradients, ZeRO-1 ReduceScatter of gradients + AllGather of bf16 parameters, once per step;
 *    ZeRO-2 a ReduceScatter after every microbatch's backward; ZeRO-3 without PP AllGather forward
 *    and backward and ReduceScatter per microbatch (1.5x, formulas.md), with PP once per step (FSDP
 *    without resharding after forward, Llama 3). Overlap: the gradient reduction hides behind the
 *    backward of the microbatch that produces it (bucketed, as DDP / Megatron do: the last
 *    microbatch's backward for a once-per-step reduction; a pipeline rank that finishes early has
 *    the drain of the ranks before it as well), the parameter AllGather behind the first forward;
 *    the rest is exposed.
 *  - Optimizer: Adam over the local shard, memory-bound: (26 + gradBytes) bytes per parameter.
 * step = pipeline makespan + exposed DP + optimizer;
 * breakdown_s = compute + recompute + bubble + tp + cp + ep + pp + dp + optimizer = step_time_s.
 */
import { HARDWARE } from '../../runtime/hardware.js';
import { formulaBubble, runSchedule } from '../pipeline.js';
import { makeSchedule, SCHEDULE_NAMES, type Schedule, type ScheduleName } from '../schedules.js';
import { collectiveTime, neighbourLink, placeGroup, resolveCluster, type Cluster, type Group } from './clusters.js';
import { deviceFor, E_HBM, headCompute, layerCompute, memTime, T_LAUNCH, type Device, type LayerShape } from './compute.js';
import { PredictError } from './errors.js';
import { coreAttentionForwardFlopsPerSequence, layerForwardFlopsPerSequence, modelFlopsPerSequence, type AttentionFlops } from './flops.js';
import { ACTIVATION_MEMORY, deviceCapacity, GIB, keptActivationBytes, layerActivationBytes, localLayerParamCounts, stageExtraActivationBytes, stageMemory, usableBytes, type ActivationMemory, type ActivationShape, type MemoryBreakdown } from './memory.js';
import { isMoe, modelParams, resolveModel, type ModelSpec } from './models.js';

export type Recompute = 'none' | 'selective' | 'full';
export const RECOMPUTE: readonly Recompute[] = ['none', 'selective', 'full'];
export type CpComm = 'ring' | 'allgather';
export type AttentionImpl = 'flash' | 'unfused';

/** A parallel layout and its training hyper-parameters. */
export interface Layout {
  tp: number;
  cp: number;
  pp: number;
  dp: number;
  ep: number;
  /** model chunks per pipeline rank (interleaved schedule) */
  vpp: number;
  zero: 0 | 1 | 2 | 3;
  sequenceParallel: boolean;
  microBatch: number;
  recompute: Recompute;
  /** pipeline schedule ('none' without PP) */
  schedule: ScheduleName | 'none';
  /** which activation copies are kept (memory.ts header): 'megatron' or 'lean' */
  activationMemory: ActivationMemory;
}

export interface PredictInput {
  model: string | ModelSpec;
  gpu: string;
  gpus: number;
  /** a preset name, a JSON file, or a Cluster; default: the GPU kind's standard cluster */
  cluster?: string | Cluster;
  /** sequence length (tokens) */
  seq: number;
  /** global batch, sequences */
  globalBatch: number;
  tp?: number;
  cp?: number;
  pp?: number;
  /** default gpus / (tp cp pp) */
  dp?: number;
  ep?: number;
  /** model chunks per pipeline rank; default 'auto' (see predictStep) */
  vpp?: number | 'auto';
  zero?: number;
  sequenceParallel?: boolean;
  microBatch?: number;
  recompute?: Recompute;
  /** gpipe, 1f1b, interleaved, zb-h1, zb-v; default interleaved when vpp > 1, else 1f1b (pp > 1) */
  schedule?: string;
  /** overlap TP collectives with the neighbouring GEMMs (default false: exposed) */
  tpOverlap?: boolean;
  /** context-parallel attention: ring (default) or allgather (Llama 3) */
  cpComm?: CpComm;
  /** FlashAttention (default) or unfused softmax attention (Megatron-LM 2021-22) */
  attention?: AttentionImpl;
  /** attention-score FLOPs counted for MFU: causal half (default, Megatron-LM) or full (Narayanan 2021) */
  attentionFlops?: AttentionFlops;
  /** bytes per gradient element in the DP reduction and the gradient buffer (default 4: fp32) */
  gradBytes?: number;
  /** pipeline: simulate the schedule, use the closed forms, or decide by size (default 'auto') */
  pipelineModel?: 'simulate' | 'formula' | 'auto';
  /**
   * activation copies kept (memory.ts header): 'megatron' (default; Korthikanti et al.'s accounting
   * of Megatron-LM / TransformerEngine) or 'lean' (norm outputs and the MLP activation recomputed in
   * backward, as a compiled backward does)
   */
  activationMemory?: ActivationMemory;
  /** keep the simulated schedule's per-rank timeline (Prediction.pipeline.timeline) */
  timeline?: boolean;
}

/** One compute action of the simulated pipeline schedule on one pipeline rank (virtual seconds). */
export interface TimelineAction {
  /** F forward, B backward (input and weight gradients), I input gradient, W weight gradient */
  kind: string;
  stage: number;
  microbatch: number;
  start: number;
  end: number;
}

export interface CollectiveUse {
  /** process group: tp, cp, pp, dp, dp-expert, ep */
  group: string;
  /** group size and stride in the mesh */
  size: number;
  stride: number;
  op: string;
  /** nccl-tests size of one call, bytes */
  bytes: number;
  /** calls per step on one rank (TP: a rank with an even share, m L / pp layer-microbatches; the
   * breakdown's tp is the critical rank's and adds the output layer's TP traffic) */
  calls: number;
  /** algorithm autoSelect picked */
  algo: string;
  /** link classes the group crosses */
  links: string[];
  /** seconds per call, and exposed seconds per step */
  time_s: number;
  exposed_s: number;
}

export interface RankClass {
  name: string;
  /** pipeline rank */
  rank: number;
  layers: number;
  /** seconds per microbatch for this rank's whole share (all of its chunks) */
  fwd_s: number;
  bwd_input_s: number;
  bwd_weight_s: number;
  /** microbatches (of this rank's share) in flight at its peak */
  inflight: number;
  /** layer-microbatches in flight at its activation peak (its chunks' layers x their microbatches) */
  layer_microbatches: number;
  memory_gib: { parameters: number; gradients: number; optimizer: number; activations: number; total: number };
}

export interface Breakdown {
  compute: number;
  recompute: number;
  bubble: number;
  tp: number;
  cp: number;
  ep: number;
  pp: number;
  dp: number;
  optimizer: number;
}

export interface Prediction {
  model: string;
  gpu: string;
  gpus: number;
  cluster: string;
  /** the cluster's levels in one line */
  cluster_description: string;
  layout: Layout;
  seq: number;
  global_batch: number;
  microbatches: number;
  step_time_s: number;
  tokens_per_s: number;
  tflops_per_gpu: number;
  hardware_tflops_per_gpu: number;
  mfu: number;
  hfu: number;
  memory_gib_per_gpu: number;
  /** the device memory a CUDA process sees (memory.ts deviceCapacity), GiB */
  memory_capacity_gib: number;
  memory_usable_gib: number;
  fits_in_memory: boolean;
  breakdown_s: Breakdown;
  memory_gib: { parameters: number; gradients: number; optimizer: number; activations: number; activations_layers: number; states_layers: number; total: number };
  flops: { model_per_step: number; hardware_per_step: number; convention: string };
  pipeline: {
    schedule: string; stages: number; chunks_per_rank: number; microbatches: number; bubble_fraction: number; method: string; layers_per_rank: number[];
    /**
     * with PredictInput.timeline and a simulated schedule: per pipeline rank, its compute actions as
     * the simulator ran them (the critical rank class's stage times, stage-to-stage messages on the
     * PP group's link), in order
     */
    timeline?: TimelineAction[][];
  };
  rank_classes: RankClass[];
  collectives: CollectiveUse[];
  notes: string[];
}

/** Schedules with more chunk-microbatches (p m v) than this use the closed forms (simulation cost). */
export const PIPELINE_SIM_LIMIT = 6144;

const int = (v: unknown, what: string, min = 1): number => {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw new PredictError(`${what} must be an integer >= ${min} (got ${v})`);
  return v;
};

/** --grad-bytes: 2 (bf16 gradients) or 4 (fp32 main gradients); throws PredictError otherwise. */
export function checkGradBytes(v: number | undefined): void {
  if (v !== undefined && v !== 2 && v !== 4) throw new PredictError(`--grad-bytes must be 2 (bf16 gradients) or 4 (fp32 main gradients) (got ${v})`);
}

/** Resolve defaults and check a layout against the model and GPU count; throws PredictError. */
export function resolveLayout(model: ModelSpec, inp: PredictInput): Layout & { seq: number; globalBatch: number; m: number } {
  const gpus = int(inp.gpus, '--gpus');
  checkGradBytes(inp.gradBytes);
  const tp = int(inp.tp ?? 1, '--tp'), cp = int(inp.cp ?? 1, '--cp'), pp = int(inp.pp ?? 1, '--pp');
  const ep = int(inp.ep ?? 1, '--ep'), vpp = int(inp.vpp === undefined || inp.vpp === 'auto' ? 1 : inp.vpp, '--vpp');
  const b = int(inp.microBatch ?? 1, '--micro-batch');
  const seq = int(inp.seq, '--seq'), B = int(inp.globalBatch, '--global-batch');
  if (gpus % (tp * cp * pp) !== 0 && inp.dp === undefined) throw new PredictError(`tp*cp*pp = ${tp * cp * pp} does not divide --gpus ${gpus}`);
  const dp = inp.dp === undefined ? gpus / (tp * cp * pp) : int(inp.dp, '--dp');
  if (tp * cp * pp * dp !== gpus) throw new PredictError(`tp*cp*pp*dp = ${tp}*${cp}*${pp}*${dp} = ${tp * cp * pp * dp}, but --gpus is ${gpus}`);
  const zero = int(inp.zero ?? 0, '--zero', 0);
  if (zero > 3) throw new PredictError(`--zero must be 0, 1, 2 or 3 (got ${zero})`);
  const recompute = inp.recompute ?? 'none';
  if (!RECOMPUTE.includes(recompute)) throw new PredictError(`--recompute must be none, selective or full (got '${recompute}')`);
  const activationMemory = inp.activationMemory ?? 'megatron';
  if (!ACTIVATION_MEMORY.includes(activationMemory)) throw new PredictError(`--activation-memory must be megatron or lean (got '${activationMemory}')`);
  if (model.heads % tp !== 0) throw new PredictError(`${model.name}: heads ${model.heads} is not divisible by tp ${tp}`);
  if (model.kvHeads % tp !== 0 && tp % model.kvHeads !== 0) throw new PredictError(`${model.name}: kv_heads ${model.kvHeads} and tp ${tp}: one must divide the other`);
  if (model.ffn % tp !== 0) throw new PredictError(`${model.name}: ffn ${model.ffn} is not divisible by tp ${tp}`);
  if (cp > 1 && seq % (2 * cp) !== 0) throw new PredictError(`--seq ${seq} is not divisible by 2*cp = ${2 * cp} (causal context parallelism splits a sequence into 2 cp chunks)`);
  const sp = inp.sequenceParallel ?? false;
  if (sp && tp === 1) throw new PredictError('--sequence-parallel needs --tp > 1 (it shards the tensor-parallel group\'s activations along the sequence)');
  if (sp && ((b * seq) / cp) % tp !== 0) throw new PredictError(`sequence parallelism needs micro-batch x seq / cp = ${(b * seq) / cp} divisible by tp ${tp}`);
  if (B % (dp * b) !== 0) throw new PredictError(`--global-batch ${B} is not divisible by dp x micro-batch = ${dp} x ${b} = ${dp * b}`);
  const m = B / (dp * b);
  if (ep > 1) {
    if (!isMoe(model)) throw new PredictError(`--ep ${ep} needs an MoE model (${model.name} has no experts)`);
    if (dp % ep !== 0) throw new PredictError(`--ep ${ep} must divide dp ${dp} (expert parallelism is carved out of data parallelism)`);
    if (model.experts! % ep !== 0) throw new PredictError(`${model.name}: experts ${model.experts} is not divisible by ep ${ep}`);
  }
  if (model.layers < pp) throw new PredictError(`${model.name} has ${model.layers} layers: fewer than pp = ${pp} pipeline stages`);
  if (vpp > Math.ceil(model.layers / pp)) throw new PredictError(`--vpp ${vpp}: ${model.name} has only ${Math.ceil(model.layers / pp)} layers per pipeline rank to split into chunks`);
  let schedule: ScheduleName | 'none';
  if (pp === 1) {
    if (vpp > 1) throw new PredictError(`--vpp ${vpp} needs pipeline parallelism (--pp > 1)`);
    if (inp.schedule !== undefined && inp.schedule !== 'none' && inp.schedule !== '1f1b') throw new PredictError(`--schedule ${inp.schedule} needs pipeline parallelism (--pp > 1)`);
    schedule = 'none';
  } else {
    const name = inp.schedule ?? (vpp > 1 ? 'interleaved' : '1f1b');
    if (!(SCHEDULE_NAMES as readonly string[]).includes(name)) throw new PredictError(`unknown schedule '${name}' (known: ${SCHEDULE_NAMES.join(', ')})`);
    schedule = name as ScheduleName;
    if (schedule === 'interleaved' && vpp < 2) throw new PredictError(`--schedule interleaved needs --vpp >= 2 model chunks per rank`);
    if (schedule !== 'interleaved' && schedule !== 'zb-v' && vpp > 1) throw new PredictError(`--vpp ${vpp} needs --schedule interleaved`);
    if (schedule === 'zb-v' && vpp !== 1 && vpp !== 2) throw new PredictError(`zb-v places 2 model chunks per rank: --vpp must be 2`);
    if (schedule === 'interleaved' && m % pp !== 0) throw new PredictError(`interleaved 1F1B needs the microbatch count to be a multiple of pp: m = ${m} is not divisible by pp = ${pp}`);
    if ((schedule === 'interleaved' || schedule === 'zb-h1' || schedule === 'zb-v') && m < pp) throw new PredictError(`${schedule} needs at least as many microbatches as pipeline ranks: m = ${m} < pp = ${pp}`);
  }
  const v = schedule === 'zb-v' ? 2 : vpp;
  if (v > Math.ceil(model.layers / pp)) throw new PredictError(`${model.name} has ${model.layers} layers: too few for ${v} chunks on each of ${pp} pipeline ranks`);
  return { tp, cp, pp, dp, ep, vpp: v, zero: zero as Layout['zero'], sequenceParallel: sp, microBatch: b, recompute, schedule, activationMemory, seq, globalBatch: B, m };
}

/**
 * Spread L layers over p ranks so that the slowest rank's load is least. Rank 0 runs the embedding,
 * rank `headRank` the output layer (the last rank; rank 0 for zb-v, whose last stage is on rank 0).
 */
export function assignLayers(L: number, p: number, tLayer: number, tHead: number, tEmb: number, headRank = p - 1): number[] {
  if (p === 1) return [L];
  let best: number[];
  let bestLoad = Infinity;
  const kMin = Math.ceil(L / p);
  const others = [...Array(p).keys()].filter((r) => r !== 0 && r !== headRank);
  // j0 layers on rank 0 and jh on the output layer's rank (the same rank for zb-v); the others
  // share the rest as evenly as possible (k = ceil(rest / others) each from the last rank down, the
  // lower ranks taking the deficit)
  let bj0 = -1, bjh = -1;
  for (let j0 = 0; j0 <= kMin; j0++) {
    for (let jh = 0; jh <= (headRank === 0 ? 0 : kMin); jh++) {
      const rest = L - j0 - (headRank === 0 ? 0 : jh);
      if (rest < 0 || (others.length === 0 && rest !== 0)) continue;
      const k = others.length ? Math.ceil(rest / others.length) : 0;
      const load = headRank === 0
        ? Math.max(j0 * tLayer + tEmb + tHead, k * tLayer)
        : Math.max(j0 * tLayer + tEmb, jh * tLayer + tHead, k * tLayer);
      if (load < bestLoad - 1e-15) { bestLoad = load; bj0 = j0; bjh = jh; }
    }
  }
  best = new Array<number>(p).fill(0);
  best[0] = bj0;
  if (headRank !== 0) best[headRank] = bjh;
  let left = L - bj0 - (headRank === 0 ? 0 : bjh);
  const k = others.length ? Math.ceil(left / others.length) : 0;
  for (let i = others.length - 1; i >= 0; i--) {
    const n = Math.min(k, left);
    best[others[i]!] = n;
    left -= n;
  }
  return best;
}

interface PerMb {
  /** compute seconds per microbatch (this rank's whole share) */
  fwd: number;
  bwdI: number;
  bwdW: number;
  recompute: number;
  tp: number;
  cp: number;
  ep: number;
}

const sumMb = (x: PerMb) => x.fwd + x.bwdI + x.bwdW + x.recompute + x.tp + x.cp + x.ep;

/** Peak microbatches in flight (in units of the rank's share) on pipeline rank r, closed form. */
function inflightFormula(name: ScheduleName | 'none', p: number, m: number, v: number, r: number): number {
  switch (name) {
    case 'none': return 1;
    case 'gpipe': return m;
    case '1f1b':
    case 'zb-h1': return Math.min(m, p - r);
    case 'interleaved': return Math.min(m * v, m === p ? m * v : 2 * (p - 1 - r) + (v - 1) * p + 1) / v;
    case 'zb-v': return Math.min(m, p);
  }
}

/** Schedules with more chunk-microbatches than this take the closed-form in-flight counts for memory. */
export const MEMORY_WALK_LIMIT = 1 << 17;

const scheduleCache = new Map<string, Schedule>();
/** makeSchedule, memoized (the planner asks for the same (schedule, p, m, v) many times). */
function cachedSchedule(name: ScheduleName, p: number, m: number, v: number): Schedule {
  const key = `${name}/${p}/${m}/${v}`;
  let s = scheduleCache.get(key);
  if (!s) {
    s = makeSchedule(name, p, m, name === 'interleaved' ? v : undefined);
    if (scheduleCache.size >= 256) scheduleCache.delete(scheduleCache.keys().next().value!);
    scheduleCache.set(key, s);
  }
  return s;
}

/** The pipeline stages (virtual stages) of rank r, in stage order: interleaved r, p + r, ...; zb-v r, 2p - 1 - r. */
export function rankStages(name: ScheduleName | 'none', p: number, v: number, r: number): number[] {
  if (name === 'zb-v') return [r, 2 * p - 1 - r];
  return Array.from({ length: v }, (_, c) => c * p + r);
}

/**
 * Layers of each stage (length p x v): rank r's n layers over its v chunks, ceil(n / v) each, the
 * deficit taken first from the chunk with the embedding (stage 0) and the one with the output layer
 * (the last stage), then from the rank's later chunks: Llama 3's balancing, where the first chunk
 * of the first rank holds only the embedding and the last chunk of the last rank only the output
 * layer.
 */
export function stageLayers(name: ScheduleName | 'none', perRank: number[], v: number): number[] {
  const p = perRank.length, S = p * v;
  const out = new Array<number>(S).fill(0);
  for (let r = 0; r < p; r++) {
    const n = perRank[r]!, stages = rankStages(name, p, v, r);
    const k = Math.ceil(n / v);
    let deficit = k * v - n;
    for (const st of stages) out[st] = k;
    const order = [...stages.filter((st) => st === 0 || st === S - 1), ...stages.filter((st) => st !== 0 && st !== S - 1).reverse()];
    for (const st of order) {
      if (deficit === 0) break;
      const d = Math.min(deficit, out[st]!);
      out[st]! -= d;
      deficit -= d;
    }
  }
  return out;
}

/**
 * Activation peak of rank r over its schedule: walk its actions in order; a forward adds its
 * stage's bytes, the backward releases them (at W where the schedule splits the backward: the
 * weight gradients read the GEMM inputs; else at B). Returns the peak total, the layer part and
 * layer-microbatches at that moment, and the peak of chunk-microbatches (for the in-flight count).
 */
export function stageActivationPeak(s: Schedule, r: number, stageBytes: number[], stageLayerBytes: number[], stageLayerCount: number[]): { total: number; layers: number; layerMicrobatches: number; chunks: number } {
  const acts = s.actions[r]!;
  const split = acts.some((a) => a.kind === 'W');
  let cur = 0, curL = 0, curN = 0, chunks = 0;
  let peak = { total: 0, layers: 0, layerMicrobatches: 0, chunks: 0 };
  for (const a of acts) {
    if (a.kind === 'F') {
      cur += stageBytes[a.stage]!; curL += stageLayerBytes[a.stage]!; curN += stageLayerCount[a.stage]!; chunks++;
      if (cur > peak.total) peak = { total: cur, layers: curL, layerMicrobatches: curN, chunks: peak.chunks };
      peak.chunks = Math.max(peak.chunks, chunks);
    } else if (a.kind === (split ? 'W' : 'B') || (!split && a.kind === 'I')) {
      cur -= stageBytes[a.stage]!; curL -= stageLayerBytes[a.stage]!; curN -= stageLayerCount[a.stage]!; chunks--;
    }
  }
  return peak;
}

/**
 * ZB-V's idle time per rank, in closed form over m: the schedule's makespan at m0 = min(m, 2p - 1)
 * microbatches less its compute, from a list-scheduling pass over its actions (each action starts
 * when its rank is free and its inputs are ready: the previous stage's forward, the next stage's
 * input gradient, its own input gradient for W). For m >= 2p - 1 the idle time no longer depends on
 * m (the pattern only adds full steady-state periods; test/predict-agreement.test.ts checks it
 * against the simulator), so makespan(m) = 2 m (T_F + T_B + T_W) + idle. Its value depends on the
 * ratios of T_F, T_B and T_W (it is (p - 1) T_F when they are equal, formulas.md's convention
 * (p-1)/(6m) of the step); the earlier fallback, half of 1F1B's (p - 1)/m, ignored that ZB-V fills
 * its bubble with the deferred W, and was 5-13% slower than the simulated schedule.
 */
export function zbvIdle(p: number, t: { tF: number; tB: number; tW: number }, m = 2 * p - 1): number {
  const m0 = Math.min(m, 2 * p - 1);
  const key = `${p}/${m0}/${t.tF}/${t.tB}/${t.tW}`;
  const hit = zbvIdleCache.get(key);
  if (hit !== undefined) return hit;
  const prog = zbvProgram(p, m0);
  const S = 2 * p;
  const doneF = new Float64Array(S * m0).fill(NaN), doneI = new Float64Array(S * m0).fill(NaN);
  const dur = [t.tF, t.tB, t.tW];
  let makespan = 0;
  let remaining = prog.reduce((x, l) => x + l.kind.length, 0);
  const pos = new Array<number>(p).fill(0), free = new Float64Array(p);
  while (remaining > 0) {
    let progressed = false;
    for (let r = 0; r < p; r++) {
      const { kind, idx } = prog[r]!;
      for (let q = pos[r]!; q < kind.length; q++) {
        const k = kind[q]!, i = idx[q]!, stage = (i / m0) | 0;
        // F waits for the previous stage's F; I for its own F and the next stage's I; W for its I
        const ready = k === 0 ? (stage === 0 ? 0 : doneF[i - m0]!) : k === 1 ? Math.max(doneF[i]!, stage === S - 1 ? 0 : doneI[i + m0]!) : doneI[i]!;
        if (Number.isNaN(ready)) break;
        const end = Math.max(free[r]!, ready) + dur[k]!;
        free[r] = end;
        if (k === 0) doneF[i] = end;
        else if (k === 1) doneI[i] = end;
        if (end > makespan) makespan = end;
        pos[r] = q + 1;
        remaining--;
        progressed = true;
      }
    }
    if (!progressed) throw new Error('zb-v list schedule: no action can run (dependency cycle)');
  }
  const idle = makespan - 2 * m0 * (t.tF + t.tB + t.tW);
  if (zbvIdleCache.size >= 4096) zbvIdleCache.clear();
  zbvIdleCache.set(key, idle);
  return idle;
}
const zbvIdleCache = new Map<string, number>();
const zbvPrograms = new Map<string, { kind: Uint8Array; idx: Int32Array }[]>();
/** The zb-v schedule's actions per rank as kind codes (F 0, I 1, W 2) and stage x m + mb indices. */
function zbvProgram(p: number, m: number): { kind: Uint8Array; idx: Int32Array }[] {
  const key = `${p}/${m}`;
  let prog = zbvPrograms.get(key);
  if (!prog) {
    const s = makeSchedule('zb-v', p, m);
    prog = s.actions.map((l) => ({
      kind: Uint8Array.from(l, (a) => (a.kind === 'F' ? 0 : a.kind === 'W' ? 2 : 1)),
      idx: Int32Array.from(l, (a) => a.stage * m + a.mb),
    }));
    if (zbvPrograms.size >= 256) zbvPrograms.clear();
    zbvPrograms.set(key, prog);
  }
  return prog;
}

/**
 * Predict one training step. Without --vpp (or with 'auto') and with pipeline parallelism, the
 * chunking is chosen: 1F1B and, when the microbatches allow it (m a multiple of pp), the
 * interleaved schedule with every v that divides the layers per rank; the shortest predicted step
 * among those that fit in memory wins (the fastest of all if none fits). Published runs that
 * reach their figures with pipeline parallelism used interleaving (Narayanan et al. 2021; Llama 3).
 */
export function predictStep(inp: PredictInput): Prediction {
  const model = resolveModel(inp.model);
  const gpu = String(inp.gpu ?? '').toLowerCase();
  if (!HARDWARE[gpu]) throw new PredictError(`unknown GPU '${inp.gpu}' (known: a100, h100, h200, b200, tpu-v4, tpu-v5p, tpu-v5e, tpu-v6e)`);
  const lay = resolveLayout(model, inp);
  const cluster = resolveCluster(inp.cluster, gpu, lay.tp * lay.cp * lay.pp * lay.dp);
  const hw = cluster.topo.hw;
  const dev = deviceFor(cluster.gpu, hw.peakFlops.bf16, hw.hbmBandwidth);
  const autoV = lay.pp > 1 && (inp.vpp === undefined || inp.vpp === 'auto') && (inp.schedule === undefined || inp.schedule === 'interleaved');
  if (!autoV) return finite(predictWith(model, cluster, dev, lay, inp));
  const perRank = Math.ceil(model.layers / lay.pp);
  const cands: { v: number; schedule: string }[] = inp.schedule === 'interleaved' ? [] : [{ v: 1, schedule: '1f1b' }];
  for (let v = 2; v <= perRank; v++) if (perRank % v === 0) cands.push({ v, schedule: 'interleaved' });
  let best: { p: Prediction; v: number; schedule: string } | undefined;
  const tried: string[] = [];
  for (const c of cands) {
    let l: ReturnType<typeof resolveLayout>;
    try {
      l = resolveLayout(model, { ...inp, vpp: c.v, schedule: c.schedule });
    } catch {
      continue;
    }
    const p = predictWith(model, cluster, dev, l, { ...inp, pipelineModel: 'formula' });
    tried.push(`v=${c.v} ${p.step_time_s.toFixed(3)} s${p.fits_in_memory ? '' : ' (does not fit)'}`);
    const better = !best || (p.fits_in_memory && !best.p.fits_in_memory) || (p.fits_in_memory === best.p.fits_in_memory && p.step_time_s < best.p.step_time_s);
    if (better) best = { p, v: c.v, schedule: c.schedule };
  }
  if (!best) throw new PredictError(inp.schedule === 'interleaved' ? `interleaved 1F1B needs the microbatch count m = ${lay.m} to be a multiple of pp = ${lay.pp}, and at least ${lay.pp}` : 'no pipeline schedule applies');
  const chosen = resolveLayout(model, { ...inp, vpp: best.v, schedule: best.schedule });
  const res = predictWith(model, cluster, dev, chosen, inp);
  res.notes.unshift(`--vpp not given: chose ${best.schedule}${best.v > 1 ? ` with v = ${best.v}` : ''} (closed-form step times: ${tried.join(', ')})`);
  return finite(res);
}

/** A prediction whose step time, throughput or memory is not a finite number is bad input, not an answer. */
function finite(p: Prediction): Prediction {
  for (const [k, v] of [['step time', p.step_time_s], ['MFU', p.mfu], ['memory', p.memory_gib_per_gpu]] as const) {
    if (typeof v === 'number' && !Number.isFinite(v)) {
      throw new PredictError(`the ${k} comes out as ${v}: the model, sequence or batch sizes are too large to model (a dimension, --seq or --global-batch)`);
    }
  }
  return p;
}

/** The model proper, on resolved inputs (the planner calls this directly). */
export function predictWith(model: ModelSpec, cluster: Cluster, dev: Device, lay: ReturnType<typeof resolveLayout>, inp: PredictInput): Prediction {
  const { tp, cp, pp, dp, ep, vpp: v, zero, microBatch: b, recompute, schedule, seq: s, globalBatch: B, m } = lay;
  const sp = lay.sequenceParallel;
  const attention = inp.attention ?? 'flash';
  const attentionFlops = inp.attentionFlops ?? 'causal';
  const gradBytes = inp.gradBytes ?? 4;
  const notes: string[] = [];
  const shape: LayerShape = { b, s, tp, cp, ep, sp, attention };
  const lc = layerCompute(model, shape, dev);
  const hc = headCompute(model, shape, dev);
  const collectives: CollectiveUse[] = [];
  const use = (g: Group, op: string, bytes: number, calls: number, exposedEach: number, t: { time: number; algo: string }) => {
    if (g.size <= 1 || calls <= 0) return;
    collectives.push({ group: g.dim, size: g.size, stride: g.stride, op, bytes, calls, algo: t.algo, links: g.crosses, time_s: t.time, exposed_s: exposedEach * calls });
  };

  // ---- per layer, per microbatch communication (exposed seconds)
  const S = (b * s) / cp; // local tokens
  const X = S * model.hidden * 2; // bytes of the b (s/cp) h activation
  const tpG = placeGroup(cluster, 'tp', tp, 1);
  let tpF = 0, tpB = 0, tpRecomp = 0;
  const layers = model.layers;
  const ovl = (c: number, g: number) => (inp.tpOverlap ? Math.max(0, c - g) : c);
  const callsPerLayer = m * layers / pp; // layer-microbatches of a rank with an even share (reporting)
  if (tp > 1) {
    if (sp) {
      const ag = collectiveTime(cluster, tpG, 'allgather', X), rs = collectiveTime(cluster, tpG, 'reducescatter', X);
      tpF = ovl(ag.time, lc.gemmFwd.qkv!) + ovl(rs.time, lc.gemmFwd.proj!) + ovl(ag.time, lc.gemmFwd.fc1!) + ovl(rs.time, lc.gemmFwd.fc2!);
      const regather = Math.max(0, ag.time - lc.gemmDgrad.qkv!) + Math.max(0, ag.time - lc.gemmDgrad.fc1!);
      tpB = ovl(ag.time, lc.gemmDgrad.proj!) + ovl(rs.time, lc.gemmDgrad.qkv!) + ovl(ag.time, lc.gemmDgrad.fc2!) + ovl(rs.time, lc.gemmDgrad.fc1!) + regather;
      const rc = recompute === 'full' ? 1 : 0;
      // all-gathers: 2 forward, 2 of output gradients and 2 input re-gathers backward; reduce-scatters 2 + 2
      use(tpG, 'allgather', X, callsPerLayer * (6 + 2 * rc), 0, ag);
      use(tpG, 'reducescatter', X, callsPerLayer * (4 + 2 * rc), 0, rs);
    } else {
      const ar = collectiveTime(cluster, tpG, 'allreduce', X);
      tpF = ovl(ar.time, lc.gemmFwd.proj!) + ovl(ar.time, lc.gemmFwd.fc2!);
      tpB = ovl(ar.time, lc.gemmDgrad.qkv!) + ovl(ar.time, lc.gemmDgrad.fc1!);
      use(tpG, 'allreduce', X, callsPerLayer * (4 + (recompute === 'full' ? 2 : 0)), 0, ar);
    }
    if (recompute === 'full') tpRecomp = tpF;
  }
  // the exposed share of TP per call, for the report (per layer-microbatch exposed / calls)
  const tpCalls = collectives.filter((c) => c.group === 'tp').reduce((x, c) => x + c.calls, 0);
  for (const c of collectives) if (c.group === 'tp' && tpCalls > 0) c.exposed_s = ((tpF + tpB + tpRecomp) * callsPerLayer) * (c.calls / tpCalls);

  const cpG = placeGroup(cluster, 'cp', cp, tp);
  let cpF = 0, cpB = 0;
  if (cp > 1) {
    const kvLocal = Math.max((model.kvHeads * (model.hidden / model.heads)) / tp, model.kvHeads < tp ? model.hidden / model.heads : 0);
    const kvBytes = 2 * S * kvLocal * 2;
    if ((inp.cpComm ?? 'ring') === 'ring') {
      const step = collectiveTime(cluster, cpG, 'sendrecv', kvBytes), step2 = collectiveTime(cluster, cpG, 'sendrecv', 2 * kvBytes);
      cpF = (cp - 1) * Math.max(0, step.time - lc.coreAttnFwd / cp);
      cpB = (cp - 1) * Math.max(0, step2.time - lc.coreAttnBwd / cp);
      use(cpG, 'sendrecv (K,V)', kvBytes, callsPerLayer * (cp - 1), cpF / (cp - 1), step);
      use(cpG, 'sendrecv (K,V,dK,dV)', 2 * kvBytes, callsPerLayer * (cp - 1), cpB / (cp - 1), step2);
    } else {
      const ag = collectiveTime(cluster, cpG, 'allgather', cp * kvBytes), rs = collectiveTime(cluster, cpG, 'reducescatter', cp * kvBytes);
      cpF = ag.time;
      cpB = rs.time;
      use(cpG, 'allgather (K,V)', cp * kvBytes, callsPerLayer, ag.time, ag);
      use(cpG, 'reducescatter (dK,dV)', cp * kvBytes, callsPerLayer, rs.time, rs);
    }
  }
  const epG = placeGroup(cluster, 'ep', ep, tp * cp * pp, 'alltoall');
  let epF = 0, epB = 0;
  if (ep > 1) {
    const bytes = (S / (sp ? tp : 1)) * (model.topK ?? 1) * model.hidden * 2;
    const a2a = collectiveTime(cluster, epG, 'alltoall', bytes);
    epF = 2 * a2a.time;
    epB = 2 * a2a.time;
    use(epG, 'alltoall', bytes, callsPerLayer * (4 + (recompute === 'full' ? 2 : 0)), a2a.time, a2a);
  }
  const full = recompute === 'full';
  // 'lean' activation memory (memory.ts): the backward recomputes the norm outputs and the MLP
  // activation, memory-bound; a full recompute re-runs the whole forward instead
  const act: ActivationShape = { b, s, tp, cp, sp, attention, store: lay.activationMemory };
  const la = layerActivationBytes(model, act);
  const leanRecomp = !full && la.recomputeBytes > 0 ? memTime(dev, la.recomputeBytes, la.recomputeKernels) : 0;
  const recompLayer = (full ? lc.fwd : recompute === 'selective' && attention === 'unfused' ? lc.coreAttnFwd : 0) + leanRecomp;
  if (recompute === 'selective' && attention === 'flash') notes.push('selective recompute with FlashAttention: nothing to recompute (the kernel already recomputes the scores in backward); same as none');
  // compute and communication apart (for the breakdown); the communication of a full recompute's
  // forward counts as communication
  const layerMb: PerMb = {
    fwd: lc.fwd, bwdI: lc.bwdInput, bwdW: lc.bwdWeight, recompute: recompLayer,
    tp: tpF + tpB + tpRecomp, cp: cpF + cpB + (full ? cpF : 0), ep: epF + epB + (full ? epF : 0),
  };
  // forward, and backward for inputs (with the recompute) as the schedule sees them
  const layerFwdTotal = lc.fwd + tpF + cpF + epF;
  const layerBwdITotal = lc.bwdInput + tpB + cpB + epB + recompLayer + (full ? tpRecomp + cpF + epF : 0);

  // ---- head / embedding extras (first and last pipeline ranks)
  let headTp = 0, embTp = 0;
  if (tp > 1) {
    if (sp) {
      const ag = collectiveTime(cluster, tpG, 'allgather', X), rs = collectiveTime(cluster, tpG, 'reducescatter', X);
      headTp = ag.time + rs.time;
      embTp = rs.time + ag.time;
    } else {
      const ar = collectiveTime(cluster, tpG, 'allreduce', X);
      headTp = ar.time;
      embTp = ar.time;
    }
    headTp += 3 * collectiveTime(cluster, tpG, 'allreduce', S * 4).time;
  }
  const headMb: PerMb = { fwd: hc.fwd, bwdI: hc.bwdInput, bwdW: hc.bwdWeight, recompute: 0, tp: headTp, cp: 0, ep: 0 };
  const embMb: PerMb = { fwd: hc.embFwd, bwdI: hc.embBwd, bwdW: 0, recompute: 0, tp: embTp, cp: 0, ep: 0 };
  // stage-to-stage messages travel as 1/t slices (Narayanan et al. 2021's scatter/gather
  // optimization); without sequence parallelism the receiver all-gathers them over the TP group
  const p2pGather = !sp && tp > 1 && pp > 1 ? collectiveTime(cluster, tpG, 'allgather', X).time : 0;

  // ---- layers per pipeline rank, rank classes; the output layer is on the rank of the last stage
  // (rank 0 for zb-v's V-shaped placement)
  const headRank = schedule === 'zb-v' ? 0 : pp - 1;
  const tLayer = sumMb(layerMb);
  const perRank = assignLayers(layers, pp, tLayer, sumMb(headMb), sumMb(embMb), headRank);
  const rankMb = (r: number): PerMb => {
    const n = perRank[r]!;
    const x: PerMb = { fwd: n * layerMb.fwd, bwdI: n * layerMb.bwdI, bwdW: n * layerMb.bwdW, recompute: n * layerMb.recompute, tp: n * layerMb.tp, cp: n * layerMb.cp, ep: n * layerMb.ep };
    const add = (y: PerMb) => { for (const k of Object.keys(x) as (keyof PerMb)[]) x[k] += y[k]; };
    if (r === 0) add(embMb);
    if (r === headRank) add(headMb);
    x.tp += 2 * v * p2pGather;
    return x;
  };
  const split = (r: number) => {
    const n = perRank[r]!;
    let f = n * layerFwdTotal + v * p2pGather, bi = n * layerBwdITotal + v * p2pGather, w = n * layerMb.bwdW;
    if (r === 0) { f += hc.embFwd + embTp / 2; bi += hc.embBwd + embTp / 2; }
    if (r === headRank) { f += hc.fwd + headTp / 2; bi += hc.bwdInput + headTp / 2; w += hc.bwdWeight; }
    return { f, bi, w };
  };
  let crit = 0;
  for (let r = 0; r < pp; r++) if (sumMb(rankMb(r)) > sumMb(rankMb(crit)) + 1e-15) crit = r;
  const critMb = rankMb(crit);
  const critSplit = split(crit);

  // ---- pipeline
  let makespan0: number, makespan: number, bubbleFraction = 0, method = 'none';
  const pipeTimes = { tF: critSplit.f / v, tB: critSplit.bi / v, tW: critSplit.w / v };
  const ppG = placeGroup(cluster, 'pp', pp, tp * cp);
  let sched: Schedule | undefined;
  let timeline: TimelineAction[][] | undefined;
  if (schedule === 'none') {
    makespan0 = makespan = m * (critSplit.f + critSplit.bi + critSplit.w);
  } else {
    const p2pBytes = X / tp;
    const link = neighbourLink(ppG);
    const tP2p = link.alpha + p2pBytes / link.bw;
    const mode = inp.pipelineModel ?? 'auto';
    const sim = mode === 'simulate' || (mode === 'auto' && pp * m * v <= PIPELINE_SIM_LIMIT);
    let done = false;
    if (sim) {
      try {
        sched = cachedSchedule(schedule, pp, m, v);
        const r0 = runSchedule(sched, { times: pipeTimes, validated: true });
        const r1 = runSchedule(sched, { times: pipeTimes, validated: true, p2pBytes, p2pLatency: link.alpha, linkBw: link.bw });
        makespan0 = r0.makespan;
        makespan = Math.max(r1.makespan, r0.makespan);
        if (inp.timeline) {
          timeline = r1.timeline.map((l) => l.map((a) => ({ kind: a.action.kind, stage: a.action.stage, microbatch: a.action.mb, start: a.start, end: a.end })));
        }
        bubbleFraction = r0.bubbleFraction;
        method = 'simulated schedule (parallelism/pipeline.ts runSchedule)';
        done = true;
      } catch (e) {
        notes.push(`pipeline simulation failed (${(e as Error).message}); closed form used`);
      }
    }
    if (!done) {
      const work = m * (critSplit.f + critSplit.bi + critSplit.w);
      if (schedule === 'zb-v') {
        // zbvIdle: the idle time per rank from the schedule's first 2p - 1 microbatches, exact for
        // any T_F, T_B, T_W (formulaBubble has zb-v only for equal times)
        const idle = zbvIdle(pp, pipeTimes, m);
        bubbleFraction = idle / work;
        makespan0 = work + idle;
        method = 'closed form (parallelism/pipeline.ts formulaBubble; zb-v: step.ts zbvIdle)';
      } else {
        bubbleFraction = formulaBubble(schedule, pp, m, v, pipeTimes)!;
        makespan0 = work * (1 + bubbleFraction);
        method = 'closed form (parallelism/pipeline.ts formulaBubble)';
      }
      makespan = makespan0 + 2 * (pp * v - 1) * tP2p;
    }
    use(ppG, 'sendrecv (stage to stage)', p2pBytes, 2 * m * v * (pp > 1 ? 1 : 0), (makespan! - makespan0!) / Math.max(1, 2 * m * v), { time: tP2p, algo: 'p2p' });
  }

  // ---- data parallelism
  const { dense: denseL, expert: expertL } = localLayerParamCounts(model, tp, ep);
  const embedLocal = Math.ceil(model.vocab / tp) * model.hidden;
  const rankParams = (r: number) => {
    let d = perRank[r]! * denseL;
    if (r === 0) d += embedLocal;
    if (r === headRank) d += (headRank === 0 && model.tiedEmbeddings ? 0 : embedLocal) + model.hidden;
    return { dense: d, expert: perRank[r]! * expertL };
  };
  const dpG = placeGroup(cluster, 'dp', dp, tp * cp * pp);
  const dpeG = placeGroup(cluster, 'dp-expert', dp / ep, tp * cp * pp * ep);
  const dpTime = (r: number, report: boolean) => {
    const { dense, expert } = rankParams(r);
    const sp2 = split(r);
    const bwdMb = sp2.bi + sp2.w, fwdMb = sp2.f;
    // rank r ends its last backward r chunk-backwards before rank 0 (the drain), and starts its
    // first forward r chunk-forwards after it
    const drain = schedule === 'none' ? 0 : r * ((critSplit.bi + critSplit.w) / v);
    let exposed = 0;
    const parts: { g: Group; op: string; bytes: number; calls: number; t: { time: number; algo: string }; exp: number }[] = [];
    for (const [g, P] of [[dpG, dense], [dpeG, expert]] as [Group, number][]) {
      if (g.size <= 1 || P <= 0) continue;
      const gradB = gradBytes * P, parB = 2 * P;
      if (zero === 0) {
        const ar = collectiveTime(cluster, g, 'allreduce', gradB);
        const e = Math.max(0, ar.time - bwdMb - drain);
        exposed += e;
        parts.push({ g, op: 'allreduce (grads)', bytes: gradB, calls: 1, t: ar, exp: e });
      } else if (zero === 1 || (zero === 3 && pp > 1)) {
        const rs = collectiveTime(cluster, g, 'reducescatter', gradB), ag = collectiveTime(cluster, g, 'allgather', parB);
        const e1 = Math.max(0, rs.time - bwdMb - drain), e2 = Math.max(0, ag.time - fwdMb - (schedule === 'none' ? 0 : r * critSplit.f / v));
        exposed += e1 + e2;
        parts.push({ g, op: 'reducescatter (grads)', bytes: gradB, calls: 1, t: rs, exp: e1 }, { g, op: 'allgather (params)', bytes: parB, calls: 1, t: ag, exp: e2 });
      } else if (zero === 2) {
        const rs = collectiveTime(cluster, g, 'reducescatter', gradB), ag = collectiveTime(cluster, g, 'allgather', parB);
        const e1 = m * Math.max(0, rs.time - bwdMb), e2 = Math.max(0, ag.time - fwdMb);
        exposed += e1 + e2;
        parts.push({ g, op: 'reducescatter (grads, every microbatch)', bytes: gradB, calls: m, t: rs, exp: e1 }, { g, op: 'allgather (params)', bytes: parB, calls: 1, t: ag, exp: e2 });
      } else {
        const rs = collectiveTime(cluster, g, 'reducescatter', gradB), ag = collectiveTime(cluster, g, 'allgather', parB);
        const e1 = m * Math.max(0, ag.time - fwdMb), e2 = m * Math.max(0, ag.time + rs.time - bwdMb);
        exposed += e1 + e2;
        parts.push({ g, op: 'allgather (params, forward)', bytes: parB, calls: m, t: ag, exp: e1 }, { g, op: 'allgather (params, backward)', bytes: parB, calls: m, t: ag, exp: 0 }, { g, op: 'reducescatter (grads)', bytes: gradB, calls: m, t: rs, exp: e2 });
      }
    }
    if (report) for (const q of parts) use(q.g, q.op, q.bytes, q.calls, q.exp / q.calls, q.t);
    return exposed;
  };
  let dpExposed = 0, dpRank = 0;
  for (const r of new Set([0, pp - 1, crit, headRank])) {
    const e = dpTime(r, false);
    if (e > dpExposed) { dpExposed = e; dpRank = r; }
  }
  dpTime(dpRank, true);

  // ---- optimizer (Adam, memory-bound over the local shard)
  let optTime = 0;
  {
    let worst = 0;
    for (const r of new Set([0, pp - 1, crit, headRank])) {
      const { dense, expert } = rankParams(r);
      const shard = zero >= 1 ? dense / dp + expert / (dp / ep) : dense + expert;
      worst = Math.max(worst, shard);
    }
    optTime = ((26 + gradBytes) * worst) / (E_HBM * dev.hbm) + 10 * T_LAUNCH;
  }

  const step = makespan! + dpExposed + optTime;
  const breakdown: Breakdown = {
    compute: m * (critMb.fwd + critMb.bwdI + critMb.bwdW),
    recompute: m * critMb.recompute,
    bubble: Math.max(0, makespan0! - m * sumMb(critMb)),
    tp: m * critMb.tp,
    cp: m * critMb.cp,
    ep: m * critMb.ep,
    pp: makespan! - makespan0!,
    dp: dpExposed,
    optimizer: optTime,
  };
  // makespan0 can be a hair below m * sum (rounding): fold the difference into compute
  const sumParts = Object.values(breakdown).reduce((x, y) => x + y, 0);
  breakdown.compute += step - sumParts;

  // ---- FLOPs, MFU
  const modelFlops = B * modelFlopsPerSequence(model, s, attentionFlops);
  let recompFlops = 0;
  if (recompute === 'full') recompFlops = B * model.layers * layerForwardFlopsPerSequence(model, s, attentionFlops);
  else if (recompute === 'selective' && attention === 'unfused') recompFlops = B * model.layers * coreAttentionForwardFlopsPerSequence(model, s, attentionFlops);
  const gpus = tp * cp * pp * dp;
  const peak = dev.peak;
  const mfu = modelFlops / (step * gpus * peak);
  const hfu = (modelFlops + recompFlops) / (step * gpus * peak);

  // ---- memory per rank: walk the schedule's actions (stageActivationPeak) with each stage's bytes
  const kept = keptActivationBytes(model, act, recompute);
  const nStages = schedule === 'none' ? 1 : pp * v;
  const lps = schedule === 'none' ? [layers] : stageLayers(schedule, perRank, v);
  const stageLayerBytes = lps.map((n) => n * kept);
  const stageBytes = stageLayerBytes.map((x, st) => x + stageExtraActivationBytes(model, act, st === 0, st === nStages - 1));
  if (!sched && schedule !== 'none' && pp * m * v <= MEMORY_WALK_LIMIT) sched = cachedSchedule(schedule, pp, m, v);
  const memOf = (r: number) => {
    let inf: number, peak: { total: number; layers: number } | undefined, layerMb: number;
    if (schedule === 'none') {
      inf = 1; layerMb = layers; peak = { total: stageBytes[0]!, layers: stageLayerBytes[0]! };
    } else if (sched) {
      const pk = stageActivationPeak(sched, r, stageBytes, stageLayerBytes, lps);
      inf = pk.chunks / v; layerMb = pk.layerMicrobatches; peak = pk;
    } else {
      inf = inflightFormula(schedule, pp, m, v, r); layerMb = perRank[r]! * inf;
    }
    const mem = stageMemory({
      model, layers: perRank[r]!, first: r === 0, last: r === headRank, tp, pp, dp, ep, zero, gradBytes, act, recompute, inflight: inf, peak,
    });
    return { mem, inf, layerMb };
  };
  // the ranks that can hold the peak: the first and the last, the output layer's, the critical one
  // and the first rank with the most layers (in-flight counts fall with the rank, or are flat)
  const maxLayers = Math.max(...perRank);
  const candidates = [...new Set([0, crit, headRank, pp - 1, perRank.indexOf(maxLayers)])].sort((x, y) => x - y);
  const mems = new Map(candidates.map((r) => [r, memOf(r)]));
  let memWorst = candidates[0]!;
  for (const r of candidates) if (mems.get(r)!.mem.total > mems.get(memWorst)!.mem.total + 1e-6) memWorst = r;
  const classes: RankClass[] = [];
  const ranks = pp === 1 ? [0] : [...new Set([0, crit, memWorst, headRank, pp - 1])].sort((x, y) => x - y);
  for (const r of ranks) {
    const { mem, inf, layerMb } = mems.get(r)!;
    const sp2 = split(r);
    const name = pp === 1 ? 'all ranks' : r === 0 ? 'first stage' : r === pp - 1 ? 'last stage' : `stage ${r}`;
    classes.push({
      name, rank: r, layers: perRank[r]!, fwd_s: sp2.f, bwd_input_s: sp2.bi, bwd_weight_s: sp2.w, inflight: inf, layer_microbatches: layerMb,
      memory_gib: { parameters: mem.parameters / GIB, gradients: mem.gradients / GIB, optimizer: mem.optimizer / GIB, activations: mem.activations / GIB, total: mem.total / GIB },
    });
  }
  const worstMem: MemoryBreakdown = mems.get(memWorst)!.mem;
  const wm = worstMem!;
  const usable = usableBytes(cluster.topo.data.memCapacity, cluster.gpu);
  const tokens = B * s;
  const layout: Layout = { tp, cp, pp, dp, ep, vpp: v, zero, sequenceParallel: sp, microBatch: b, recompute, schedule, activationMemory: lay.activationMemory };
  if (isMoe(model)) notes.push(`MoE: ${model.experts} experts, top-${model.topK ?? 1}; ${(modelParams(model).active / 1e9).toFixed(1)}B active of ${(modelParams(model).total / 1e9).toFixed(1)}B parameters`);
  return {
    model: model.name, gpu: cluster.gpu, gpus, cluster: cluster.name, cluster_description: cluster.description, layout, seq: s, global_batch: B, microbatches: m,
    step_time_s: step,
    tokens_per_s: tokens / step,
    tflops_per_gpu: modelFlops / step / gpus / 1e12,
    hardware_tflops_per_gpu: (modelFlops + recompFlops) / step / gpus / 1e12,
    mfu, hfu,
    memory_gib_per_gpu: wm.total / GIB,
    memory_capacity_gib: deviceCapacity(cluster.topo.data.memCapacity, cluster.gpu) / GIB,
    memory_usable_gib: usable / GIB,
    fits_in_memory: wm.total <= usable,
    breakdown_s: breakdown,
    memory_gib: {
      parameters: wm.parameters / GIB, gradients: wm.gradients / GIB, optimizer: wm.optimizer / GIB, activations: wm.activations / GIB,
      activations_layers: wm.activationsLayers / GIB, states_layers: wm.statesLayers / GIB, total: wm.total / GIB,
    },
    flops: {
      model_per_step: modelFlops, hardware_per_step: modelFlops + recompFlops,
      convention: `Megatron-LM: 12 B s L h^2 [(1 + g/a + s/(${attentionFlops === 'causal' ? '2h' : 'h'})) + f_eff/h + V/(2Lh)], ${attentionFlops} attention; recompute counted in hardware FLOPs only`,
    },
    pipeline: { schedule, stages: pp * v, chunks_per_rank: v, microbatches: m, bubble_fraction: bubbleFraction, method, layers_per_rank: perRank, ...(timeline ? { timeline } : {}) },
    rank_classes: classes,
    collectives,
    notes,
  };
}
