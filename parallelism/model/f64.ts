/**
 * An independent, naive float64 implementation of the model's forward loss, for checking the
 * kernel-based reference (./reference.ts): plain loops over number arrays, no kernels, no shared
 * helpers. Same model: embedding; per layer RMSNorm → GQA attention with RoPE (rotate-half pairing:
 * d with d + hd/2, angle pos·theta^(−2d/hd)), causal within each sequence → wo → residual →
 * RMSNorm → SwiGLU MLP (or top-k MoE with per-sequence capacity) → residual; final RMSNorm;
 * lm_head; mean cross-entropy over all tokens.
 *
 * Params may be float32 or float64 arrays (finite differences perturb float64 copies).
 */
import type { ModelConfig } from './config.js';

export type ParamsLike = Map<string, ArrayLike<number>>;

type Mat = number[][]; // [rows][cols]

function get(params: ParamsLike, name: string): ArrayLike<number> {
  const p = params.get(name);
  if (!p) throw new Error(`f64: missing parameter '${name}'`);
  return p;
}

/** W stored [out, in] starting at element `off`; returns x·Wᵀ */
function lin(x: Mat, W: ArrayLike<number>, out: number, inn: number, off = 0): Mat {
  return x.map((row) => {
    const y = new Array<number>(out).fill(0);
    for (let o = 0; o < out; o++) {
      let s = 0;
      for (let i = 0; i < inn; i++) s += row[i]! * W[off + o * inn + i]!;
      y[o] = s;
    }
    return y;
  });
}

function rmsnorm(x: Mat, w: ArrayLike<number>, eps: number): Mat {
  return x.map((row) => {
    let ms = 0;
    for (const v of row) ms += v * v;
    ms /= row.length;
    const r = 1 / Math.sqrt(ms + eps);
    return row.map((v, i) => v * r * w[i]!);
  });
}

/** rotate each head's vector of a [S][nHeads·hd] matrix; row s has position s */
function ropeRows(x: Mat, nHeads: number, hd: number, theta: number): Mat {
  const half = hd / 2;
  return x.map((row, pos) => {
    const y = row.slice();
    for (let hh = 0; hh < nHeads; hh++) {
      for (let i = 0; i < half; i++) {
        const ang = pos / Math.pow(theta, (2 * i) / hd);
        const a = row[hh * hd + i]!;
        const b = row[hh * hd + half + i]!;
        y[hh * hd + i] = a * Math.cos(ang) - b * Math.sin(ang);
        y[hh * hd + half + i] = b * Math.cos(ang) + a * Math.sin(ang);
      }
    }
    return y;
  });
}

const silu = (g: number) => g / (1 + Math.exp(-g));

function swigluMlp(x: Mat, Wg: ArrayLike<number>, Wu: ArrayLike<number>, Wd: ArrayLike<number>, h: number, f: number, offIn = 0, offOut = 0): Mat {
  const g = lin(x, Wg, f, h, offIn);
  const u = lin(x, Wu, f, h, offIn);
  const a = g.map((row, t) => row.map((v, j) => silu(v) * u[t]![j]!));
  return lin(a, Wd, h, f, offOut);
}

/**
 * Top-k MoE for the tokens of ONE sequence (the routing group): softmax router, top-k with ties to the
 * lower expert index, gates = the chosen probabilities (not renormalized), capacity C per expert
 * filled by choice rank first, then token order; overflowing choices are dropped.
 */
function moeMlp(cfg: ModelConfig, params: ParamsLike, pre: string, x: Mat): Mat {
  const { experts: E, topk, capacityFactor } = cfg.moe!;
  const h = cfg.hidden;
  const f = cfg.ffn;
  const C = Math.max(1, Math.ceil((capacityFactor * cfg.seq * topk) / E - 1e-9));
  const logits = lin(x, get(params, pre + 'router'), E, h);
  const choices = logits.map((row) => {
    const mx = Math.max(...row);
    const ex = row.map((v) => Math.exp(v - mx));
    const sum = ex.reduce((a, b) => a + b, 0);
    const p = ex.map((v) => v / sum);
    // rank by the float32-rounded probabilities (what the kernel stores and compares)
    const p32 = p.map((v) => Math.fround(v));
    const order = p.map((_, e) => e).sort((a, b) => p32[b]! - p32[a]! || a - b);
    return order.slice(0, topk).map((e) => ({ e, gate: p[e]! }));
  });
  const used = new Array<number>(E).fill(0);
  const kept: boolean[][] = choices.map((c) => c.map(() => false));
  for (let j = 0; j < topk; j++) {
    for (let t = 0; t < x.length; t++) {
      const e = choices[t]![j]!.e;
      if (used[e]! < C) {
        used[e]!++;
        kept[t]![j] = true;
      }
    }
  }
  const Wg = get(params, pre + 'w_gate');
  const Wu = get(params, pre + 'w_up');
  const Wd = get(params, pre + 'w_down');
  return x.map((row, t) => {
    const y = new Array<number>(h).fill(0);
    choices[t]!.forEach(({ e, gate }, j) => {
      if (!kept[t]![j]) return;
      const out = swigluMlp([row], Wg, Wu, Wd, h, f, e * f * h, e * h * f)[0]!;
      for (let i = 0; i < h; i++) y[i] += gate * out[i]!;
    });
    return y;
  });
}

/** Mean cross-entropy loss of the model on tokens/targets [batch, seq], in float64. */
export function forwardLossF64(cfg: ModelConfig, params: ParamsLike, tokens: ArrayLike<number>, targets: ArrayLike<number>, batch: number): number {
  const { hidden: h, heads: nq, kvHeads: nkv, vocab: V, seq: S, ffn: f } = cfg;
  const hd = h / nq;
  const emb = get(params, 'tok_emb');
  let total = 0;
  for (let b = 0; b < batch; b++) {
    // embedding
    let x: Mat = [];
    for (let s = 0; s < S; s++) {
      const tok = tokens[b * S + s]!;
      x.push(Array.from({ length: h }, (_, i) => emb[tok * h + i]!));
    }
    for (let l = 0; l < cfg.layers; l++) {
      const pre = `layers.${l}.`;
      // attention
      const xn = rmsnorm(x, get(params, pre + 'attn_norm'), cfg.normEps);
      const q = ropeRows(lin(xn, get(params, pre + 'wq'), nq * hd, h), nq, hd, cfg.ropeTheta);
      const k = ropeRows(lin(xn, get(params, pre + 'wk'), nkv * hd, h), nkv, hd, cfg.ropeTheta);
      const v = lin(xn, get(params, pre + 'wv'), nkv * hd, h);
      const o: Mat = x.map(() => new Array<number>(nq * hd).fill(0));
      for (let hh = 0; hh < nq; hh++) {
        const g = Math.floor((hh * nkv) / nq);
        for (let i = 0; i < S; i++) {
          const sc: number[] = [];
          for (let j = 0; j <= i; j++) {
            let dot = 0;
            for (let d = 0; d < hd; d++) dot += q[i]![hh * hd + d]! * k[j]![g * hd + d]!;
            sc.push(dot / Math.sqrt(hd));
          }
          const mx = Math.max(...sc);
          const w = sc.map((s) => Math.exp(s - mx));
          const z = w.reduce((a, c) => a + c, 0);
          for (let j = 0; j <= i; j++) for (let d = 0; d < hd; d++) o[i]![hh * hd + d] += (w[j]! / z) * v[j]![g * hd + d]!;
        }
      }
      const a = lin(o, get(params, pre + 'wo'), h, nq * hd);
      x = x.map((row, t) => row.map((val, i) => val + a[t]![i]!));
      // MLP
      const xn2 = rmsnorm(x, get(params, pre + 'mlp_norm'), cfg.normEps);
      const m = cfg.moe
        ? moeMlp(cfg, params, pre, xn2)
        : swigluMlp(xn2, get(params, pre + 'w_gate'), get(params, pre + 'w_up'), get(params, pre + 'w_down'), h, f);
      x = x.map((row, t) => row.map((val, i) => val + m[t]![i]!));
    }
    const xf = rmsnorm(x, get(params, 'final_norm'), cfg.normEps);
    const logits = lin(xf, get(params, 'lm_head'), V, h);
    for (let s = 0; s < S; s++) {
      const row = logits[s]!;
      const mx = Math.max(...row);
      let z = 0;
      for (const val of row) z += Math.exp(val - mx);
      total += mx + Math.log(z) - row[targets[b * S + s]!]!;
    }
  }
  return total / (batch * S);
}
