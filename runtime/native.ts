/**
 * collemu's optional native helpers (native/*.c), built into dist/native/ by
 * scripts/build-native.mjs during `npm install`. Each is loaded once per thread; when one is not
 * built (no C compiler or Node headers) or disabled by its environment variable, it is undefined and
 * the runtime uses its portable path, with the same results and virtual times (tested):
 *
 *   YIELD    native/yieldwait.c  sched_yield polling for waiting ranks     COLLEMU_NO_YIELD=1
 *   NATIVE   native/kernels.c    reduce/copy between ranks' memories       COLLEMU_NO_NATIVE_KERNELS=1
 */
import { createRequire } from 'node:module';

/** native/yieldwait.c */
export interface YieldWait { pollYieldGE(i32: Int32Array, index: number, target: number, budgetNs: number, busyIndex?: number, maxBusy?: number): number }

/**
 * native/kernels.c: element indices into Float32Arrays (any rank's memory); op codes as
 * runtime/kernels.ts REDUCE_OPCODE. dst may be exactly a or b.
 */
export interface NativeKernels {
  /** dst[di+i] = a[ai+i] op b[bi+i] for i < n */
  reduce(dst: Float32Array, di: number, a: Float32Array, ai: number, b: Float32Array, bi: number, n: number, op: number): void;
  /**
   * dst = (((a op s0) op s1) ... op s_{k-1}) element-wise over n elements, s_j = srcs[j] from
   * srcIdx[j]: bit-identical to k reduce calls in order. dst may be exactly a; no source may
   * overlap dst. At most 64 sources.
   */
  reduceMany(dst: Float32Array, di: number, a: Float32Array, ai: number, srcs: Float32Array[], srcIdx: number[], n: number, op: number): void;
  /** dst[di+i] = src[si+i] for i < n (memmove) */
  copy(dst: Float32Array, di: number, src: Float32Array, si: number, n: number): void;
}

/** where each loaded helper came from (for benchmarks that load it in their own workers) */
export const NATIVE_PATHS: Record<string, string> = {};

function load<T>(name: string, disable: string): T | undefined {
  if (process.env[disable]) return undefined;
  const req = createRequire(import.meta.url);
  // dist/runtime/native.js -> dist/native/; runtime/native.ts (run from source, tests) -> dist/native/
  for (const rel of [`../native/${name}.node`, `../dist/native/${name}.node`]) {
    try {
      const m = req(rel) as T;
      NATIVE_PATHS[name] = req.resolve(rel);
      return m;
    } catch {
      // not there: try the next layout, or go without
    }
  }
  return undefined;
}

export const YIELD = load<YieldWait>('yieldwait', 'COLLEMU_NO_YIELD');
export const NATIVE = load<NativeKernels>('kernels', 'COLLEMU_NO_NATIVE_KERNELS');
