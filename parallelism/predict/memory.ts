/**
 * Memory per GPU (formulas.md "Memory"; Korthikanti et al. 2022).
 *
 * Model states, bytes per local parameter, mixed precision with Adam: bf16 parameters (2), fp32 main
 * gradients (g = 4, Megatron-LM's default and Llama 3's FP32 gradients; `gradBytes: 2` gives the
 * ZeRO paper's 16-byte accounting), optimizer 12 (fp32 master copy, Adam m and v). ZeRO / FSDP over
 * the d data-parallel ranks that hold the same parameters:
 *   0: 2 + g + 12;  1: 2 + g + 12/d;  2: 2 + (g + 12)/d;  3: (2 + g + 12)/d
 * (with g = 2 these are formulas.md's 16, 4 + 12/d, 2 + 14/d, 16/d). ZeRO-3 with pipeline
 * parallelism keeps the stage's parameters and gradients unsharded for the whole step (FSDP
 * "reshard_after_forward = False", as Llama 3 and torchtitan do with PP), so it needs ZeRO-1's
 * memory; without PP it holds two layers unsharded at a time (the one computing, the prefetched one).
 * Expert parameters are sharded over EP and data-parallel over d / ep.
 *
 * Activations per layer and microbatch, bytes, on one GPU (Korthikanti et al. 2022 sec. 4, 16-bit),
 * with S = b s / cp local tokens, X = S h, f the FFN size, kv the K/V width, a the heads:
 *   replicated across TP unless sequence parallel (then / t):
 *     two norm inputs 4X, QKV input 2X, MLP input 2X, dropout masks 2 x X/2 x 2 (if dropout)
 *   split by TP (/ t): Q 2X, K and V 2 S kv each, attention-output projection input 2X,
 *     MLP: GeLU input and output 2 x 2 S f; SwiGLU gate, up and product 3 x 2 S f;
 *     MoE: the same per routed copy (x top_k) plus the permuted inputs 2 X top_k;
 *     core attention: unfused: softmax 2, dropout mask 1, dropout output 2 bytes per score,
 *     a b (s / cp) s scores (the 5 a s^2 b term); FlashAttention: none (it keeps only the
 *     fp32 log-sum-exp, 4 a S bytes, and recomputes the scores in backward).
 * For GPT (f = 4h, kv = h, dropout, unfused) this is Korthikanti's sbh (10 + 24/t + 5as/(ht)) (TP),
 * sbh/t (34 + 5as/h) (TP + SP). Selective recompute drops the core-attention terms (34 sbh/t with
 * SP); full recompute keeps the layer input only, 2X (/ t with SP), plus one layer's full set while
 * it is recomputed and back-propagated.
 * In flight: a pipeline rank holds its chunks' activations for every (stage, microbatch) whose
 * forward has run and whose input-gradient backward has not, peakInflight() of the actual schedule:
 * 1F1B stage 0 min(m, p) microbatches of L/p layers, interleaved p (1 + (p-1)/(p v)) (formulas.md).
 * Without PP a GPU holds one microbatch (gradient accumulation runs them one after another).
 * First stage: the embedding's dropout mask per microbatch in flight (if dropout); last stage: the
 * final norm input, the output layer's input and the fp32 logits (4 S V / t) of its microbatch.
 *
 * Reported in GiB (2^30 bytes), as Korthikanti et al. A GPU "fits" when the total is at most its HBM
 * less 2 GiB for the CUDA context, NCCL buffers and library workspaces, and 5% for allocator
 * fragmentation (both estimates).
 */
import { headDim, isMoe, expertFfn, kvDim, layerParams, topK, type ModelSpec } from './models.js';

export const GIB = 2 ** 30;
export const RESERVED_BYTES = 2 * GIB;
export const FRAGMENTATION = 0.05;

export interface ActivationShape {
  b: number;
  s: number;
  tp: number;
  cp: number;
  sp: boolean;
  attention: 'flash' | 'unfused';
}

/** Activation bytes of one layer for one microbatch: all of them, and the core-attention part. */
export function layerActivationBytes(m: ModelSpec, a: ActivationShape): { all: number; coreAttention: number; input: number } {
  const S = (a.b * a.s) / a.cp;
  const X = S * m.hidden;
  const t = a.tp;
  const rr = a.sp ? t : 1;
  const drop = m.dropout ? 1 : 0;
  const repl = (8 * X + drop * 2 * X) / rr;
  const kvLocal = Math.max(kvDim(m) / t, m.kvHeads < t ? headDim(m) : 0);
  const attn = 2 * X / t + 2 * 2 * S * kvLocal + 2 * X / t;
  const mlpPer = (m.activation === 'swiglu' ? 6 : 4) * S;
  const mlp = isMoe(m) ? (mlpPer * expertFfn(m) * topK(m) + 2 * X * topK(m)) / t : (mlpPer * m.ffn) / t;
  const headsLocal = m.heads / t;
  const core = a.attention === 'unfused'
    ? (2 + drop * 3) * headsLocal * a.b * (a.s / a.cp) * a.s
    : 4 * headsLocal * S;
  return { all: repl + attn + mlp + core, coreAttention: core, input: (2 * X) / rr };
}

/** Activation bytes one layer keeps per microbatch in flight, by recompute policy. */
export function keptActivationBytes(m: ModelSpec, a: ActivationShape, recompute: 'none' | 'selective' | 'full'): number {
  const l = layerActivationBytes(m, a);
  if (recompute === 'full') return l.input;
  if (recompute === 'selective') return a.attention === 'unfused' ? l.all - l.coreAttention : l.all;
  return l.all;
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

  const kept = keptActivationBytes(m, x.act, x.recompute);
  const activationsLayers = x.layers * kept * x.inflight;
  let activations = activationsLayers;
  if (x.recompute === 'full' && x.layers > 0) activations += layerActivationBytes(m, x.act).all;
  const S = (x.act.b * x.act.s) / x.act.cp;
  const rr = x.act.sp ? x.tp : 1;
  if (x.first && m.dropout) activations += ((S * m.hidden) / rr) * Math.max(1, Math.ceil(x.inflight));
  if (x.last) activations += (4 * S * m.hidden) / rr + 4 * S * Math.ceil(m.vocab / x.tp);
  const total = parameters + gradients + optimizer + activations;
  return { parameters, gradients, optimizer, activations, activationsLayers, statesLayers, total };
}

/** Usable bytes of a GPU with `hbm` bytes (see the header). */
export const usableBytes = (hbm: number) => hbm * (1 - FRAGMENTATION) - RESERVED_BYTES;
