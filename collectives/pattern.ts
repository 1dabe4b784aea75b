/**
 * Deterministic input patterns and O(1)-per-element checks used by `collemu bench -c 1` (the role
 * of nccl-tests' data generator). Values are small integers (sum/max/min exact in float32 for any
 * rank count we run) or powers of two (prod exact), so the expected value of every element comes
 * from a table of period 51 computed in float64, and each rank checks its own output in O(n).
 */
import type { ReduceOp } from '../runtime/ir.js';
import type { CollSpec } from './types.js';

const PERIOD = 51; // lcm(17, 3)

/** Input value of rank r at global input index g (index within the rank's whole input). */
export function patternValue(r: number, g: number, op: ReduceOp): number {
  if (op === 'prod') return 2 ** (((g + r) % 3) - 1);
  return ((g * 7 + r * 13) % 17) - 8;
}

function reduceTable(p: number, op: ReduceOp): Float64Array {
  const t = new Float64Array(PERIOD);
  for (let g = 0; g < PERIOD; g++) {
    let acc = patternValue(0, g, op);
    for (let r = 1; r < p; r++) {
      const v = patternValue(r, g, op);
      acc = op === 'prod' ? acc * v : op === 'max' ? Math.max(acc, v) : op === 'min' ? Math.min(acc, v) : acc + v;
    }
    t[g] = op === 'avg' ? acc / p : acc;
  }
  return t;
}

/** Fill rank r's input (a view of count elements, or p*count for reducescatter/alltoall). */
export function fillInput(spec: CollSpec, r: number, view: Float32Array): void {
  const op = spec.op;
  // values repeat with period 51 in g: build one period and tile it
  const per = new Float32Array(PERIOD);
  for (let g = 0; g < PERIOD; g++) per[g] = patternValue(r, g, op);
  const n = view.length;
  for (let i = 0; i < n; i += PERIOD) view.set(i + PERIOD <= n ? per : per.subarray(0, n - i), i);
}

export interface PatternCheck { wrong: number; maxErr: number }

/** Check rank r's output region (view) against the pattern's expected values. */
export function checkPattern(spec: CollSpec, r: number, view: Float32Array): PatternCheck {
  const { p, count: c, coll, op } = spec;
  let wrong = 0, maxErr = 0;
  const cmp = (got: number, want: number, tol: number) => {
    const e = Math.abs(got - want);
    if (!(e <= tol)) wrong++;
    if (e > maxErr || Number.isNaN(e)) maxErr = Number.isNaN(e) ? Infinity : e;
  };
  const avgTol = (w: number) => Math.abs(w) * 2 ** -22 + 1e-30;
  switch (coll) {
    case 'allreduce':
    case 'reduce':
    case 'reducescatter': {
      if (coll === 'reduce' && r !== spec.root) break;
      const t = reduceTable(p, op);
      const base = coll === 'reducescatter' ? r * c : 0;
      for (let i = 0; i < view.length; i++) {
        const w = t[(base + i) % PERIOD]!;
        cmp(view[i]!, w, op === 'avg' ? avgTol(w) : 0);
      }
      break;
    }
    case 'allgather':
      for (let j = 0; j < p; j++) for (let i = 0; i < c; i++) cmp(view[j * c + i]!, patternValue(j, i, op), 0);
      break;
    case 'alltoall':
      for (let j = 0; j < p; j++) for (let i = 0; i < c; i++) cmp(view[j * c + i]!, patternValue(j, r * c + i, op), 0);
      break;
    case 'broadcast':
      for (let i = 0; i < view.length; i++) cmp(view[i]!, patternValue(spec.root, i, op), 0);
      break;
    case 'sendrecv': {
      const src = (r - 1 + p) % p;
      for (let i = 0; i < view.length; i++) cmp(view[i]!, patternValue(src, i, op), 0);
      break;
    }
    case 'barrier':
      break;
  }
  return { wrong, maxErr };
}
