/**
 * Memory per GPU (formulas.md "Memory"; Korthikanti et al. 2022).
 *
 * MODEL STATES, bytes per local parameter, mixed precision with Adam: bf16 parameters (2), fp32 main
 * gradients (g = 4, Megatron-LM's default and Llama 3's "FP32 gradient accumulation ... over multiple
 * micro-batches"; `gradBytes: 2` gives the ZeRO paper's 16-byte accounting), optimizer 12 (fp32
 * master copy, Adam m and v). ZeRO / FSDP over the d data-parallel ranks that hold the same
 * parameters:
 *   0: 2 + g + 12;  1: 2 + g + 12/d;  2: 2 + (g + 12)/d;  3: (2 + g + 12)/d
 * (with g = 2 these are formulas.md's 16, 4 + 12/d, 2 + 14/d, 16/d). Under ZeRO-1 the fp32 master
 * weights and both Adam moments are sharded over d; the fp32 gradients are not: they accumulate over
 * the microbatches of the step and are reduce-scattered once at its end (sharding them is ZeRO-2,
 * which reduce-scatters after every microbatch). ZeRO-3 with pipeline parallelism keeps the stage's
 * parameters and gradients unsharded for the whole step (FSDP "reshard_after_forward = False", as
 * Llama 3 and torchtitan do with PP), so it needs ZeRO-1's memory; without PP it holds two layers
 * unsharded at a time (the one computing, the prefetched one). Expert parameters are sharded over
 * EP and data-parallel over d / ep.
 *
 * ACTIVATIONS per layer and microbatch, bytes, on one GPU (Korthikanti et al. 2022 sec. 4, 16-bit),
 * with S = b s / cp local tokens, X = S h, f the FFN size, kv the K/V width, a the heads. Which
 * tensors are kept depends on three switches, each documented where it is set:
 *  - model.dropout (models.ts; GPT-3 trained with dropout, Llama does not): the 1-byte masks of the
 *    attention-output, MLP-output (and, unfused, attention-probability) dropouts;
 *  - attention ('flash' | 'unfused', PredictInput.attention): whether the a b (s/cp) s score
 *    matrix is stored (unfused, 2 bytes softmax output + 1 mask + 2 dropout output per score: the
 *    5 a s^2 b term) or not (FlashAttention keeps only its fp32 log-sum-exp, 4 a S bytes, and
 *    recomputes the scores in backward);
 *  - activationMemory ('megatron' | 'lean', PredictInput.activationMemory), which copies of the
 *    pointwise chains between the GEMMs are kept:
 *      'megatron' (default): every op keeps the inputs its backward reads, as Megatron-LM and
 *        TransformerEngine's eager kernels do and as Korthikanti et al. count: each norm keeps its
 *        input AND the following GEMM keeps the norm's output; GeLU keeps its input and fc2 its
 *        output; SwiGLU keeps gate and up and fc2 the product.
 *      'lean': one tensor per pointwise chain: a norm keeps its input and the backward recomputes
 *        its output for the GEMM's weight gradient; the MLP
 *        keeps the fc1 output and recomputes the activation (GeLU output, SwiGLU silu(gate) x up)
 *        for fc2's weight gradient. This is what a compiled backward does (torch.compile's min-cut
 *        rematerialization partitioner recomputes pointwise ops by default), and the effect of
 *        Megatron-LM's --memory-efficient-layer-norm plus its selective recompute of the
 *        activation function. The recomputation is memory-bound elementwise work, priced in
 *        step.ts (leanRecomputeTime). Llama 3 405B at 8K needs it: under 'megatron' the three
 *        Table 4 layouts need 88 / 82 / 86 GiB per GPU, more than the 79.1 GiB an H100 has at all,
 *        although the paper trained them without activation checkpointing (and says it frees the
 *        input tensor of each pipeline stage: with one layer per stage that is the first norm's
 *        input, which 'megatron' keeps).
 *   Per layer (bytes; / t: split by TP; / r: r = t with sequence parallelism, else 1):
 *     residual stream (/ r): norm inputs 2 x 2X; 'megatron' also the QKV and fc1 inputs 2 x 2X;
 *       dropout masks 2 x X (if dropout);
 *     attention (/ t): Q 2X, K and V 2 S kv each, the projection input 2X (= FlashAttention's
 *       saved output), core attention as above;
 *     MLP (/ t): GeLU: fc1 output 2 S f, 'megatron' also the GeLU output 2 S f; SwiGLU: gate and up
 *       2 x 2 S f, 'megatron' also the product 2 S f; MoE: the same per routed copy (x top_k) plus
 *       the permuted inputs 2 X top_k.
 *   For GPT (f = 4h, kv = h, dropout, unfused, 'megatron') this is Korthikanti's
 *   sbh (10 + 24/t + 5as/(ht)) (TP), sbh/t (34 + 5as/h) (TP + SP). Selective recompute drops the
 *   core-attention terms (34 sbh/t with SP; nothing with FlashAttention); full recompute keeps the
 *   layer input only, 2X / r, plus one layer's full set while it is recomputed and back-propagated.
 *
 * IN FLIGHT: a pipeline rank holds, for every (stage, microbatch) whose forward has run and whose
 * backward has not released it, that stage's activations (step.ts walks the schedule's actions:
 * stageActivationPeak). A stage's activations are its layers' plus, on the first stage, the
 * embedding's dropout mask (if dropout) and, on the stage with the output layer, the final norm
 * input, the output layer's input and the fp32 logits (4 S V / t). Schedules that split the
 * backward (zb-h1, zb-v) release a microbatch at its weight-gradient step W (the weight gradients
 * read the GEMM inputs), the others at the backward. This gives formulas.md's counts on equal
 * stages: 1F1B stage 0 min(m, p) microbatches of L/p layers, interleaved p (1 + (p-1)/(p v)); and
 * follows Llama 3's balancing (the first chunk of the first stage holds only the embedding, the last
 * chunk of the last stage only the output layer), which the stage-0 formula over-counts. Without PP
 * a GPU holds one microbatch (gradient accumulation runs them one after another).
 *
 * USABLE memory: the capacity a CUDA process sees (cudaMemGetInfo's total, PyTorch's "total
 * capacity"), less 2 GiB for the CUDA context, NCCL's communication buffers and library workspaces
 * (an estimate: NCCL keeps ~4 MiB per protocol, channel and peer for each communicator, and a
 * Llama-style layout has TP, CP, PP and DP communicators), less 5% of the capacity for the caching
 * allocator's fragmentation (an estimate). The capacity: runtime/hardware.ts lists the vendors'
 * "80 GB" as 80e9 bytes, but HBM is built from 2^k-byte dies and an "80 GB" H100 has 80 GiB, of
 * which CUDA exposes 79.11 GiB (PyTorch's out-of-memory message on an H100 80GB HBM3: "GPU 0 has a
 * total capacity of 79.11 GiB", vLLM issue #27508; NVML reports 81,559 MiB = 79.65 GiB, Modal's
 * "Why does an NVIDIA H100 80GB card offer 85.52 GB?"). DEVICE_VISIBLE_BYTES holds these figures;
 * a cluster whose capacity differs from the preset's (a JSON file's memoryCapacity_GB) is taken as
 * given. H100: 79.11 x 0.95 - 2 = 73.2 GiB usable (the earlier 68.8 GiB took 80e9 bytes = 74.5 GiB
 * as the capacity). Reported in GiB (2^30 bytes), as Korthikanti et al.
 */
import { HARDWARE } from '../../runtime/hardware.js';
import { headDim, isMoe, expertFfn, kvDim, layerParams, topK, type ModelSpec } from './models.js';

export const GIB = 2 ** 30;
export const RESERVED_BYTES = 2 * GIB;
export const FRAGMENTATION = 0.05;

export type ActivationMemory = 'megatron' | 'lean';
export const ACTIVATION_MEMORY: readonly ActivationMemory[] = ['megatron', 'lean'];

/**
 * Device memory a CUDA process sees as its total, where it differs from runtime/hardware.ts's
 * nominal (decimal) HBM figure (see the header):
 *  - h100: 79.11 GiB (PyTorch OOM message on an H100 80GB HBM3, vLLM issue #27508; NVML 81,559 MiB);
 *  - a100: 79.25 GiB (PyTorch OOM message on an A100 80GB, OOTDiffusion issue #235; NVML 81,920 MiB
 *    = 80 GiB, Modal's GPU memory table);
 *  - h200: 139.86 GiB (derived: NVML's 143,771 MiB = 140.40 GiB, Modal's table, less the 0.54 GiB
 *    by which CUDA's total is below NVML's on the H100).
 * Other devices (B200, TPUs): the hardware.ts figure (no measurement here).
 */
export const DEVICE_VISIBLE_BYTES: Record<string, number> = {
  h100: 79.11 * GIB,
  a100: 79.25 * GIB,
  h200: 139.86 * GIB,
};

/** The memory a process can address on a GPU of kind `gpu` whose cluster lists `capacity` bytes. */
export function deviceCapacity(capacity: number, gpu?: string): number {
  const hw = gpu ? HARDWARE[gpu] : undefined;
  const visible = gpu ? DEVICE_VISIBLE_BYTES[gpu] : undefined;
  return hw && visible !== undefined && capacity === hw.hbmBytes ? visible : capacity;
}

/** Usable bytes of a GPU (see the header): capacity less fragmentation and the reserved 2 GiB. */
export const usableBytes = (capacity: number, gpu?: string) => deviceCapacity(capacity, gpu) * (1 - FRAGMENTATION) - RESERVED_BYTES;

export interface ActivationShape {
  b: number;
  s: number;
  tp: number;
  cp: number;
  sp: boolean;
  attention: 'flash' | 'unfused';
  /** which copies of the pointwise chains are kept (header); default 'megatron' */
  store?: ActivationMemory;
}

export interface LayerActivations {
  /** everything one layer keeps for one microbatch without recompute */
  all: number;
  /** the core-attention part (what selective recompute drops) */
  coreAttention: number;
  /** the layer input (what full recompute keeps) */
  input: number;
  /** 'lean': HBM bytes the backward reads and writes to recompute the dropped tensors, and kernels */
  recomputeBytes: number;
  recomputeKernels: number;
}

/** Activation bytes of one layer for one microbatch (the header's accounting). */
export function layerActivationBytes(m: ModelSpec, a: ActivationShape): LayerActivations {
  const S = (a.b * a.s) / a.cp;
  const X = S * m.hidden;
  const t = a.tp;
  const rr = a.sp ? t : 1;
  const drop = m.dropout ? 1 : 0;
  const lean = a.store === 'lean';
  // norm inputs (2 x 2X), the GEMM inputs after the norms (2 x 2X, 'megatron' only), dropout masks
  const repl = ((lean ? 4 : 8) * X + drop * 2 * X) / rr;
  const kvLocal = Math.max(kvDim(m) / t, m.kvHeads < t ? headDim(m) : 0);
  const attn = 2 * X / t + 2 * 2 * S * kvLocal + 2 * X / t;
  // per FFN column: GeLU input (+ output), SwiGLU gate and up (+ product), 2 bytes each
  const swiglu = m.activation === 'swiglu';
  const mlpPer = (swiglu ? (lean ? 4 : 6) : lean ? 2 : 4) * S;
  const f = isMoe(m) ? expertFfn(m) * topK(m) : m.ffn;
  const mlp = isMoe(m) ? (mlpPer * f + 2 * X * topK(m)) / t : (mlpPer * f) / t;
  const headsLocal = m.heads / t;
  const core = a.attention === 'unfused'
    ? (2 + drop * 3) * headsLocal * a.b * (a.s / a.cp) * a.s
    : 4 * headsLocal * S;
  // lean recompute in backward: each norm reads its input and writes its output (2 x (2X + 2X) / r);
  // the activation reads the fc1 output and writes its own (GeLU 2 + 2, SwiGLU 4 + 2 bytes per column)
  const recomputeBytes = lean ? (2 * 4 * X) / rr + ((swiglu ? 6 : 4) * S * f) / t : 0;
  return { all: repl + attn + mlp + core, coreAttention: core, input: (2 * X) / rr, recomputeBytes, recomputeKernels: lean ? 3 : 0 };
}

/** Activation bytes one layer keeps per microbatch in flight, by recompute policy. */
export function keptActivationBytes(m: ModelSpec, a: ActivationShape, recompute: 'none' | 'selective' | 'full'): number {
  const l = layerActivationBytes(m, a);
  if (recompute === 'full') return l.input;
  if (recompute === 'selective') return a.attention === 'unfused' ? l.all - l.coreAttention : l.all;
  return l.all;
}

/**
 * Activation bytes per microbatch of the non-layer parts of a stage: the embedding's dropout mask
 * on the first stage (if dropout); on the stage with the output layer the final norm input, the
 * output layer's input and the fp32 logits (4 S V / t).
 */
export function stageExtraActivationBytes(m: ModelSpec, a: ActivationShape, first: boolean, last: boolean): number {
  const S = (a.b * a.s) / a.cp;
  const rr = a.sp ? a.tp : 1;
  let x = 0;
  if (first && m.dropout) x += (S * m.hidden) / rr;
  if (last) x += (4 * S * m.hidden) / rr + 4 * S * Math.ceil(m.vocab / a.tp);
  return x;
}

/** Parameters of one layer on one GPU: dense (replicated over all of DP) and expert (over DP / EP). */
export function localLayerParamCounts(m: ModelSpec, tp: number, ep: number): { dense: number; expert: number } {
  const lp = layerParams(m);
  const dense = (lp.attention + lp.mlp) / tp + lp.norms + lp.router;
  const expert = lp.experts / tp / ep;
  return { dense, expert };
}

export interface MemoryBreakdown {
  /** bytes per GPU */
  parameters: number;
  gradients: number;
  optimizer: number;
  activations: number;
  /** activations of the transformer layers alone (Korthikanti's figure) */
  activationsLayers: number;
  /** model states of the transformer layers alone (params + grads + optimizer) */
  statesLayers: number;
  total: number;
}

export interface StageMemoryInput {
  model: ModelSpec;
  /** transformer layers on this pipeline rank */
  layers: number;
  /** holds the embedding / the output layer */
  first: boolean;
  last: boolean;
  tp: number;
  pp: number;
  dp: number;
  ep: number;
  zero: 0 | 1 | 2 | 3;
  gradBytes: number;
  act: ActivationShape;
  recompute: 'none' | 'selective' | 'full';
  /** microbatches (in units of this rank's whole share of layers) in flight at this rank's peak */
  inflight: number;
  /**
   * The rank's activation peak from its schedule (step.ts stageActivationPeak), bytes: in all, and
   * of the transformer layers alone. Without it: layers x kept x inflight, plus the stage extras for
   * ceil(inflight) (embedding) and one (output layer) microbatches.
   */
  peak?: { total: number; layers: number };
}

export function stageMemory(x: StageMemoryInput): MemoryBreakdown {
  const m = x.model;
  const { dense, expert } = localLayerParamCounts(m, x.tp, x.ep);
  const embed = (Math.ceil(m.vocab / x.tp) * m.hidden);
  let denseP = x.layers * dense;
  const layerDense = denseP, layerExpert = x.layers * expert;
  if (x.first) denseP += embed;
  if (x.last && (!m.tiedEmbeddings || !x.first)) denseP += embed + m.hidden;
  const expertP = layerExpert;
  const dpE = Math.max(1, x.dp / x.ep);
  const g = x.gradBytes;
  const states = (p: number, d: number) => {
    const z3pp = x.zero === 3 && x.pp > 1;
    const zero = z3pp ? 1 : x.zero;
    const par = zero === 3 ? (2 * p) / d : 2 * p;
    const grad = zero >= 2 ? (g * p) / d : g * p;
    const opt = zero >= 1 ? (12 * p) / d : 12 * p;
    return { par, grad, opt };
  };
  const sd = states(denseP, x.dp), se = states(expertP, dpE);
  let parameters = sd.par + se.par;
  if (x.zero === 3 && x.pp === 1) parameters += 2 * 2 * (dense + expert); // two layers gathered
  const gradients = sd.grad + se.grad;
  const optimizer = sd.opt + se.opt;
  const ld = states(layerDense, x.dp), le = states(layerExpert, dpE);
  const statesLayers = ld.par + ld.grad + ld.opt + le.par + le.grad + le.opt;

  let activationsLayers: number, activations: number;
  if (x.peak) {
    activationsLayers = x.peak.layers;
    activations = x.peak.total;
  } else {
    activationsLayers = x.layers * keptActivationBytes(m, x.act, x.recompute) * x.inflight;
    activations = activationsLayers;
    if (x.first) activations += stageExtraActivationBytes(m, x.act, true, false) * Math.max(1, Math.ceil(x.inflight));
    if (x.last) activations += stageExtraActivationBytes(m, x.act, false, true);
  }
  // full recompute: one layer's whole set while it is recomputed and back-propagated
  if (x.recompute === 'full' && x.layers > 0) activations += layerActivationBytes(m, x.act).all;
  const total = parameters + gradients + optimizer + activations;
  return { parameters, gradients, optimizer, activations, activationsLayers, statesLayers, total };
}

