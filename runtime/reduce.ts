/**
 * Plain TypeScript element-wise kernels over Float32Array views. They are the reference the WASM
 * SIMD kernels (runtime/kernels.ts) must match bit for bit: float32 +, *, max, min computed in
 * float64 and rounded once to float32 equal the float32 IEEE operation (53 >= 2*24 + 2).
 */
import type { ReduceOp } from './ir.js';

/** dst[i] = a[i] op b[i]; dst may alias a or b. 'avg' reduces as sum. */
export function reduceJs(dst: Float32Array, a: Float32Array, b: Float32Array, op: ReduceOp): void {
  const n = dst.length;
  switch (op) {
    case 'sum':
    case 'avg':
      for (let i = 0; i < n; i++) dst[i] = a[i]! + b[i]!;
      break;
    case 'prod':
      for (let i = 0; i < n; i++) dst[i] = a[i]! * b[i]!;
      break;
    case 'max':
      for (let i = 0; i < n; i++) dst[i] = Math.max(a[i]!, b[i]!);
      break;
    case 'min':
      for (let i = 0; i < n; i++) dst[i] = Math.min(a[i]!, b[i]!);
      break;
  }
}

export function scaleJs(dst: Float32Array, factor: number): void {
  const f = Math.fround(factor);
  for (let i = 0; i < dst.length; i++) dst[i] = dst[i]! * f;
}
