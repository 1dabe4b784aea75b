/**
 * Compute-time model: how long the kernels of one transformer layer take on one GPU.
 *
 * GEMMs (bf16 in, fp32 accumulate). A batch of c GEMMs of m x k times k x n (2mnk FLOPs each), run
 * as one kernel, takes
 *
 *   t = max(2mnk c / (e x S_gpu x peak), HBM bytes / (E_HBM x HBM bandwidth)) + T_launch
 *   e = E_gpu x q x k / (k + K0)
 *
 *  - q is tile and wave quantization: the outputs are cut into TM x TN tiles (128 x 256, the tile
 *    of the CUTLASS / cuBLAS kernels that large bf16 GEMMs use on Ampere and Hopper; 128 x 128 MXU
 *    passes on TPUs), the tiles run in waves of one per SM, so the useful work is c m n out of
 *    ceil(tiles / SMs) x SMs x TM x TN tile slots. Thin or ragged matrices lose here (h / t = 768,
 *    the 128-wide head dimension of unfused attention, a few tokens per expert).
 *  - k / (k + K0), K0 = 128: each tile pays a prologue and epilogue worth ~ two 64-deep k-steps, so a
 *    short reduction dimension is less efficient.
 *  - E_gpu: the large-GEMM ceiling, so that e(8192, 8192, 8192) equals the measured microbenchmark
 *    rate GEMM_CEILING: H100 0.80 (hardware.md: an 8192^3 bf16 matmul at 770-800 of 989 TFLOP/s);
 *    A100 0.87 (271.5 of 312 TFLOP/s, the maximum-achievable-matmul figure of the public
 *    ml-engineering notes; 2nd source); other GPUs and TPUs 0.80 (no measurement; H100's).
 *  - S_gpu, SUSTAINED: the fraction of the microbenchmark rate that a training run sustains over a
 *    whole step (clocks under sustained full power; communication kernels running concurrently take
 *    SMs: NCCL uses 8-32 SMs per collective; cache and memory contention with elementwise kernels).
 *    These are the FITTED constants of the model: ONE PARAMETER PER GPU KIND, each fitted to the
 *    published end-to-end runs on that GPU and then used for every layout. The tests of those runs
 *    (test/predict.test.ts) are therefore fit checks, not independent validation: one parameter
 *    absorbs the mean error of its rows; what the fit cannot absorb, and what the tests do check, is
 *    the spread between the rows (layouts, scales, context lengths) and the trends.
 *      A100 0.827: a minimax fit to the four A100 rows, Narayanan et al. 2021 (Megatron-LM GPT-3
 *                 175B on 1024 GPUs: 46.7% HFU predicted vs 44%) and Korthikanti et al. 2022 Table 5
 *                 (22B / 175B / 530B MFU: -1.2 / -2.6 / -1.8 points): the largest error is 2.7
 *                 points either way (0.84, the earlier mean fit, left GPT-3 175B at +3.2).
 *                 Narayanan et al.'s Table 1 (1.7B - 1T), whose micro-batch and interleaving are not
 *                 published, is not tested (with plausible choices it landed within -3.4 .. +0.9
 *                 points at 0.84; 0.827 lowers it by about 0.4);
 *      H100 0.74: fitted to the three Llama 3 405B runs (Table 4), the same rows the H100 test
 *                 checks: 45.1 / 41.9 / 35.9% vs 43 / 41 / 38% (minimax, +2.1 / +0.9 / -2.1). There
 *                 is no independent H100 end-to-end figure in calibration.md or hardware.md; the
 *                 one H100 measurement there (the 8192^3 GEMM at 770-800 TFLOP/s) is the
 *                 GEMM_CEILING above, not a training step.
 *    The H100's lower figure matches the common observation that H100 training sustains a smaller
 *    share of its (higher, 1.83 GHz boost-clock) peak than A100 training did; H200 takes the H100's
 *    (same chip and power); B200 and TPUs, without a published run to fit, 0.79 (between the two,
 *    unvalidated). A large GEMM on an H100 therefore runs at 0.80 x 0.74 = 59% of peak over a step,
 *    on an A100 at 0.87 x 0.827 = 72%.
 *
 * Attention (FlashAttention, the default): fused kernels whose executed FLOPs are the causal half
 * of the score matrix (4 s_q s_kv d per head forward, x 1/2 causal; the backward executes 2.5x the
 * forward: it recomputes the scores, 5 GEMMs to the forward's 2). Efficiency E_ATTN_FWD = 0.73 and
 * E_ATTN_BWD = 0.60 of peak at long sequences (FlashAttention-2 paper: forward up to 73% of A100
 * peak, backward up to ~63%; FlashAttention-3: up to 75% of H100 peak forward), x s_kv / (s_kv + 512)
 * for short key lengths, x S_gpu.
 * Unfused attention (`attention: 'unfused'`, Megatron-LM before FlashAttention, the setting of the
 * 2021-22 papers): two batched GEMMs per head (QK^T and AV over the full, non-causal square) priced
 * as GEMMs, plus a memory-bound scale-mask-softmax (and dropout) over the b a s^2 / t scores.
 *
 * Elementwise / memory-bound work (norms, residual adds, activation functions, dropout, the softmax
 * of unfused attention, MoE token permutation) is priced as HBM traffic at E_HBM = 0.90 of the HBM
 * bandwidth (hardware.md: device-to-device copy ~3.0 TB/s of 3.35 on an H100) plus T_launch = 4 us
 * per kernel. Forward traffic per token of a layer, bf16:
 *   norms 2 x (read h + write h); residual adds 2 x (read 2h + write h); dropout masks (1 byte)
 *   2 x h; activation: GeLU read f + write f, SwiGLU read 2f + write f; unfused softmax read +
 *   write of a s scores (+ dropout: read, write, 1-byte mask);
 * divided by t where TP splits the tensor (the residual-stream parts only with sequence
 * parallelism); backward is 2x forward. Weight-gradient GEMMs accumulate into fp32 main grads
 * (read + write, 8 bytes per output element, in their HBM term; Megatron's gradient-accumulation
 * fusion).
 */
import { PredictError } from './errors.js';
import { expertFfn, headDim, isMoe, kvDim, topK, type ModelSpec } from './models.js';

/** What the efficiency model needs to know about a GPU beyond runtime/hardware.ts. */
export interface ComputeUnits {
  /** SMs (TPU: MXUs) that GEMM tiles are spread over */
  units: number;
  tileM: number;
  tileN: number;
}

/** SM counts from the vendors' architecture documents; TPU: MXUs per chip (Google Cloud TPU docs). */
export const COMPUTE_UNITS: Record<string, ComputeUnits> = {
  a100: { units: 108, tileM: 128, tileN: 256 },
  h100: { units: 132, tileM: 128, tileN: 256 },
  h200: { units: 132, tileM: 128, tileN: 256 },
  b200: { units: 148, tileM: 128, tileN: 256 },
  'tpu-v4': { units: 8, tileM: 128, tileN: 128 },
  'tpu-v5p': { units: 8, tileM: 128, tileN: 128 },
  'tpu-v5e': { units: 4, tileM: 128, tileN: 128 },
  'tpu-v6e': { units: 8, tileM: 256, tileN: 256 },
};

/** big-GEMM microbenchmark fraction of peak, per GPU (see the header) */
export const GEMM_CEILING: Record<string, number> = {
  a100: 0.87, h100: 0.8, h200: 0.8, b200: 0.8, 'tpu-v4': 0.8, 'tpu-v5p': 0.8, 'tpu-v5e': 0.8, 'tpu-v6e': 0.8,
};
/** sustained fraction of the microbenchmark rate over a training step, per GPU: fitted, one per GPU kind (see the header) */
export const SUSTAINED: Record<string, number> = {
  a100: 0.827, h100: 0.74, h200: 0.74, b200: 0.79, 'tpu-v4': 0.79, 'tpu-v5p': 0.79, 'tpu-v5e': 0.79, 'tpu-v6e': 0.79,
};
export const K0 = 128;
export const E_ATTN_FWD = 0.73;
export const E_ATTN_BWD = 0.6;
export const ATTN_S0 = 512;
export const E_HBM = 0.9;
export const T_LAUNCH = 4e-6;

export interface Device {
  gpu: string;
  peak: number;
  hbm: number;
  cu: ComputeUnits;
  /** E_GEMM: shape-independent GEMM efficiency (the ceiling divided by its shape factors at 8192^3) */
  eGemm: number;
  /** sustained fraction in training */
  sustained: number;
}

export function deviceFor(gpu: string, peak: number, hbm: number): Device {
  const cu = COMPUTE_UNITS[gpu];
  if (!cu) throw new PredictError(`no compute profile for GPU '${gpu}' (known: ${Object.keys(COMPUTE_UNITS).join(', ')})`);
  const d: Device = { gpu, peak, hbm, cu, eGemm: 1, sustained: SUSTAINED[gpu]! };
  d.eGemm = GEMM_CEILING[gpu]! / gemmEfficiency(d, 8192, 8192, 8192);
  return d;
}

/**
 * Achieved fraction of peak of `batch` GEMMs of m x k by k x n run as one (batched) kernel: the
 * model in the header, before SUSTAINED. The tiles of all GEMMs of a batch share the waves.
 */
export function gemmEfficiency(d: Device, m: number, n: number, k: number, batch = 1): number {
  if (m <= 0 || n <= 0 || k <= 0) return 1;
  const { units, tileM, tileN } = d.cu;
  const tiles = batch * Math.ceil(m / tileM) * Math.ceil(n / tileN);
  const waves = Math.ceil(tiles / units);
  const q = (batch * m * n) / (waves * units * tileM * tileN);
  return d.eGemm * q * (k / (k + K0));
}

/**
 * Seconds for a batch of `count` GEMMs of m x k by k x n (one kernel). `outBytes` is the output's
 * HBM traffic per element: 2 (bf16 write), 8 for weight gradients accumulated into fp32 main grads
 * (read + write, Megatron's gradient-accumulation fusion).
 */
export function gemmTime(d: Device, m: number, n: number, k: number, count = 1, outBytes = 2): number {
  if (count <= 0 || m <= 0 || n <= 0 || k <= 0) return 0;
  const math = (2 * m * n * k * count) / (gemmEfficiency(d, m, n, k, count) * d.sustained * d.peak);
  const mem = (count * (2 * (m * k + k * n) + outBytes * m * n)) / (E_HBM * d.hbm);
  return Math.max(math, mem) + T_LAUNCH;
}

/** Seconds to stream `bytes` through HBM in `kernels` kernels. */
export function memTime(d: Device, bytes: number, kernels: number): number {
  return bytes / (E_HBM * d.hbm) + kernels * T_LAUNCH;
}

/** The layout facts the per-layer cost needs. */
export interface LayerShape {
  /** micro-batch size (sequences) */
  b: number;
  /** sequence length (whole sequence) */
  s: number;
  tp: number;
  cp: number;
  ep: number;
  sp: boolean;
  attention: 'flash' | 'unfused';
}

/** One GEMM of a layer: m x k by k x n, `count` of them; its backward is a dgrad and a wgrad GEMM. */
export interface Gemm {
  name: string;
  m: number;
  n: number;
  k: number;
  count: number;
}

/** Per layer, per microbatch, on one GPU: seconds of each part (no communication). */
export interface LayerCompute {
  /** forward: GEMMs, attention core, elementwise */
  fwd: number;
  /** backward for inputs (dgrad GEMMs, attention backward, elementwise backward) */
  bwdInput: number;
  /** backward for weights (wgrad GEMMs, fp32 gradient accumulation) */
  bwdWeight: number;
  /** the forward of the core attention alone (what selective recompute repeats) */
  coreAttnFwd: number;
  /** the backward of the core attention alone */
  coreAttnBwd: number;
  /** per-GEMM forward / dgrad times, for pairing with TP collectives when they overlap */
  gemmFwd: Record<string, number>;
  gemmDgrad: Record<string, number>;
  /** executed FLOPs (hardware work, forward + backward), for reporting */
  executedFlops: number;
  /** breakdown for reporting: seconds forward+backward */
  parts: { gemm: number; attention: number; elementwise: number };
}

/** The GEMMs of one layer's forward on one GPU (tokens T = b s / cp, gathered over TP with SP). */
export function layerGemms(m: ModelSpec, L: LayerShape): Gemm[] {
  const T = (L.b * L.s) / L.cp;
  const h = m.hidden, t = L.tp;
  const qkvN = (h + 2 * kvDim(m) * Math.max(1, m.kvHeads >= t ? 1 : t / m.kvHeads)) / t;
  const g: Gemm[] = [
    { name: 'qkv', m: T, n: qkvN, k: h, count: 1 },
    { name: 'proj', m: T, n: h, k: h / t, count: 1 },
  ];
  const mats = m.activation === 'swiglu' ? 2 : 1;
  if (isMoe(m)) {
    const E = m.experts!, k = topK(m), fe = expertFfn(m);
    const local = E / L.ep;
    const tokensPerExpert = (T * k * L.ep) / E;
    g.push({ name: 'router', m: T, n: E, k: h, count: 1 });
    g.push({ name: 'fc1', m: tokensPerExpert, n: (mats * fe) / t, k: h, count: local });
    g.push({ name: 'fc2', m: tokensPerExpert, n: h, k: fe / t, count: local });
  } else {
    g.push({ name: 'fc1', m: T, n: (mats * m.ffn) / t, k: h, count: 1 });
    g.push({ name: 'fc2', m: T, n: h, k: m.ffn / t, count: 1 });
  }
  return g;
}

export function layerCompute(m: ModelSpec, L: LayerShape, d: Device): LayerCompute {
  const gemms = layerGemms(m, L);
  const gemmFwd: Record<string, number> = {}, gemmDgrad: Record<string, number> = {};
  let fwd = 0, dgrad = 0, wgrad = 0, flops = 0;
  for (const g of gemms) {
    const f = gemmTime(d, g.m, g.n, g.k, g.count);
    const dg = gemmTime(d, g.m, g.k, g.n, g.count);
    const wg = gemmTime(d, g.k, g.n, g.m, g.count, 8);
    gemmFwd[g.name] = f;
    gemmDgrad[g.name] = dg;
    fwd += f; dgrad += dg; wgrad += wg;
    flops += 6 * g.m * g.n * g.k * g.count;
  }
  const gemmTotal = fwd + dgrad + wgrad;

  // core attention
  const heads = m.heads / L.tp, dh = headDim(m);
  const Tq = (L.b * L.s) / L.cp;
  let attnF = 0, attnB = 0, attnElemBytes = 0, attnKernels = 0;
  if (L.attention === 'flash') {
    // causal: on average a query sees half the keys (CP ranks hold load-balanced chunk pairs)
    const f = 4 * Tq * (L.s / 2) * dh * heads;
    const skv = L.s;
    const shortFactor = skv / (skv + ATTN_S0);
    attnF = f / (E_ATTN_FWD * shortFactor * d.sustained * d.peak) + T_LAUNCH;
    attnB = (2.5 * f) / (E_ATTN_BWD * shortFactor * d.sustained * d.peak) + T_LAUNCH;
    flops += 3.5 * f;
  } else {
    const batch = L.b * heads;
    const sq = L.s / L.cp, skv = L.s;
    // QK^T: sq x dh by dh x skv; AV: sq x skv by skv x dh (full square, masked afterwards)
    attnF = gemmTime(d, sq, skv, dh, batch) + gemmTime(d, sq, dh, skv, batch);
    attnB = gemmTime(d, sq, dh, skv, batch) + gemmTime(d, dh, skv, sq, batch) + gemmTime(d, sq, skv, dh, batch) + gemmTime(d, skv, dh, sq, batch);
    flops += 3 * 4 * sq * skv * dh * batch;
    // scale-mask-softmax (+ dropout) over b (a/t) sq skv scores, 2 bytes each
    const scores = batch * sq * skv;
    attnElemBytes = scores * (2 * 2 + (m.dropout ? 2 * 2 + 1 : 0));
    attnKernels = m.dropout ? 2 : 1;
  }
  const attnElemF = attnElemBytes > 0 ? memTime(d, attnElemBytes, attnKernels) : 0;
  const attnElemB = attnElemBytes > 0 ? memTime(d, 2 * attnElemBytes, 2 * attnKernels) : 0;

  // other elementwise traffic, forward, bytes per token (see the header)
  const h = m.hidden;
  const rr = L.sp ? L.tp : 1;
  const fe = isMoe(m) ? expertFfn(m) * topK(m) : m.ffn;
  const resid = (2 * (10 * h) + (m.dropout ? 2 * (h / 2) : 0)) / rr;
  const act = (m.activation === 'swiglu' ? 3 : 2) * 2 * (fe / L.tp);
  const permute = isMoe(m) ? 2 * 2 * 2 * h * topK(m) / rr : 0;
  const tokens = (L.b * L.s) / L.cp;
  const elemF = memTime(d, tokens * (resid + act + permute), isMoe(m) ? 8 : 6);
  const elemB = memTime(d, 2 * tokens * (resid + act + permute), isMoe(m) ? 16 : 12);

  const coreAttnFwd = attnF + attnElemF;
  const fwdT = fwd + coreAttnFwd + elemF;
  const bwdInput = dgrad + attnB + attnElemB + elemB;
  const bwdWeight = wgrad;
  return {
    fwd: fwdT, bwdInput, bwdWeight, coreAttnFwd, coreAttnBwd: attnB + attnElemB, gemmFwd, gemmDgrad, executedFlops: flops,
    parts: { gemm: gemmTotal, attention: attnF + attnB + attnElemF + attnElemB, elementwise: elemF + elemB },
  };
}

/**
 * The output layer on the last stage, per microbatch: logits GEMM (vocab-parallel, V / t columns),
 * its two backward GEMMs, and the fp32 softmax cross-entropy over b s V / t logits (read + write,
 * forward and backward); the final norm. The embedding lookup on the first stage is a gather of
 * b s h elements (and a scatter-add backward): memory-bound and small.
 */
export function headCompute(m: ModelSpec, L: LayerShape, d: Device): { fwd: number; bwdInput: number; bwdWeight: number; embFwd: number; embBwd: number; flops: number } {
  const T = (L.b * L.s) / L.cp;
  const v = Math.ceil(m.vocab / L.tp);
  const h = m.hidden;
  const f = gemmTime(d, T, v, h);
  const dg = gemmTime(d, T, h, v);
  const wg = gemmTime(d, h, v, T, 1, 8);
  const logits = T * v * 4;
  const ce = memTime(d, 3 * logits, 2);
  const norm = memTime(d, (4 * h * T) / (L.sp ? L.tp : 1), 1);
  const emb = memTime(d, (4 * h * T) / (L.sp ? L.tp : 1), 1);
  return { fwd: f + ce + norm, bwdInput: dg + ce + 2 * norm, bwdWeight: wg, embFwd: emb, embBwd: 2 * emb, flops: 6 * T * v * h };
}
