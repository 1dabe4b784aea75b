/**
 * Float64 reference semantics of every collective, and the comparison used by tests and by
 * `collemu bench -c 1`.
 */
import type { ReduceOp } from '../runtime/ir.js';
import { ioSizes, type CollSpec } from './types.js';

function combine(a: number, b: number, op: ReduceOp): number {
  switch (op) {
    case 'sum':
    case 'avg': return a + b;
    case 'prod': return a * b;
    case 'max': return Math.max(a, b);
    case 'min': return Math.min(a, b);
  }
}

/** Element-wise reduction over ranks in float64; 'avg' divides by p. */
export function reduceRef(vals: ArrayLike<number>[], op: ReduceOp): Float64Array {
  const n = vals[0]?.length ?? 0;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let acc = vals[0]![i]!;
    for (let r = 1; r < vals.length; r++) acc = combine(acc, vals[r]![i]!, op);
    out[i] = op === 'avg' ? acc / vals.length : acc;
  }
  return out;
}

/**
 * Expected result of every rank, given each rank's input (count elements, or p*count for
 * reducescatter/alltoall). Ranks without a defined result (non-roots of reduce) get null.
 */
export function expectedOutputs(spec: CollSpec, inputs: Float32Array[]): (Float64Array | null)[] {
  const { p, count: c, coll } = spec;
  const out: (Float64Array | null)[] = [];
  switch (coll) {
    case 'allreduce': {
      const red = reduceRef(inputs, spec.op);
      for (let r = 0; r < p; r++) out.push(red);
      break;
    }
    case 'reduce': {
      const red = reduceRef(inputs, spec.op);
      for (let r = 0; r < p; r++) out.push(r === spec.root ? red : null);
      break;
    }
    case 'reducescatter': {
      const red = reduceRef(inputs, spec.op);
      for (let r = 0; r < p; r++) out.push(red.slice(r * c, (r + 1) * c));
      break;
    }
    case 'allgather': {
      const all = new Float64Array(p * c);
      for (let r = 0; r < p; r++) all.set(inputs[r]!, r * c);
      for (let r = 0; r < p; r++) out.push(all);
      break;
    }
    case 'broadcast': {
      const v = Float64Array.from(inputs[spec.root]!);
      for (let r = 0; r < p; r++) out.push(v);
      break;
    }
    case 'alltoall': {
      for (let r = 0; r < p; r++) {
        const o = new Float64Array(p * c);
        for (let j = 0; j < p; j++) o.set(inputs[j]!.subarray(r * c, (r + 1) * c), j * c);
        out.push(o);
      }
      break;
    }
    case 'sendrecv': {
      for (let r = 0; r < p; r++) out.push(Float64Array.from(inputs[(r - 1 + p) % p]!));
      break;
    }
    case 'barrier':
      for (let r = 0; r < p; r++) out.push(new Float64Array(0));
      break;
  }
  return out;
}

/**
 * Tolerance for a float32 result against the float64 reference: a reduction over p float32
 * values accumulates at most about (p - 1) roundings, plus one for the final store.
 */
export function tolerance(spec: CollSpec, inputs: Float32Array[], i: number, expected: number): number {
  const eps = 2 ** -23;
  if (spec.coll !== 'allreduce' && spec.coll !== 'reduce' && spec.coll !== 'reducescatter') return 0;
  if (spec.op === 'max' || spec.op === 'min') return 0;
  if (spec.op === 'prod') return Math.abs(expected) * eps * (spec.p + 1) * 2;
  // sum / avg: bound by the sum of magnitudes
  let mag = 0;
  for (const x of inputs) mag += Math.abs(x[i]!);
  if (spec.op === 'avg') mag /= spec.p;
  return mag * eps * (spec.p + 1);
}

export interface CheckResult {
  wrong: number;
  maxAbsErr: number;
  maxRelErr: number;
}

/** Compare each rank's result with the reference. `results[r]` is rank r's output region. */
export function checkOutputs(spec: CollSpec, inputs: Float32Array[], results: (Float32Array | null)[]): CheckResult {
  const exp = expectedOutputs(spec, inputs);
  let wrong = 0, maxAbsErr = 0, maxRelErr = 0;
  for (let r = 0; r < spec.p; r++) {
    const e = exp[r];
    if (!e) continue;
    const g = results[r];
    if (!g || g.length !== e.length) {
      wrong += e.length;
      continue;
    }
    const c = spec.count;
    for (let i = 0; i < e.length; i++) {
      const want = e[i]!, got = g[i]!;
      const err = Math.abs(got - want);
      // index into the inputs for the tolerance: reducescatter result r covers input block r
      const ii = spec.coll === 'reducescatter' ? r * c + i : i;
      const tol = tolerance(spec, inputs, ii, want);
      if (!(err <= tol) && !(Number.isNaN(want) && Number.isNaN(got))) wrong++;
      if (err > maxAbsErr) maxAbsErr = err;
      const rel = want !== 0 ? err / Math.abs(want) : err;
      if (rel > maxRelErr) maxRelErr = rel;
    }
  }
  return { wrong, maxAbsErr, maxRelErr };
}

/** Deterministic pseudo-random inputs for tests (xorshift), values suited to the op. */
export function randomInputs(spec: CollSpec, seed = 1): Float32Array[] {
  const n = ioSizes({ ...spec, inPlace: false }).in;
  let s = (seed * 2654435761) >>> 0 || 1;
  const rnd = () => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return s / 4294967296;
  };
  const out: Float32Array[] = [];
  for (let r = 0; r < spec.p; r++) {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = spec.op === 'prod' ? 0.9 + 0.2 * rnd() : (rnd() - 0.5) * 8;
    out.push(a);
  }
  return out;
}
