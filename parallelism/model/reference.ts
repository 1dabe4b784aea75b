/**
 * The serial single-rank reference of the small Llama-style transformer: deterministic parameter
 * init, deterministic synthetic data, forward + backward built only from the kernels in
 * ./kernels.ts (through runKernel), an optimizer step and a training loop. Every parallel strategy
 * is compared against this.
 *
 * Layout: a batch is B sequences of S = cfg.seq tokens, flattened to T = B·S rows; linear layers run
 * on all T rows at once, RoPE and attention run per sequence (positions 0..S−1, causal, no
 * attention across sequences). Weights are stored [out, in] and applied as y = x·Wᵀ, i.e.
 * matmul(x, W, y; T, out, in, 0, 1, 0). Loss = mean cross-entropy over all B·S tokens.
 *
 * The forward and backward are written as separate per-block steps (embedding; per layer the
 * attention block and the MLP block; the head with the loss), in the order the parallel strategies
 * mirror:
 *   embedding → per layer: attn_norm → q,k,v proj → rope → attention → wo → residual add →
 *   mlp_norm → gate/up → swiglu → down (or the MoE MLP) → residual add → final_norm → lm_head → xent
 */
import { headDim, moeCapacity, type ModelConfig } from './config.js';
import { runKernel } from './kernels.js';

export type Params = Map<string, Float32Array>;

export interface ParamSpec {
  name: string;
  shape: number[];
}

const f32 = (n: number) => new Float32Array(n);
const K = runKernel;

// ------------------------------------------------------------------------------------ PRNG

/** 32-bit FNV-1a over the parts (numbers as 32-bit words, strings as UTF-16 code units). */
export function hash32(...parts: (number | string)[]): number {
  let h = 0x811c9dc5;
  const mix = (x: number) => {
    h ^= x & 0xff;
    h = Math.imul(h, 0x01000193);
    h ^= (x >>> 8) & 0xff;
    h = Math.imul(h, 0x01000193);
    h ^= (x >>> 16) & 0xff;
    h = Math.imul(h, 0x01000193);
    h ^= (x >>> 24) & 0xff;
    h = Math.imul(h, 0x01000193);
  };
  for (const p of parts) {
    if (typeof p === 'number') mix(p | 0);
    else for (let i = 0; i < p.length; i++) mix(p.charCodeAt(i));
    mix(0x9e3779b9); // separator
  }
  return h >>> 0;
}

/** mulberry32: a small deterministic PRNG; returns uniform floats in [0, 1) (multiples of 2^-32). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ------------------------------------------------------------------------------------ params

/** Parameter names and shapes, in the fixed order used everywhere (init, optimizer, checkpoints). */
export function paramShapes(cfg: ModelConfig): ParamSpec[] {
  const { vocab: V, hidden: h, ffn: f } = cfg;
  const hd = headDim(cfg);
  const qd = cfg.heads * hd;
  const kvd = cfg.kvHeads * hd;
  const out: ParamSpec[] = [{ name: 'tok_emb', shape: [V, h] }];
  for (let i = 0; i < cfg.layers; i++) {
    const p = `layers.${i}.`;
    out.push(
      { name: p + 'attn_norm', shape: [h] },
      { name: p + 'wq', shape: [qd, h] },
      { name: p + 'wk', shape: [kvd, h] },
      { name: p + 'wv', shape: [kvd, h] },
      { name: p + 'wo', shape: [h, qd] },
      { name: p + 'mlp_norm', shape: [h] },
    );
    if (cfg.moe) {
      const E = cfg.moe.experts;
      out.push(
        { name: p + 'router', shape: [E, h] },
        { name: p + 'w_gate', shape: [E, f, h] },
        { name: p + 'w_up', shape: [E, f, h] },
        { name: p + 'w_down', shape: [E, h, f] },
      );
    } else {
      out.push({ name: p + 'w_gate', shape: [f, h] }, { name: p + 'w_up', shape: [f, h] }, { name: p + 'w_down', shape: [h, f] });
    }
  }
  out.push({ name: 'final_norm', shape: [h] }, { name: 'lm_head', shape: [V, h] });
  return out;
}

export const numel = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/**
 * Deterministic init. Each tensor has its own PRNG stream seeded by hash(seed, name), so a tensor's
 * values do not depend on the other tensors. Norm weights are 1; every other weight is
 * std·(u1+u2+u3+u4−2)·sqrt(3) (Irwin–Hall, unit variance, exact arithmetic) with std = 1 for
 * tok_emb, 1/sqrt(fan_in) for q, k, v, gate, up, router and lm_head, and 1/sqrt(fan_in·2·layers)
 * for the residual-branch outputs wo and w_down.
 */
export function initParams(cfg: ModelConfig, seed: number): Params {
  const params: Params = new Map();
  for (const { name, shape } of paramShapes(cfg)) {
    const a = f32(numel(shape));
    if (name.endsWith('norm')) a.fill(1);
    else {
      const fanIn = shape[shape.length - 1]!;
      let std = name === 'tok_emb' ? 1 : 1 / Math.sqrt(fanIn);
      if (name.endsWith('.wo') || name.endsWith('.w_down')) std /= Math.sqrt(2 * cfg.layers);
      const rng = mulberry32(hash32(seed, 'init', name));
      const k = std * Math.sqrt(3);
      for (let i = 0; i < a.length; i++) a[i] = (rng() + rng() + rng() + rng() - 2) * k;
    }
    params.set(name, a);
  }
  return params;
}

/** Fresh zero tensors with the parameters' names and shapes. */
export function zerosLike(cfg: ModelConfig): Params {
  return new Map(paramShapes(cfg).map(({ name, shape }) => [name, f32(numel(shape))]));
}

// ------------------------------------------------------------------------------------ data

/**
 * Deterministic synthetic data: `batch` sequences of cfg.seq tokens (rows first .. first+batch−1 of
 * the step's global batch; each sequence depends only on (seed, step, its global index), so a
 * data-parallel rank can make just its slice). Each sequence is an arithmetic progression mod vocab
 * with a random start and a random stride in 1..4, where each token is independently replaced by a
 * uniformly random token with probability 0.1 (the progression continues underneath). targets are
 * the next tokens (the sequence is generated one token longer). Learnable: the stride can be read
 * from the context.
 */
export function makeBatch(cfg: ModelConfig, seed: number, step: number, batch: number, first = 0): { tokens: Float32Array; targets: Float32Array } {
  const S = cfg.seq;
  const V = cfg.vocab;
  const tokens = f32(batch * S);
  const targets = f32(batch * S);
  const x = new Array<number>(S + 1);
  for (let b = 0; b < batch; b++) {
    const rng = mulberry32(hash32(seed, 'data', step, first + b));
    const start = Math.floor(rng() * V);
    const stride = 1 + Math.floor(rng() * 4);
    for (let t = 0; t <= S; t++) {
      const noisy = rng() < 0.1;
      const r = Math.floor(rng() * V);
      x[t] = noisy ? r : (start + stride * t) % V;
    }
    for (let t = 0; t < S; t++) {
      tokens[b * S + t] = x[t]!;
      targets[b * S + t] = x[t + 1]!;
    }
  }
  return { tokens, targets };
}

// ------------------------------------------------------------------------------------ blocks

/** Model dimensions used by the blocks. */
export interface Dims {
  B: number;
  S: number;
  T: number;
  h: number;
  V: number;
  nq: number;
  nkv: number;
  hd: number;
  qd: number;
  kvd: number;
  f: number;
}

export function dims(cfg: ModelConfig, batch: number): Dims {
  const hd = headDim(cfg);
  return {
    B: batch, S: cfg.seq, T: batch * cfg.seq, h: cfg.hidden, V: cfg.vocab, nq: cfg.heads, nkv: cfg.kvHeads, hd,
    qd: cfg.heads * hd, kvd: cfg.kvHeads * hd, f: cfg.ffn,
  };
}

const P = (params: Params, name: string): Float32Array => {
  const p = params.get(name);
  if (!p) throw new Error(`missing parameter '${name}'`);
  return p;
};

/** y[T, out] = x[T, in] · W[out, in]ᵀ */
const linear = (x: Float32Array, W: Float32Array, y: Float32Array, T: number, out: number, inn: number, beta = 0) =>
  K('matmul', [x, W, y], [T, out, inn, 0, 1, beta]);
/** dx[T, in] (=, or += with beta 1) dy[T, out] · W[out, in] */
const linearBwdData = (dy: Float32Array, W: Float32Array, dx: Float32Array, T: number, out: number, inn: number, beta = 0) =>
  K('matmul', [dy, W, dx], [T, inn, out, 0, 0, beta]);
/** dW[out, in] (=, or += with beta 1) dy[T, out]ᵀ · x[T, in] */
const linearBwdWeight = (dy: Float32Array, x: Float32Array, dW: Float32Array, T: number, out: number, inn: number, beta = 0) =>
  K('matmul', [dy, x, dW], [out, inn, T, 1, 0, beta]);

/** embedding: x[T,h] = tok_emb[tokens] */
export function embedForward(d: Dims, params: Params, tokens: Float32Array): Float32Array {
  const x = f32(d.T * d.h);
  K('embed_fwd', [tokens, P(params, 'tok_emb'), x], [d.T, d.h, 0, d.V]);
  return x;
}
export function embedBackward(d: Dims, grads: Params, tokens: Float32Array, dx: Float32Array): void {
  K('embed_bwd', [tokens, dx, P(grads, 'tok_emb')], [d.T, d.h, 0, d.V]);
}

/** Saved activations of one attention block. */
export interface AttnActs {
  xIn: Float32Array;
  xn: Float32Array;
  rstd: Float32Array;
  /** q, k after RoPE */
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  o: Float32Array;
  lse: Float32Array;
}

/** attention block: returns xMid = xIn + wo(attention(rope(q), rope(k), v)) and the saved activations */
export function attnForward(cfg: ModelConfig, d: Dims, params: Params, layer: number, xIn: Float32Array): { xMid: Float32Array; acts: AttnActs } {
  const pre = `layers.${layer}.`;
  const { T, S, B, h, nq, nkv, hd, qd, kvd } = d;
  // attn_norm
  const xn = f32(T * h);
  const rstd = f32(T);
  K('rmsnorm_fwd', [xIn, P(params, pre + 'attn_norm'), xn, rstd], [T, h, cfg.normEps]);
  // q, k, v projections
  const q = f32(T * qd);
  const k = f32(T * kvd);
  const v = f32(T * kvd);
  linear(xn, P(params, pre + 'wq'), q, T, qd, h);
  linear(xn, P(params, pre + 'wk'), k, T, kvd, h);
  linear(xn, P(params, pre + 'wv'), v, T, kvd, h);
  // rope and attention, per sequence
  const o = f32(T * qd);
  const lse = f32(T * nq);
  for (let b = 0; b < B; b++) {
    const qb = q.subarray(b * S * qd, (b + 1) * S * qd);
    const kb = k.subarray(b * S * kvd, (b + 1) * S * kvd);
    const vb = v.subarray(b * S * kvd, (b + 1) * S * kvd);
    K('rope_fwd', [qb], [S, nq, hd, 0, cfg.ropeTheta]);
    K('rope_fwd', [kb], [S, nkv, hd, 0, cfg.ropeTheta]);
    K('attn_fwd', [qb, kb, vb, o.subarray(b * S * qd, (b + 1) * S * qd), lse.subarray(b * S * nq, (b + 1) * S * nq)], [S, S, nq, nkv, hd, 0, 0, 1]);
  }
  // output projection and residual add
  const xMid = f32(T * h);
  linear(o, P(params, pre + 'wo'), xMid, T, h, qd);
  K('add', [xIn, xMid], [T * h]);
  return { xMid, acts: { xIn, xn, rstd, q, k, v, o, lse } };
}

/** attention block backward: given dxMid, returns dxIn; accumulates the block's weight gradients */
export function attnBackward(cfg: ModelConfig, d: Dims, params: Params, grads: Params, layer: number, a: AttnActs, dxMid: Float32Array): Float32Array {
  const pre = `layers.${layer}.`;
  const { T, S, B, h, nq, nkv, hd, qd, kvd } = d;
  // wo
  const dO = f32(T * qd);
  linearBwdData(dxMid, P(params, pre + 'wo'), dO, T, h, qd);
  linearBwdWeight(dxMid, a.o, P(grads, pre + 'wo'), T, h, qd);
  // attention and rope, per sequence
  const D = f32(T * nq);
  K('attn_bwd_prep', [a.o, dO, D], [T, nq, hd]);
  const dq = f32(T * qd);
  const dk = f32(T * kvd);
  const dv = f32(T * kvd);
  for (let b = 0; b < B; b++) {
    const qs = (x: Float32Array) => x.subarray(b * S * qd, (b + 1) * S * qd);
    const ks = (x: Float32Array) => x.subarray(b * S * kvd, (b + 1) * S * kvd);
    const rs = (x: Float32Array) => x.subarray(b * S * nq, (b + 1) * S * nq);
    K('attn_bwd', [qs(a.q), ks(a.k), ks(a.v), qs(dO), rs(a.lse), rs(D), qs(dq), ks(dk), ks(dv)], [S, S, nq, nkv, hd, 0, 0, 1]);
    K('rope_bwd', [qs(dq)], [S, nq, hd, 0, cfg.ropeTheta]);
    K('rope_bwd', [ks(dk)], [S, nkv, hd, 0, cfg.ropeTheta]);
  }
  // q, k, v projections
  const dxn = f32(T * h);
  linearBwdData(dq, P(params, pre + 'wq'), dxn, T, qd, h);
  linearBwdData(dk, P(params, pre + 'wk'), dxn, T, kvd, h, 1);
  linearBwdData(dv, P(params, pre + 'wv'), dxn, T, kvd, h, 1);
  linearBwdWeight(dq, a.xn, P(grads, pre + 'wq'), T, qd, h);
  linearBwdWeight(dk, a.xn, P(grads, pre + 'wk'), T, kvd, h);
  linearBwdWeight(dv, a.xn, P(grads, pre + 'wv'), T, kvd, h);
  // attn_norm, then the residual: dxIn = dxMid + rmsnorm_bwd(dxn)
  const dxIn = f32(T * h);
  K('rmsnorm_bwd', [a.xIn, P(params, pre + 'attn_norm'), a.rstd, dxn, dxIn, P(grads, pre + 'attn_norm')], [T, h]);
  K('add', [dxMid, dxIn], [T * h]);
  return dxIn;
}

/** Saved activations of one MLP block (dense, or MoE when `moe` is set). */
export interface MlpActs {
  xMid: Float32Array;
  xn: Float32Array;
  rstd: Float32Array;
  /** dense: [T, f]; MoE: per slot row [E·G·C, f] */
  gate: Float32Array;
  up: Float32Array;
  act: Float32Array;
  moe?: MoeActs;
}
export interface MoeActs {
  probs: Float32Array;
  idx: Float32Array;
  gates: Float32Array;
  slot: Float32Array;
  /** dispatched inputs [E·G·C, h] and expert outputs [E·G·C, h] */
  buf: Float32Array;
  ybuf: Float32Array;
  /** rows per expert (G·C) and total slot rows (E·G·C) */
  rows: number;
  nSlots: number;
}

/** MLP block: returns xOut = xMid + mlp(rmsnorm(xMid)) and the saved activations */
export function mlpForward(cfg: ModelConfig, d: Dims, params: Params, layer: number, xMid: Float32Array): { xOut: Float32Array; acts: MlpActs } {
  const pre = `layers.${layer}.`;
  const { T, h, f } = d;
  const xn = f32(T * h);
  const rstd = f32(T);
  K('rmsnorm_fwd', [xMid, P(params, pre + 'mlp_norm'), xn, rstd], [T, h, cfg.normEps]);
  const xOut = f32(T * h);
  if (cfg.moe) {
    const { gate, up, act, moe } = moeForward(cfg, d, params, layer, xn, xOut);
    K('add', [xMid, xOut], [T * h]);
    return { xOut, acts: { xMid, xn, rstd, gate, up, act, moe } };
  }
  const gate = f32(T * f);
  const up = f32(T * f);
  const act = f32(T * f);
  linear(xn, P(params, pre + 'w_gate'), gate, T, f, h);
  linear(xn, P(params, pre + 'w_up'), up, T, f, h);
  K('swiglu_fwd', [gate, up, act], [T * f]);
  linear(act, P(params, pre + 'w_down'), xOut, T, h, f);
  K('add', [xMid, xOut], [T * h]);
  return { xOut, acts: { xMid, xn, rstd, gate, up, act } };
}

/**
 * MoE MLP forward on xn [T,h] into y [T,h]: router logits = xn·routerᵀ; router_fwd (top-k, capacity
 * C = moeCapacity(cfg) per expert per sequence, G = B groups); moe_dispatch into slot rows
 * [E, B·C, h]; each expert e runs a SwiGLU MLP on its B·C rows (empty rows are zero and stay zero);
 * moe_combine back to tokens weighted by the gates. No auxiliary load-balancing loss.
 */
function moeForward(cfg: ModelConfig, d: Dims, params: Params, layer: number, xn: Float32Array, y: Float32Array) {
  const pre = `layers.${layer}.`;
  const { T, h, f, B } = d;
  const { experts: E, topk } = cfg.moe!;
  const C = moeCapacity(cfg);
  const rows = B * C;
  const nSlots = E * rows;
  const logits = f32(T * E);
  linear(xn, P(params, pre + 'router'), logits, T, E, h);
  const probs = f32(T * E);
  const idx = f32(T * topk);
  const gates = f32(T * topk);
  const slot = f32(T * topk);
  K('router_fwd', [logits, probs, idx, gates, slot], [T, E, topk, C, B]);
  const buf = f32(nSlots * h);
  K('moe_dispatch', [xn, slot, buf], [T, h, topk, nSlots]);
  const gate = f32(nSlots * f);
  const up = f32(nSlots * f);
  const act = f32(nSlots * f);
  const ybuf = f32(nSlots * h);
  const Wg = P(params, pre + 'w_gate');
  const Wu = P(params, pre + 'w_up');
  const Wd = P(params, pre + 'w_down');
  for (let e = 0; e < E; e++) {
    const rh = (x: Float32Array) => x.subarray(e * rows * h, (e + 1) * rows * h);
    const rf = (x: Float32Array) => x.subarray(e * rows * f, (e + 1) * rows * f);
    const w = (x: Float32Array) => x.subarray(e * f * h, (e + 1) * f * h);
    linear(rh(buf), w(Wg), rf(gate), rows, f, h);
    linear(rh(buf), w(Wu), rf(up), rows, f, h);
    K('swiglu_fwd', [rf(gate), rf(up), rf(act)], [rows * f]);
    linear(rf(act), w(Wd), rh(ybuf), rows, h, f);
  }
  K('moe_combine', [ybuf, slot, gates, y], [T, h, topk, nSlots]);
  return { gate, up, act, moe: { probs, idx, gates, slot, buf, ybuf, rows, nSlots } };
}

/** MLP block backward: given dxOut, returns dxMid; accumulates the block's weight gradients */
export function mlpBackward(cfg: ModelConfig, d: Dims, params: Params, grads: Params, layer: number, a: MlpActs, dxOut: Float32Array): Float32Array {
  const pre = `layers.${layer}.`;
  const { T, h, f } = d;
  const dxn = f32(T * h);
  if (a.moe) moeBackward(cfg, d, params, grads, layer, a, dxOut, dxn);
  else {
    const dact = f32(T * f);
    linearBwdData(dxOut, P(params, pre + 'w_down'), dact, T, h, f);
    linearBwdWeight(dxOut, a.act, P(grads, pre + 'w_down'), T, h, f);
    const dgate = f32(T * f);
    const dup = f32(T * f);
    K('swiglu_bwd', [a.gate, a.up, dact, dgate, dup], [T * f]);
    linearBwdData(dgate, P(params, pre + 'w_gate'), dxn, T, f, h);
    linearBwdData(dup, P(params, pre + 'w_up'), dxn, T, f, h, 1);
    linearBwdWeight(dgate, a.xn, P(grads, pre + 'w_gate'), T, f, h);
    linearBwdWeight(dup, a.xn, P(grads, pre + 'w_up'), T, f, h);
  }
  // mlp_norm, then the residual: dxMid = dxOut + rmsnorm_bwd(dxn)
  const dxMid = f32(T * h);
  K('rmsnorm_bwd', [a.xMid, P(params, pre + 'mlp_norm'), a.rstd, dxn, dxMid, P(grads, pre + 'mlp_norm')], [T, h]);
  K('add', [dxOut, dxMid], [T * h]);
  return dxMid;
}

function moeBackward(cfg: ModelConfig, d: Dims, params: Params, grads: Params, layer: number, a: MlpActs, dy: Float32Array, dxn: Float32Array): void {
  const pre = `layers.${layer}.`;
  const { T, h, f } = d;
  const { experts: E, topk } = cfg.moe!;
  const m = a.moe!;
  const { rows, nSlots } = m;
  const dybuf = f32(nSlots * h);
  const dgates = f32(T * topk);
  K('moe_combine_bwd', [m.ybuf, m.slot, m.gates, dy, dybuf, dgates], [T, h, topk, nSlots]);
  const dbuf = f32(nSlots * h);
  const dact = f32(nSlots * f);
  const dgate = f32(nSlots * f);
  const dup = f32(nSlots * f);
  const Wg = P(params, pre + 'w_gate');
  const Wu = P(params, pre + 'w_up');
  const Wd = P(params, pre + 'w_down');
  const gWg = P(grads, pre + 'w_gate');
  const gWu = P(grads, pre + 'w_up');
  const gWd = P(grads, pre + 'w_down');
  for (let e = 0; e < E; e++) {
    const rh = (x: Float32Array) => x.subarray(e * rows * h, (e + 1) * rows * h);
    const rf = (x: Float32Array) => x.subarray(e * rows * f, (e + 1) * rows * f);
    const w = (x: Float32Array) => x.subarray(e * f * h, (e + 1) * f * h);
    linearBwdData(rh(dybuf), w(Wd), rf(dact), rows, h, f);
    linearBwdWeight(rh(dybuf), rf(a.act), w(gWd), rows, h, f);
    K('swiglu_bwd', [rf(a.gate), rf(a.up), rf(dact), rf(dgate), rf(dup)], [rows * f]);
    linearBwdData(rf(dgate), w(Wg), rh(dbuf), rows, f, h);
    linearBwdData(rf(dup), w(Wu), rh(dbuf), rows, f, h, 1);
    linearBwdWeight(rf(dgate), rh(m.buf), w(gWg), rows, f, h);
    linearBwdWeight(rf(dup), rh(m.buf), w(gWu), rows, f, h);
  }
  K('moe_dispatch_bwd', [dbuf, m.slot, dxn], [T, h, topk, nSlots]);
  const dlogits = f32(T * E);
  K('router_bwd', [m.probs, m.idx, dgates, dlogits], [T, E, topk]);
  linearBwdData(dlogits, P(params, pre + 'router'), dxn, T, E, h, 1);
  linearBwdWeight(dlogits, a.xn, P(grads, pre + 'router'), T, E, h);
}

/** Saved activations of the head (final norm, lm_head, loss). */
export interface HeadActs {
  x: Float32Array;
  xn: Float32Array;
  rstd: Float32Array;
  dlogits: Float32Array;
}

/** head: final_norm → lm_head → xent (scale = 1/T). Returns the loss and the saved activations (incl. dlogits). */
export function headForward(cfg: ModelConfig, d: Dims, params: Params, x: Float32Array, targets: Float32Array): { loss: number; acts: HeadActs } {
  const { T, h, V } = d;
  const xn = f32(T * h);
  const rstd = f32(T);
  K('rmsnorm_fwd', [x, P(params, 'final_norm'), xn, rstd], [T, h, cfg.normEps]);
  const logits = f32(T * V);
  linear(xn, P(params, 'lm_head'), logits, T, V, h);
  const loss = f32(1);
  // dlogits overwrite the logits (documented alias of xent)
  K('xent', [logits, targets, logits, loss], [T, V, 1 / T]);
  return { loss: loss[0]!, acts: { x, xn, rstd, dlogits: logits } };
}

/** head backward: returns dx (gradient of the residual stream entering final_norm) */
export function headBackward(d: Dims, params: Params, grads: Params, a: HeadActs): Float32Array {
  const { T, h, V } = d;
  const dxn = f32(T * h);
  linearBwdData(a.dlogits, P(params, 'lm_head'), dxn, T, V, h);
  linearBwdWeight(a.dlogits, a.xn, P(grads, 'lm_head'), T, V, h);
  const dx = f32(T * h);
  K('rmsnorm_bwd', [a.x, P(params, 'final_norm'), a.rstd, dxn, dx, P(grads, 'final_norm')], [T, h]);
  return dx;
}

// ------------------------------------------------------------------------------------ forward + backward

/**
 * Loss (mean cross-entropy over batch·seq tokens, as float32) and gradients of all parameters
 * (fresh zero-initialized tensors, same names and shapes as params) for one batch of `batch`
 * sequences; tokens and targets are [batch, seq].
 */
export function forwardBackward(cfg: ModelConfig, params: Params, tokens: Float32Array, targets: Float32Array, batch: number): { loss: number; grads: Params } {
  const d = dims(cfg, batch);
  if (tokens.length !== d.T || targets.length !== d.T) {
    throw new Error(`forwardBackward: tokens and targets must have batch·seq = ${d.T} elements, got ${tokens.length} and ${targets.length}`);
  }
  const grads = zerosLike(cfg);
  // forward
  let x = embedForward(d, params, tokens);
  const attnActs: AttnActs[] = [];
  const mlpActs: MlpActs[] = [];
  for (let l = 0; l < cfg.layers; l++) {
    const at = attnForward(cfg, d, params, l, x);
    attnActs.push(at.acts);
    const ml = mlpForward(cfg, d, params, l, at.xMid);
    mlpActs.push(ml.acts);
    x = ml.xOut;
  }
  const head = headForward(cfg, d, params, x, targets);
  // backward
  let dx = headBackward(d, params, grads, head.acts);
  for (let l = cfg.layers - 1; l >= 0; l--) {
    dx = mlpBackward(cfg, d, params, grads, l, mlpActs[l]!, dx);
    dx = attnBackward(cfg, d, params, grads, l, attnActs[l]!, dx);
  }
  embedBackward(d, grads, tokens, dx);
  return { loss: head.loss, grads };
}

// ------------------------------------------------------------------------------------ optimizer and training

export type OptimizerConfig =
  | { kind: 'sgd'; lr: number }
  | { kind: 'adam'; lr: number; beta1?: number; beta2?: number; eps?: number; weightDecay?: number };

export interface OptimizerState {
  /** steps taken so far */
  step: number;
  /** Adam moments (empty for SGD) */
  m: Params;
  v: Params;
}

export function createOptimizerState(cfg: ModelConfig, opt: OptimizerConfig): OptimizerState {
  return opt.kind === 'adam' ? { step: 0, m: zerosLike(cfg), v: zerosLike(cfg) } : { step: 0, m: new Map(), v: new Map() };
}

/** Adam defaults: beta1 0.9, beta2 0.999, eps 1e-8, weightDecay 0. */
export function adamParams(opt: Extract<OptimizerConfig, { kind: 'adam' }>, n: number, step: number): number[] {
  return [n, opt.lr, opt.beta1 ?? 0.9, opt.beta2 ?? 0.999, opt.eps ?? 1e-8, step, opt.weightDecay ?? 0];
}

/** One optimizer step over every parameter (sgd or adam kernel), in paramShapes order. */
export function optimizerStep(cfg: ModelConfig, params: Params, grads: Params, state: OptimizerState, opt: OptimizerConfig): void {
  state.step++;
  for (const { name } of paramShapes(cfg)) {
    const p = P(params, name);
    const g = P(grads, name);
    if (opt.kind === 'sgd') K('sgd', [p, g], [p.length, opt.lr]);
    else K('adam', [p, g, P(state.m, name), P(state.v, name)], adamParams(opt, p.length, state.step));
  }
}

export interface TrainOptions {
  steps: number;
  /** sequences per step */
  batch: number;
  optimizer: OptimizerConfig;
  /** seed of the data (makeBatch); defaults to the init seed */
  dataSeed?: number;
}

/** Serial training from initParams(cfg, seed) on makeBatch(cfg, dataSeed, step, batch) data. */
export function trainSerial(cfg: ModelConfig, seed: number, opts: TrainOptions): { losses: number[]; params: Params } {
  const params = initParams(cfg, seed);
  const state = createOptimizerState(cfg, opts.optimizer);
  const losses: number[] = [];
  for (let step = 0; step < opts.steps; step++) {
    const { tokens, targets } = makeBatch(cfg, opts.dataSeed ?? seed, step, opts.batch);
    const { loss, grads } = forwardBackward(cfg, params, tokens, targets, opts.batch);
    losses.push(loss);
    optimizerStep(cfg, params, grads, state, opts.optimizer);
  }
  return { losses, params };
}
