/**
 * Transformer kernels (forward and backward) in plain Float32 TypeScript, for a small Llama-style
 * model. Worker threads (one per simulated GPU) run them as IR `compute` ops that name a kernel,
 * Float32Array views ("args") and numeric params; the cost model prices them with `cost()`.
 *
 * Conventions (every kernel):
 *  - Tensors are row-major Float32Arrays. Integer data (token ids, expert ids, slot indices) are
 *    stored as float32 values (exact below 2^24).
 *  - "+=" means the kernel accumulates into the existing contents of that arg; every other output
 *    is overwritten (its previous contents, even NaN, do not matter).
 *  - Reductions and transcendental math are done in float64 in a fixed order and rounded to float32
 *    once when stored, so results are deterministic (bit-identical on every run and thread).
 *  - Args must not overlap, except the exact aliases (the same elements, index for index) listed
 *    under "alias" below; those kernels read each element before they write it.
 *  - `argLens(p)` and `cost(p)` throw a KernelError for invalid params (wrong count, non-integer
 *    dimensions, nq not divisible by nkv, ...). `runKernel` also checks the args' count and lengths.
 *
 * Kernels (args; params):
 *  zero          [x]; [n]                                   x = 0
 *  matmul        [A, B, C]; [m, n, k, transA, transB, beta] C[m,n] = opA(A)·opB(B) + beta·C, beta ∈ {0,1};
 *                opA(A) = A stored [m,k], or (transA=1) A stored [k,m] and transposed;
 *                opB(B) = B stored [k,n], or (transB=1) B stored [n,k] and transposed.
 *                Each C element is Σ_p a_p·b_p accumulated in float64 in the order p = 0..k-1 (the
 *                products of float32 values are exact in float64), then + C_old (beta=1), then
 *                rounded once; so all four transpose variants give bit-identical results.
 *  embed_fwd     [tokens(T), table(vn·h), out(T·h)]; [T, h, v0, vn]
 *                out[t] = table[tok-v0] if v0 <= tok < v0+vn, else zeros (vocab-parallel shards).
 *  embed_bwd     [tokens(T), dout(T·h), dtable(vn·h)]; [T, h, v0, vn]   dtable[tok-v0] += dout[t]
 *                (in token order t = 0..T-1) for tokens in the shard.
 *  rmsnorm_fwd   [x(T·h), w(h), y(T·h), rstd(T)]; [T, h, eps]
 *                rstd[t] = 1/sqrt(mean_j x[t,j]² + eps); y = x·rstd·w (with the stored float32 rstd).
 *                alias: y === x.
 *  rmsnorm_bwd   [x, w, rstd, dy, dx, dw]; [T, h]            dx = ∂/∂x (overwrite), dw += ∂/∂w.
 *                alias: dx === dy.
 *  rope_fwd      [x(T·nHeads·hd)] in place; [T, nHeads, hd, pos0, theta]
 *                Rotary embedding, "rotate-half" pairing (Hugging Face Llama / GPT-NeoX): element d
 *                is paired with d + hd/2 for d < hd/2, rotated by angle pos·theta^(-2d/hd) where
 *                pos = pos0 + t:  x1' = x1·cos − x2·sin,  x2' = x2·cos + x1·sin.
 *                (Meta's original Llama code pairs adjacent elements (2d, 2d+1) instead; the two
 *                differ only by a fixed permutation of q/k features.) hd must be even.
 *  rope_bwd      [dx] in place; same params: the inverse (= transposed) rotation.
 *  attn_fwd      [q(Tq·nq·hd), k(Tk·nkv·hd), v(Tk·nkv·hd), out(Tq·nq·hd), lse(Tq·nq)];
 *                [Tq, Tk, nq, nkv, hd, qPos0, kPos0, causal]
 *                Attention of a query block against ONE key/value block, scores scaled by
 *                1/sqrt(hd). GQA: query head i uses kv head floor(i / (nq/nkv)). With causal=1, key
 *                j (position kPos0+j) is masked for query i (position qPos0+i) when
 *                kPos0+j > qPos0+i. out = softmax-weighted sum of v over this block, lse = logsumexp
 *                of this block's scores; a fully masked row gets out = 0 and lse = −Infinity.
 *  attn_merge    [out, lse, outB, lseB]; [Tq, nq, hd]
 *                Merge a block result (outB, lseB) into the running (out, lse), in place (online
 *                softmax): lse' = log(e^lse + e^lseB), out' = (e^lse·out + e^lseB·outB) / e^lse'.
 *                −Infinity on either side is handled (that side contributes nothing; its out is not
 *                read). Full attention over K/V split into blocks = attn_fwd on one block, then
 *                attn_fwd + attn_merge for each further block (ring attention / context parallel).
 *  attn_bwd_prep [out, dout, D(Tq·nq)]; [Tq, nq, hd]         D[t,i] = Σ_d out·dout.
 *  attn_bwd      [q, k, v, dout, lse, D, dq, dk, dv]; [Tq, Tk, nq, nkv, hd, qPos0, kPos0, causal]
 *                FlashAttention-2 style backward for ONE K/V block given the FINAL (merged) lse
 *                and D: P = exp(s − lse), dP = dout·vᵀ, dS = P∘(dP − D); dq += scale·dS·k,
 *                dk += scale·dSᵀ·q, dv += Pᵀ·dout. Summing over all K/V blocks gives the gradient
 *                of full attention. Rows with lse = −Infinity (fully masked everywhere) are skipped.
 *  swiglu_fwd    [gate, up, out]; [n]                       out = silu(gate)·up. alias: out === gate or up.
 *  swiglu_bwd    [gate, up, dout, dgate, dup]; [n]          overwrite. alias: any arg except dgate === dup.
 *  xent          [logits(T·V), targets(T), dlogits(T·V), loss(1)]; [T, V, scale]
 *                loss[0] += scale·Σ_t (logsumexp(logits_t) − logits_t[target_t]) (row math and the
 *                sum over rows in float64, added to loss[0] once); dlogits = scale·(softmax − onehot)
 *                (overwrite). A negative target marks an ignored token (no loss, zero dlogits row).
 *                alias: dlogits === logits.
 *  add           [x, y]; [n]                                y += x. alias: x === y.
 *  scale         [x]; [n, factor]                           x *= fround(factor) (as runtime/kernels.ts).
 *  sgd           [param, grad]; [n, lr]                     param -= lr·grad.
 *  adam          [param, grad, m, v]; [n, lr, beta1, beta2, eps, step, weightDecay]
 *                AdamW (decoupled weight decay, bias correction, step is 1-based):
 *                m = β1·m + (1−β1)·g; v = β2·v + (1−β2)·g²; m̂ = m/(1−β1^step); v̂ = v/(1−β2^step);
 *                param -= lr·(m̂/(sqrt(v̂)+eps) + weightDecay·param).
 *
 * Mixture of experts (static shapes, so an expert-parallel AllToAll has fixed sizes):
 *  router_fwd    [logits(T·E), probs(T·E), idx(T·k), gates(T·k), slot(T·k)]; [T, E, k, C, G]
 *                probs = softmax(logits) over the E experts (float64 math); idx[t,0..k-1] = the k
 *                experts with the largest probability, in descending order, ties to the lower
 *                expert index; gates[t,j] = probs[t, idx[t,j]] (NOT renormalized over the top k:
 *                Switch/GShard style, so top-1 routing still trains the router).
 *                Capacity: the T tokens form G contiguous groups of T/G tokens (in the reference a
 *                group is one sequence, so any split over whole sequences routes identically);
 *                each expert takes at most C tokens per group. Slots are assigned deterministically
 *                in priority order: all first choices (j = 0) in token order, then all second choices,
 *                and so on; a choice whose expert is full in that group is dropped (slot = −1, so the
 *                token gets nothing from that expert). slot[t,j] = (e·G + g)·C + c: the slot buffers
 *                are laid out [E, G·C, h], expert-major, so expert e's rows are contiguous (rows
 *                e·G·C .. (e+1)·G·C−1), and sharding the experts over ranks slices contiguous blocks.
 *  router_bwd    [probs, idx, dgates, dlogits]; [T, E, k]    dlogits (overwrite) = softmax backward
 *                of dprobs, where dprobs[t, idx[t,j]] = dgates[t,j] (dropped choices included: their
 *                gate was still computed; pass dgates = 0 for them, as moe_combine_bwd does).
 *  moe_dispatch  [x(T·h), slot(T·k), buf(S·h)]; [T, h, k, S]    buf row slot[t,j] = x[t]; rows that no
 *                token fills are zero (buf is overwritten entirely). S = E·G·C.
 *  moe_dispatch_bwd [dbuf(S·h), slot(T·k), dx(T·h)]; [T, h, k, S]   dx[t] = Σ_j dbuf[slot[t,j]]
 *                (overwrite; j ascending; dropped choices add nothing).
 *  moe_combine   [ybuf(S·h), slot(T·k), gates(T·k), y(T·h)]; [T, h, k, S]
 *                y[t] = Σ_j gates[t,j]·ybuf[slot[t,j]] (overwrite; j ascending; dropped add nothing).
 *  moe_combine_bwd [ybuf, slot, gates, dy, dybuf(S·h), dgates(T·k)]; [T, h, k, S]
 *                dybuf[slot[t,j]] = gates[t,j]·dy[t] (overwrite; unfilled rows zero);
 *                dgates[t,j] = Σ_d dy[t]·ybuf[slot[t,j]] (0 for dropped choices).
 *
 * Cost model (`cost`): flops and HBM bytes of the real GPU kernel (fp32, 4 bytes per element).
 * matmul 2mnk flops (+mn for beta=1) and reads A, B (+ C for beta=1) once, writes C once (a tiled
 * GEMM's re-reads hit cache). Element-wise kernels are bytes-bound: bytes = elements read + written,
 * flops = a small per-element count. Attention counts only the (query, key) pairs that the causal
 * mask keeps (exactly, so a causal diagonal block is ~half and a fully masked block ~0; a real
 * flash kernel's tile granularity is ignored): forward 4·pairs·nq·hd flops (QKᵀ and PV), backward
 * 2.5× that (10·pairs·nq·hd: recompute QKᵀ, dV, dP, dQ, dK); bytes = q, k, v, out, lse (+ dout, D,
 * dq, dk, dv read and written for the backward) once each.
 */

export interface KernelDef {
  name: string;
  /** number of Float32Array args and of numeric params */
  nArgs: number;
  nParams: number;
  /** names of the args and params, for error messages and documentation */
  argNames: readonly string[];
  paramNames: readonly string[];
  /** indices of the args the kernel writes (the others are only read) */
  writes: readonly number[];
  /** expected element count of each arg, from params (used to validate programs); throws KernelError on bad params */
  argLens(p: readonly number[]): number[];
  /** run on data; args are views (may alias only where documented) */
  run(a: Float32Array[], p: readonly number[]): void;
  /** modeled cost of the real (GPU) kernel for these params: flops and HBM bytes moved (fp32 = 4 bytes/elem) */
  cost(p: readonly number[]): { flops: number; bytes: number };
}

export class KernelError extends Error {
  constructor(msg: string) {
    super(msg);
    this.name = 'KernelError';
  }
}

const F4 = 4; // bytes per float32 element

// ------------------------------------------------------------------------------------ scratch

/** Per-thread float64 scratch arrays (worker threads each have their own module instance). */
const scratchPool: Float64Array[] = [];
function scratch(slot: number, n: number): Float64Array {
  let s = scratchPool[slot];
  if (s === undefined || s.length < n) {
    s = new Float64Array(Math.max(n, 2 * (s?.length ?? 0), 64));
    scratchPool[slot] = s;
  }
  return s;
}

// ------------------------------------------------------------------------------ param checks

type ParamKind = 'dim' | 'pos' | 'flag' | 'num' | 'int';
interface Spec {
  name: string;
  args: readonly string[];
  params: readonly (readonly [string, ParamKind])[];
  writes: readonly number[];
  /** extra param constraints; throw a message string via fail() */
  check?(p: readonly number[], fail: (msg: string) => never): void;
  lens(p: readonly number[]): number[];
  run(a: Float32Array[], p: readonly number[]): void;
  cost(p: readonly number[]): { flops: number; bytes: number };
}

function checkParams(s: Spec, p: readonly number[]): void {
  const fail = (msg: string): never => {
    throw new KernelError(`kernel '${s.name}' [${s.params.map((x) => x[0]).join(', ')}] = [${p.join(', ')}]: ${msg}`);
  };
  if (!Array.isArray(p) || p.length !== s.params.length) {
    throw new KernelError(`kernel '${s.name}': expected ${s.params.length} params [${s.params.map((x) => x[0]).join(', ')}], got ${Array.isArray(p) ? p.length : typeof p}`);
  }
  for (let i = 0; i < p.length; i++) {
    const [nm, kind] = s.params[i]!;
    const v = p[i]!;
    if (typeof v !== 'number' || !Number.isFinite(v)) fail(`param ${nm} must be a finite number, got ${v}`);
    switch (kind) {
      case 'dim':
        if (!Number.isInteger(v) || v < 0) fail(`param ${nm} must be an integer >= 0, got ${v}`);
        break;
      case 'pos':
        if (!Number.isInteger(v) || v < 1) fail(`param ${nm} must be an integer >= 1, got ${v}`);
        break;
      case 'int':
        if (!Number.isInteger(v)) fail(`param ${nm} must be an integer, got ${v}`);
        break;
      case 'flag':
        if (v !== 0 && v !== 1) fail(`param ${nm} must be 0 or 1, got ${v}`);
        break;
      case 'num':
        break;
    }
  }
  s.check?.(p, fail);
}

function define(s: Spec): KernelDef {
  return {
    name: s.name,
    nArgs: s.args.length,
    nParams: s.params.length,
    argNames: s.args,
    paramNames: s.params.map((x) => x[0]),
    writes: s.writes,
    argLens(p) {
      checkParams(s, p);
      return s.lens(p);
    },
    run: s.run,
    cost(p) {
      checkParams(s, p);
      return s.cost(p);
    },
  };
}

/** element-wise kernel cost: `r` reads and `w` writes per element, `f` flops per element */
const ew = (n: number, r: number, w: number, f: number) => ({ flops: f * n, bytes: F4 * n * (r + w) });

// ------------------------------------------------------------------------------------ matmul

/**
 * C[m,n] = opA(A)·opB(B) (+ C if beta). Packs opA into 4-row panels ([m/4][k][4]) and opB into
 * 4-column panels ([k][4]), both float64, then a 4x4 register-tile micro-kernel runs over k. Every
 * C element is one float64 dot product in the order p = 0..k-1, whatever the transposes.
 */
function matmul(A: Float32Array, B: Float32Array, C: Float32Array, m: number, n: number, k: number, tA: number, tB: number, beta: number): void {
  if (m === 0 || n === 0) return;
  if (k === 0) {
    if (!beta) C.fill(0, 0, m * n);
    return;
  }
  const sAi = tA ? 1 : k;
  const sAp = tA ? m : 1;
  const sBp = tB ? 1 : n;
  const sBj = tB ? k : 1;
  const mb = (m + 3) >> 2;
  const nb = (n + 3) >> 2;
  const pa = scratch(0, mb * 4 * k);
  const pb = scratch(1, 4 * k);
  // pack opA: pa[(ib*k + p)*4 + r] = opA(4ib + r, p), zero rows past m
  for (let ib = 0; ib < mb; ib++) {
    for (let r = 0; r < 4; r++) {
      const i = ib * 4 + r;
      let o = ib * k * 4 + r;
      if (i < m) {
        let src = i * sAi;
        for (let p = 0; p < k; p++, o += 4, src += sAp) pa[o] = A[src]!;
      } else {
        for (let p = 0; p < k; p++, o += 4) pa[o] = 0;
      }
    }
  }
  for (let jb = 0; jb < nb; jb++) {
    const j0 = jb * 4;
    // pack opB columns j0..j0+3: pb[p*4 + c] = opB(p, j0 + c)
    for (let c = 0; c < 4; c++) {
      const j = j0 + c;
      let o = c;
      if (j < n) {
        let src = j * sBj;
        for (let p = 0; p < k; p++, o += 4, src += sBp) pb[o] = B[src]!;
      } else {
        for (let p = 0; p < k; p++, o += 4) pb[o] = 0;
      }
    }
    const full = j0 + 4 <= n;
    for (let ib = 0; ib < mb; ib++) {
      let c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0;
      let c20 = 0, c21 = 0, c22 = 0, c23 = 0, c30 = 0, c31 = 0, c32 = 0, c33 = 0;
      let ao = ib * k * 4;
      for (let p = 0, bo = 0; p < k; p++, ao += 4, bo += 4) {
        const a0 = pa[ao]!, a1 = pa[ao + 1]!, a2 = pa[ao + 2]!, a3 = pa[ao + 3]!;
        let b = pb[bo]!;
        c00 += a0 * b; c10 += a1 * b; c20 += a2 * b; c30 += a3 * b;
        b = pb[bo + 1]!;
        c01 += a0 * b; c11 += a1 * b; c21 += a2 * b; c31 += a3 * b;
        b = pb[bo + 2]!;
        c02 += a0 * b; c12 += a1 * b; c22 += a2 * b; c32 += a3 * b;
        b = pb[bo + 3]!;
        c03 += a0 * b; c13 += a1 * b; c23 += a2 * b; c33 += a3 * b;
      }
      const i0 = ib * 4;
      if (full && i0 + 4 <= m) {
        let o = i0 * n + j0;
        if (beta) {
          C[o] += c00; C[o + 1] += c01; C[o + 2] += c02; C[o + 3] += c03; o += n;
          C[o] += c10; C[o + 1] += c11; C[o + 2] += c12; C[o + 3] += c13; o += n;
          C[o] += c20; C[o + 1] += c21; C[o + 2] += c22; C[o + 3] += c23; o += n;
          C[o] += c30; C[o + 1] += c31; C[o + 2] += c32; C[o + 3] += c33;
        } else {
          C[o] = c00; C[o + 1] = c01; C[o + 2] = c02; C[o + 3] = c03; o += n;
          C[o] = c10; C[o + 1] = c11; C[o + 2] = c12; C[o + 3] = c13; o += n;
          C[o] = c20; C[o + 1] = c21; C[o + 2] = c22; C[o + 3] = c23; o += n;
          C[o] = c30; C[o + 1] = c31; C[o + 2] = c32; C[o + 3] = c33;
        }
      } else {
        const tile = [c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33];
        for (let r = 0; r < 4 && i0 + r < m; r++) {
          for (let c = 0; c < 4 && j0 + c < n; c++) {
            const o = (i0 + r) * n + j0 + c;
            C[o] = beta ? C[o]! + tile[r * 4 + c]! : tile[r * 4 + c]!;
          }
        }
      }
    }
  }
}

// ------------------------------------------------------------------------------------ attention

/** number of (query, key) pairs the mask keeps, and the first masked key index for query row t */
function keyEnd(t: number, Tk: number, qPos0: number, kPos0: number, causal: number): number {
  if (!causal) return Tk;
  const e = qPos0 + t - kPos0 + 1;
  return e <= 0 ? 0 : e >= Tk ? Tk : e;
}
function attnPairs(Tq: number, Tk: number, qPos0: number, kPos0: number, causal: number): number {
  if (!causal) return Tq * Tk;
  let s = 0;
  for (let t = 0; t < Tq; t++) s += keyEnd(t, Tk, qPos0, kPos0, causal);
  return s;
}

function attnFwd(a: Float32Array[], p: readonly number[]): void {
  const [q, k, v, out, lse] = a as [Float32Array, Float32Array, Float32Array, Float32Array, Float32Array];
  const [Tq, Tk, nq, nkv, hd, qPos0, kPos0, causal] = p as [number, number, number, number, number, number, number, number];
  const grp = nq / nkv;
  const scale = 1 / Math.sqrt(hd);
  const s = scratch(0, Tk);
  const acc = scratch(1, hd);
  for (let t = 0; t < Tq; t++) {
    const jEnd = keyEnd(t, Tk, qPos0, kPos0, causal);
    for (let i = 0; i < nq; i++) {
      const g = Math.floor(i / grp);
      const qo = (t * nq + i) * hd;
      if (jEnd === 0) {
        out.fill(0, qo, qo + hd);
        lse[t * nq + i] = -Infinity;
        continue;
      }
      let mx = -Infinity;
      for (let j = 0; j < jEnd; j++) {
        const ko = (j * nkv + g) * hd;
        let dot = 0;
        for (let d = 0; d < hd; d++) dot += q[qo + d]! * k[ko + d]!;
        const sc = dot * scale;
        s[j] = sc;
        if (sc > mx) mx = sc;
      }
      for (let d = 0; d < hd; d++) acc[d] = 0;
      let sum = 0;
      for (let j = 0; j < jEnd; j++) {
        const e = Math.exp(s[j]! - mx);
        sum += e;
        const vo = (j * nkv + g) * hd;
        for (let d = 0; d < hd; d++) acc[d] += e * v[vo + d]!;
      }
      const inv = 1 / sum;
      for (let d = 0; d < hd; d++) out[qo + d] = acc[d]! * inv;
      lse[t * nq + i] = mx + Math.log(sum);
    }
  }
}

function attnMerge(a: Float32Array[], p: readonly number[]): void {
  const [out, lse, outB, lseB] = a as [Float32Array, Float32Array, Float32Array, Float32Array];
  const [Tq, nq, hd] = p as [number, number, number];
  for (let r = 0; r < Tq * nq; r++) {
    const la = lse[r]!;
    const lb = lseB[r]!;
    if (lb === -Infinity) continue;
    const o = r * hd;
    if (la === -Infinity) {
      for (let d = 0; d < hd; d++) out[o + d] = outB[o + d]!;
      lse[r] = lb;
      continue;
    }
    const mx = la > lb ? la : lb;
    const wa = Math.exp(la - mx);
    const wb = Math.exp(lb - mx);
    const sum = wa + wb;
    const fa = wa / sum;
    const fb = wb / sum;
    for (let d = 0; d < hd; d++) out[o + d] = fa * out[o + d]! + fb * outB[o + d]!;
    lse[r] = mx + Math.log(sum);
  }
}

function attnBwd(a: Float32Array[], p: readonly number[]): void {
  const [q, k, v, dout, lse, D, dq, dk, dv] = a as [Float32Array, Float32Array, Float32Array, Float32Array, Float32Array, Float32Array, Float32Array, Float32Array, Float32Array];
  const [Tq, Tk, nq, nkv, hd, qPos0, kPos0, causal] = p as [number, number, number, number, number, number, number, number];
  const grp = nq / nkv;
  const scale = 1 / Math.sqrt(hd);
  const nkvE = Tk * nkv * hd;
  const dkA = scratch(0, nkvE);
  const dvA = scratch(1, nkvE);
  const dqA = scratch(2, hd);
  dkA.fill(0, 0, nkvE);
  dvA.fill(0, 0, nkvE);
  for (let t = 0; t < Tq; t++) {
    const jEnd = keyEnd(t, Tk, qPos0, kPos0, causal);
    if (jEnd === 0) continue;
    for (let i = 0; i < nq; i++) {
      const L = lse[t * nq + i]!;
      if (L === -Infinity) continue;
      const Di = D[t * nq + i]!;
      const g = Math.floor(i / grp);
      const qo = (t * nq + i) * hd;
      for (let d = 0; d < hd; d++) dqA[d] = 0;
      for (let j = 0; j < jEnd; j++) {
        const ko = (j * nkv + g) * hd;
        let dot = 0;
        let dP = 0;
        for (let d = 0; d < hd; d++) {
          dot += q[qo + d]! * k[ko + d]!;
          dP += dout[qo + d]! * v[ko + d]!;
        }
        const P = Math.exp(dot * scale - L);
        const dS = P * (dP - Di);
        for (let d = 0; d < hd; d++) {
          dqA[d] += dS * k[ko + d]!;
          dkA[ko + d] += dS * q[qo + d]!;
          dvA[ko + d] += P * dout[qo + d]!;
        }
      }
      for (let d = 0; d < hd; d++) dq[qo + d] += scale * dqA[d]!;
    }
  }
  for (let x = 0; x < nkvE; x++) {
    dk[x] += scale * dkA[x]!;
    dv[x] += dvA[x]!;
  }
}

// ------------------------------------------------------------------------------------ MoE routing

function routerFwd(a: Float32Array[], p: readonly number[]): void {
  const [logits, probs, idx, gates, slot] = a as [Float32Array, Float32Array, Float32Array, Float32Array, Float32Array];
  const [T, E, K, C, G] = p as [number, number, number, number, number];
  const pr = scratch(0, E);
  const chosen = scratch(1, E);
  for (let t = 0; t < T; t++) {
    const o = t * E;
    let mx = -Infinity;
    for (let e = 0; e < E; e++) if (logits[o + e]! > mx) mx = logits[o + e]!;
    let sum = 0;
    for (let e = 0; e < E; e++) {
      const x = Math.exp(logits[o + e]! - mx);
      pr[e] = x;
      sum += x;
    }
    for (let e = 0; e < E; e++) {
      probs[o + e] = pr[e]! / sum;
      chosen[e] = 0;
    }
    // top-k on the stored float32 probabilities; strict '>' keeps the lower index on ties
    for (let j = 0; j < K; j++) {
      let best = -1;
      let bv = -Infinity;
      for (let e = 0; e < E; e++) {
        if (chosen[e]) continue;
        const v = probs[o + e]!;
        if (best < 0 || v > bv) {
          best = e;
          bv = v;
        }
      }
      chosen[best] = 1;
      idx[t * K + j] = best;
      gates[t * K + j] = bv;
    }
  }
  // capacity: priority by choice rank j, then token order, per group
  const perGroup = T / G;
  const count = scratch(2, E * G);
  count.fill(0, 0, E * G);
  for (let j = 0; j < K; j++) {
    for (let t = 0; t < T; t++) {
      const g = Math.floor(t / perGroup);
      const e = idx[t * K + j]!;
      const c = count[e * G + g]!;
      if (c < C) {
        slot[t * K + j] = (e * G + g) * C + c;
        count[e * G + g] = c + 1;
      } else {
        slot[t * K + j] = -1;
      }
    }
  }
}

function routerBwd(a: Float32Array[], p: readonly number[]): void {
  const [probs, idx, dgates, dlogits] = a as [Float32Array, Float32Array, Float32Array, Float32Array];
  const [T, E, K] = p as [number, number, number];
  const dp = scratch(0, E);
  for (let t = 0; t < T; t++) {
    const o = t * E;
    for (let e = 0; e < E; e++) dp[e] = 0;
    for (let j = 0; j < K; j++) dp[idx[t * K + j]!] += dgates[t * K + j]!;
    let dot = 0;
    for (let e = 0; e < E; e++) dot += probs[o + e]! * dp[e]!;
    for (let e = 0; e < E; e++) dlogits[o + e] = probs[o + e]! * (dp[e]! - dot);
  }
}

function checkSlot(s: number, S: number, kernel: string): void {
  if (!(Number.isInteger(s) && s >= -1 && s < S)) throw new KernelError(`kernel '${kernel}': slot ${s} is not -1 or an integer in [0, ${S})`);
}

// ------------------------------------------------------------------------------------ registry

const Infty = Number.POSITIVE_INFINITY;

const specs: Spec[] = [
  {
    name: 'zero',
    args: ['x'],
    params: [['n', 'dim']],
    writes: [0],
    lens: ([n]) => [n!],
    run: ([x], [n]) => void x!.fill(0, 0, n!),
    cost: ([n]) => ew(n!, 0, 1, 0),
  },
  {
    name: 'matmul',
    args: ['A', 'B', 'C'],
    params: [['m', 'dim'], ['n', 'dim'], ['k', 'dim'], ['transA', 'flag'], ['transB', 'flag'], ['beta', 'flag']],
    writes: [2],
    lens: ([m, n, k]) => [m! * k!, k! * n!, m! * n!],
    run: ([A, B, C], [m, n, k, tA, tB, beta]) => matmul(A!, B!, C!, m!, n!, k!, tA!, tB!, beta!),
    cost: ([m, n, k, , , beta]) => ({
      flops: 2 * m! * n! * k! + (beta ? m! * n! : 0),
      bytes: F4 * (m! * k! + k! * n! + m! * n! * (beta ? 2 : 1)),
    }),
  },
  {
    name: 'embed_fwd',
    args: ['tokens', 'table', 'out'],
    params: [['T', 'dim'], ['h', 'dim'], ['v0', 'dim'], ['vn', 'dim']],
    writes: [2],
    lens: ([T, h, , vn]) => [T!, vn! * h!, T! * h!],
    run: ([tokens, table, out], [T, h, v0, vn]) => {
      for (let t = 0; t < T!; t++) {
        const tok = tokens![t]!;
        if (!Number.isInteger(tok)) throw new KernelError(`kernel 'embed_fwd': token ${t} is ${tok}, not an integer`);
        const r = tok - v0!;
        const o = t * h!;
        if (r >= 0 && r < vn!) out!.set(table!.subarray(r * h!, r * h! + h!), o);
        else out!.fill(0, o, o + h!);
      }
    },
    cost: ([T, h]) => ({ flops: 0, bytes: F4 * (T! + 2 * T! * h!) }),
  },
  {
    name: 'embed_bwd',
    args: ['tokens', 'dout', 'dtable'],
    params: [['T', 'dim'], ['h', 'dim'], ['v0', 'dim'], ['vn', 'dim']],
    writes: [2],
    lens: ([T, h, , vn]) => [T!, T! * h!, vn! * h!],
    run: ([tokens, dout, dtable], [T, h, v0, vn]) => {
      for (let t = 0; t < T!; t++) {
        const tok = tokens![t]!;
        if (!Number.isInteger(tok)) throw new KernelError(`kernel 'embed_bwd': token ${t} is ${tok}, not an integer`);
        const r = tok - v0!;
        if (r < 0 || r >= vn!) continue;
        const o = t * h!;
        const w = r * h!;
        for (let d = 0; d < h!; d++) dtable![w + d] += dout![o + d]!;
      }
    },
    // read tokens and dout, read-modify-write the touched dtable rows
    cost: ([T, h]) => ({ flops: T! * h!, bytes: F4 * (T! + 3 * T! * h!) }),
  },
  {
    name: 'rmsnorm_fwd',
    args: ['x', 'w', 'y', 'rstd'],
    params: [['T', 'dim'], ['h', 'pos'], ['eps', 'num']],
    writes: [2, 3],
    check: ([, , eps], fail) => {
      if (!(eps! >= 0)) fail('eps must be >= 0');
    },
    lens: ([T, h]) => [T! * h!, h!, T! * h!, T!],
    run: ([x, w, y, rstd], [T, h, eps]) => {
      for (let t = 0; t < T!; t++) {
        const o = t * h!;
        let ss = 0;
        for (let d = 0; d < h!; d++) ss += x![o + d]! * x![o + d]!;
        rstd![t] = 1 / Math.sqrt(ss / h! + eps!);
        const r = rstd![t]!;
        for (let d = 0; d < h!; d++) y![o + d] = x![o + d]! * r * w![d]!;
      }
    },
    cost: ([T, h]) => ({ flops: 4 * T! * h!, bytes: F4 * (2 * T! * h! + h! + T!) }),
  },
  {
    name: 'rmsnorm_bwd',
    args: ['x', 'w', 'rstd', 'dy', 'dx', 'dw'],
    params: [['T', 'dim'], ['h', 'pos']],
    writes: [4, 5],
    lens: ([T, h]) => [T! * h!, h!, T!, T! * h!, T! * h!, h!],
    run: ([x, w, rstd, dy, dx, dw], [T, h]) => {
      // y_i = x_i r w_i, r = (mean x² + eps)^-1/2:  dx_i = r w_i dy_i − x_i r³/h Σ_j dy_j w_j x_j
      const dwA = scratch(0, h!);
      dwA.fill(0, 0, h!);
      for (let t = 0; t < T!; t++) {
        const o = t * h!;
        const r = rstd![t]!;
        let dot = 0;
        for (let d = 0; d < h!; d++) dot += dy![o + d]! * w![d]! * x![o + d]!;
        const c = (r * r * r * dot) / h!;
        for (let d = 0; d < h!; d++) {
          const g = dy![o + d]!;
          const xi = x![o + d]!;
          dwA[d] += g * xi * r;
          dx![o + d] = r * w![d]! * g - c * xi;
        }
      }
      for (let d = 0; d < h!; d++) dw![d] += dwA[d]!;
    },
    cost: ([T, h]) => ({ flops: 8 * T! * h!, bytes: F4 * (3 * T! * h! + T! + 3 * h!) }),
  },
  ...(['rope_fwd', 'rope_bwd'] as const).map(
    (name): Spec => ({
      name,
      args: ['x'],
      params: [['T', 'dim'], ['nHeads', 'dim'], ['hd', 'pos'], ['pos0', 'int'], ['theta', 'num']],
      writes: [0],
      check: ([, , hd, , theta], fail) => {
        if (hd! % 2 !== 0) fail('hd must be even');
        if (!(theta! > 0)) fail('theta must be > 0');
      },
      lens: ([T, nH, hd]) => [T! * nH! * hd!],
      run: ([x], [T, nH, hd, pos0, theta]) => rope(x!, T!, nH!, hd!, pos0!, theta!, name === 'rope_bwd'),
      cost: ([T, nH, hd]) => ew(T! * nH! * hd!, 1, 1, 3),
    }),
  ),
  {
    name: 'attn_fwd',
    args: ['q', 'k', 'v', 'out', 'lse'],
    params: ATTN_PARAMS(),
    writes: [3, 4],
    check: attnCheck,
    lens: ([Tq, Tk, nq, nkv, hd]) => [Tq! * nq! * hd!, Tk! * nkv! * hd!, Tk! * nkv! * hd!, Tq! * nq! * hd!, Tq! * nq!],
    run: attnFwd,
    cost: ([Tq, Tk, nq, nkv, hd, qPos0, kPos0, causal]) => ({
      flops: 4 * attnPairs(Tq!, Tk!, qPos0!, kPos0!, causal!) * nq! * hd!,
      bytes: F4 * (2 * Tq! * nq! * hd! + 2 * Tk! * nkv! * hd! + Tq! * nq!),
    }),
  },
  {
    name: 'attn_merge',
    args: ['out', 'lse', 'outB', 'lseB'],
    params: [['Tq', 'dim'], ['nq', 'dim'], ['hd', 'dim']],
    writes: [0, 1],
    lens: ([Tq, nq, hd]) => [Tq! * nq! * hd!, Tq! * nq!, Tq! * nq! * hd!, Tq! * nq!],
    run: attnMerge,
    cost: ([Tq, nq, hd]) => ({ flops: 3 * Tq! * nq! * hd!, bytes: F4 * (3 * Tq! * nq! * hd! + 3 * Tq! * nq!) }),
  },
  {
    name: 'attn_bwd_prep',
    args: ['out', 'dout', 'D'],
    params: [['Tq', 'dim'], ['nq', 'dim'], ['hd', 'dim']],
    writes: [2],
    lens: ([Tq, nq, hd]) => [Tq! * nq! * hd!, Tq! * nq! * hd!, Tq! * nq!],
    run: ([out, dout, D], [Tq, nq, hd]) => {
      for (let r = 0; r < Tq! * nq!; r++) {
        let s = 0;
        for (let d = 0, o = r * hd!; d < hd!; d++, o++) s += out![o]! * dout![o]!;
        D![r] = s;
      }
    },
    cost: ([Tq, nq, hd]) => ({ flops: 2 * Tq! * nq! * hd!, bytes: F4 * (2 * Tq! * nq! * hd! + Tq! * nq!) }),
  },
  {
    name: 'attn_bwd',
    args: ['q', 'k', 'v', 'dout', 'lse', 'D', 'dq', 'dk', 'dv'],
    params: ATTN_PARAMS(),
    writes: [6, 7, 8],
    check: attnCheck,
    lens: ([Tq, Tk, nq, nkv, hd]) => {
      const qn = Tq! * nq! * hd!;
      const kn = Tk! * nkv! * hd!;
      return [qn, kn, kn, qn, Tq! * nq!, Tq! * nq!, qn, kn, kn];
    },
    run: attnBwd,
    cost: ([Tq, Tk, nq, nkv, hd, qPos0, kPos0, causal]) => ({
      flops: 10 * attnPairs(Tq!, Tk!, qPos0!, kPos0!, causal!) * nq! * hd!,
      // read q, k, v, dout, lse, D; read+write dq, dk, dv
      bytes: F4 * (4 * Tq! * nq! * hd! + 6 * Tk! * nkv! * hd! + 2 * Tq! * nq!),
    }),
  },
  {
    name: 'swiglu_fwd',
    args: ['gate', 'up', 'out'],
    params: [['n', 'dim']],
    writes: [2],
    lens: ([n]) => [n!, n!, n!],
    run: ([gate, up, out], [n]) => {
      for (let i = 0; i < n!; i++) {
        const g = gate![i]!;
        out![i] = (g / (1 + Math.exp(-g))) * up![i]!;
      }
    },
    cost: ([n]) => ew(n!, 2, 1, 5),
  },
  {
    name: 'swiglu_bwd',
    args: ['gate', 'up', 'dout', 'dgate', 'dup'],
    params: [['n', 'dim']],
    writes: [3, 4],
    lens: ([n]) => [n!, n!, n!, n!, n!],
    run: ([gate, up, dout, dgate, dup], [n]) => {
      for (let i = 0; i < n!; i++) {
        const g = gate![i]!;
        const u = up![i]!;
        const d = dout![i]!;
        const sg = 1 / (1 + Math.exp(-g));
        const dg = d * u * sg * (1 + g * (1 - sg));
        const du = d * g * sg;
        dgate![i] = dg;
        dup![i] = du;
      }
    },
    cost: ([n]) => ew(n!, 3, 2, 10),
  },
  {
    name: 'xent',
    args: ['logits', 'targets', 'dlogits', 'loss'],
    params: [['T', 'dim'], ['V', 'pos'], ['scale', 'num']],
    writes: [2, 3],
    lens: ([T, V]) => [T! * V!, T!, T! * V!, 1],
    run: ([logits, targets, dlogits, loss], [T, V, scale]) => {
      let total = 0;
      for (let t = 0; t < T!; t++) {
        const o = t * V!;
        const tg = targets![t]!;
        if (!Number.isInteger(tg) || tg >= V!) throw new KernelError(`kernel 'xent': target ${t} is ${tg}, not an integer < V = ${V}`);
        if (tg < 0) {
          dlogits!.fill(0, o, o + V!);
          continue;
        }
        let mx = -Infty;
        for (let j = 0; j < V!; j++) if (logits![o + j]! > mx) mx = logits![o + j]!;
        let sum = 0;
        for (let j = 0; j < V!; j++) sum += Math.exp(logits![o + j]! - mx);
        const lse = mx + Math.log(sum);
        const xt = logits![o + tg]!; // read before dlogits (which may alias logits) is written
        total += lse - xt;
        for (let j = 0; j < V!; j++) dlogits![o + j] = scale! * Math.exp(logits![o + j]! - lse);
        dlogits![o + tg] = scale! * (Math.exp(xt - lse) - 1);
      }
      loss![0] += scale! * total;
    },
    cost: ([T, V]) => ({ flops: 5 * T! * V!, bytes: F4 * (2 * T! * V! + T! + 2) }),
  },
  {
    name: 'add',
    args: ['x', 'y'],
    params: [['n', 'dim']],
    writes: [1],
    lens: ([n]) => [n!, n!],
    run: ([x, y], [n]) => {
      for (let i = 0; i < n!; i++) y![i] += x![i]!;
    },
    cost: ([n]) => ew(n!, 2, 1, 1),
  },
  {
    name: 'scale',
    args: ['x'],
    params: [['n', 'dim'], ['factor', 'num']],
    writes: [0],
    lens: ([n]) => [n!],
    run: ([x], [n, factor]) => {
      const f = Math.fround(factor!);
      for (let i = 0; i < n!; i++) x![i] *= f;
    },
    cost: ([n]) => ew(n!, 1, 1, 1),
  },
  {
    name: 'sgd',
    args: ['param', 'grad'],
    params: [['n', 'dim'], ['lr', 'num']],
    writes: [0],
    lens: ([n]) => [n!, n!],
    run: ([param, grad], [n, lr]) => {
      for (let i = 0; i < n!; i++) param![i] -= lr! * grad![i]!;
    },
    cost: ([n]) => ew(n!, 2, 1, 2),
  },
  {
    name: 'adam',
    args: ['param', 'grad', 'm', 'v'],
    params: [['n', 'dim'], ['lr', 'num'], ['beta1', 'num'], ['beta2', 'num'], ['eps', 'num'], ['step', 'pos'], ['weightDecay', 'num']],
    writes: [0, 2, 3],
    check: ([, , b1, b2, eps], fail) => {
      if (!(b1! >= 0 && b1! < 1) || !(b2! >= 0 && b2! < 1)) fail('beta1 and beta2 must be in [0, 1)');
      if (!(eps! >= 0)) fail('eps must be >= 0');
    },
    lens: ([n]) => [n!, n!, n!, n!],
    run: ([param, grad, m, v], [n, lr, b1, b2, eps, step, wd]) => {
      const bc1 = 1 - Math.pow(b1!, step!);
      const bc2 = 1 - Math.pow(b2!, step!);
      for (let i = 0; i < n!; i++) {
        const g = grad![i]!;
        m![i] = b1! * m![i]! + (1 - b1!) * g;
        v![i] = b2! * v![i]! + (1 - b2!) * g * g;
        const mh = m![i]! / bc1;
        const vh = v![i]! / bc2;
        const pv = param![i]!;
        param![i] = pv - lr! * (mh / (Math.sqrt(vh) + eps!) + wd! * pv);
      }
    },
    cost: ([n]) => ew(n!, 4, 3, 12),
  },
  {
    name: 'router_fwd',
    args: ['logits', 'probs', 'idx', 'gates', 'slot'],
    params: [['T', 'dim'], ['E', 'pos'], ['k', 'pos'], ['C', 'dim'], ['G', 'pos']],
    writes: [1, 2, 3, 4],
    check: ([T, E, K, , G], fail) => {
      if (K! > E!) fail('k must be <= E');
      if (T! % G! !== 0) fail('T must be divisible by G (groups of T/G tokens)');
    },
    lens: ([T, E, K]) => [T! * E!, T! * E!, T! * K!, T! * K!, T! * K!],
    run: routerFwd,
    cost: ([T, E, K]) => ({ flops: T! * E! * (5 + K!), bytes: F4 * (2 * T! * E! + 3 * T! * K!) }),
  },
  {
    name: 'router_bwd',
    args: ['probs', 'idx', 'dgates', 'dlogits'],
    params: [['T', 'dim'], ['E', 'pos'], ['k', 'pos']],
    writes: [3],
    check: ([, E, K], fail) => {
      if (K! > E!) fail('k must be <= E');
    },
    lens: ([T, E, K]) => [T! * E!, T! * K!, T! * K!, T! * E!],
    run: routerBwd,
    cost: ([T, E, K]) => ({ flops: 4 * T! * E!, bytes: F4 * (2 * T! * E! + 2 * T! * K!) }),
  },
  {
    name: 'moe_dispatch',
    args: ['x', 'slot', 'buf'],
    params: [['T', 'dim'], ['h', 'dim'], ['k', 'pos'], ['S', 'dim']],
    writes: [2],
    lens: ([T, h, K, S]) => [T! * h!, T! * K!, S! * h!],
    run: ([x, slot, buf], [T, h, K, S]) => {
      buf!.fill(0, 0, S! * h!);
      for (let t = 0; t < T!; t++) {
        for (let j = 0; j < K!; j++) {
          const s = slot![t * K! + j]!;
          checkSlot(s, S!, 'moe_dispatch');
          if (s >= 0) buf!.set(x!.subarray(t * h!, t * h! + h!), s * h!);
        }
      }
    },
    cost: ([T, h, K, S]) => ({ flops: 0, bytes: F4 * (T! * K! + T! * K! * h! + S! * h!) }),
  },
  {
    name: 'moe_dispatch_bwd',
    args: ['dbuf', 'slot', 'dx'],
    params: [['T', 'dim'], ['h', 'dim'], ['k', 'pos'], ['S', 'dim']],
    writes: [2],
    lens: ([T, h, K, S]) => [S! * h!, T! * K!, T! * h!],
    run: ([dbuf, slot, dx], [T, h, K, S]) => {
      const acc = scratch(0, h!);
      for (let t = 0; t < T!; t++) {
        acc.fill(0, 0, h!);
        for (let j = 0; j < K!; j++) {
          const s = slot![t * K! + j]!;
          checkSlot(s, S!, 'moe_dispatch_bwd');
          if (s < 0) continue;
          for (let d = 0; d < h!; d++) acc[d] += dbuf![s * h! + d]!;
        }
        for (let d = 0; d < h!; d++) dx![t * h! + d] = acc[d]!;
      }
    },
    cost: ([T, h, K]) => ({ flops: T! * K! * h!, bytes: F4 * (T! * K! + T! * K! * h! + T! * h!) }),
  },
  {
    name: 'moe_combine',
    args: ['ybuf', 'slot', 'gates', 'y'],
    params: [['T', 'dim'], ['h', 'dim'], ['k', 'pos'], ['S', 'dim']],
    writes: [3],
    lens: ([T, h, K, S]) => [S! * h!, T! * K!, T! * K!, T! * h!],
    run: ([ybuf, slot, gates, y], [T, h, K, S]) => {
      const acc = scratch(0, h!);
      for (let t = 0; t < T!; t++) {
        acc.fill(0, 0, h!);
        for (let j = 0; j < K!; j++) {
          const s = slot![t * K! + j]!;
          checkSlot(s, S!, 'moe_combine');
          if (s < 0) continue;
          const gv = gates![t * K! + j]!;
          for (let d = 0; d < h!; d++) acc[d] += gv * ybuf![s * h! + d]!;
        }
        for (let d = 0; d < h!; d++) y![t * h! + d] = acc[d]!;
      }
    },
    cost: ([T, h, K]) => ({ flops: 2 * T! * K! * h!, bytes: F4 * (2 * T! * K! + T! * K! * h! + T! * h!) }),
  },
  {
    name: 'moe_combine_bwd',
    args: ['ybuf', 'slot', 'gates', 'dy', 'dybuf', 'dgates'],
    params: [['T', 'dim'], ['h', 'dim'], ['k', 'pos'], ['S', 'dim']],
    writes: [4, 5],
    lens: ([T, h, K, S]) => [S! * h!, T! * K!, T! * K!, T! * h!, S! * h!, T! * K!],
    run: ([ybuf, slot, gates, dy, dybuf, dgates], [T, h, K, S]) => {
      dybuf!.fill(0, 0, S! * h!);
      for (let t = 0; t < T!; t++) {
        for (let j = 0; j < K!; j++) {
          const s = slot![t * K! + j]!;
          checkSlot(s, S!, 'moe_combine_bwd');
          if (s < 0) {
            dgates![t * K! + j] = 0;
            continue;
          }
          const gv = gates![t * K! + j]!;
          let dot = 0;
          for (let d = 0; d < h!; d++) {
            const g = dy![t * h! + d]!;
            dot += g * ybuf![s * h! + d]!;
            dybuf![s * h! + d] = gv * g;
          }
          dgates![t * K! + j] = dot;
        }
      }
    },
    cost: ([T, h, K, S]) => ({ flops: 3 * T! * K! * h!, bytes: F4 * (2 * T! * K! * h! + T! * h! + S! * h! + 3 * T! * K!) }),
  },
];

function ATTN_PARAMS(): [string, ParamKind][] {
  return [['Tq', 'dim'], ['Tk', 'dim'], ['nq', 'pos'], ['nkv', 'pos'], ['hd', 'pos'], ['qPos0', 'int'], ['kPos0', 'int'], ['causal', 'flag']];
}
function attnCheck([, , nq, nkv]: readonly number[], fail: (msg: string) => never): void {
  if (nq! % nkv! !== 0) fail('nq must be divisible by nkv (GQA groups)');
}

function rope(x: Float32Array, T: number, nH: number, hd: number, pos0: number, theta: number, inverse: boolean): void {
  const half = hd / 2;
  const cs = scratch(0, half);
  const sn = scratch(1, half);
  const invFreq = scratch(2, half);
  for (let d = 0; d < half; d++) invFreq[d] = Math.pow(theta, (-2 * d) / hd);
  for (let t = 0; t < T; t++) {
    const pos = pos0 + t;
    for (let d = 0; d < half; d++) {
      const ang = pos * invFreq[d]!;
      cs[d] = Math.cos(ang);
      sn[d] = inverse ? -Math.sin(ang) : Math.sin(ang);
    }
    for (let hh = 0; hh < nH; hh++) {
      const o = (t * nH + hh) * hd;
      for (let d = 0; d < half; d++) {
        const x1 = x[o + d]!;
        const x2 = x[o + d + half]!;
        x[o + d] = x1 * cs[d]! - x2 * sn[d]!;
        x[o + d + half] = x2 * cs[d]! + x1 * sn[d]!;
      }
    }
  }
}

export const KERNELS: Record<string, KernelDef> = Object.freeze(Object.fromEntries(specs.map((s) => [s.name, define(s)])));

/** The kernel named `name`, or a KernelError listing the known kernels. */
export function getKernel(name: string): KernelDef {
  const k = Object.prototype.hasOwnProperty.call(KERNELS, name) ? KERNELS[name] : undefined;
  if (!k) throw new KernelError(`unknown kernel '${name}'; known kernels: ${Object.keys(KERNELS).join(', ')}`);
  return k;
}

/**
 * Check a kernel call without data (for program validation): the name, the params, and that the
 * args have exactly the element counts that `argLens` expects. Returns the kernel.
 */
export function validateKernelCall(name: string, argLens: readonly number[], params: readonly number[]): KernelDef {
  const k = getKernel(name);
  const want = k.argLens(params);
  if (argLens.length !== k.nArgs) {
    throw new KernelError(`kernel '${name}': expected ${k.nArgs} args [${k.argNames.join(', ')}], got ${argLens.length}`);
  }
  for (let i = 0; i < want.length; i++) {
    if (argLens[i] !== want[i]) {
      throw new KernelError(`kernel '${name}' params [${params.join(', ')}]: arg ${i} (${k.argNames[i]}) must have ${want[i]} elements, got ${argLens[i]}`);
    }
  }
  return k;
}

/** Run a kernel after checking its name, params, and that every arg is a Float32Array of the expected length. */
export function runKernel(name: string, args: Float32Array[], params: readonly number[]): void {
  const k = getKernel(name);
  if (!Array.isArray(args) || args.length !== k.nArgs) {
    throw new KernelError(`kernel '${name}': expected ${k.nArgs} args [${k.argNames.join(', ')}], got ${Array.isArray(args) ? args.length : typeof args}`);
  }
  for (let i = 0; i < args.length; i++) {
    if (!(args[i] instanceof Float32Array)) throw new KernelError(`kernel '${name}': arg ${i} (${k.argNames[i]}) is not a Float32Array`);
  }
  validateKernelCall(name, args.map((a) => a.length), params);
  k.run(args, params);
}
