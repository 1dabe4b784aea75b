/**
 * Element-wise float32 kernels over one rank's device memory (a shared WebAssembly.Memory),
 * addressed by BYTE offsets:
 *
 *   reduce(dst, a, b, n, op)   dst[i] = a[i] op b[i] for i < n ('avg' reduces as 'sum')
 *   scale(dst, n, factor)      dst[i] = dst[i] * fround(factor)
 *
 * Two implementations with one interface:
 *   - 'wasm-simd': the hand-written module runtime/kernels.wat (f32x4, 16 elements per iteration,
 *     scalar tail), assembled into runtime/kernels-wasm.ts. It imports the memory, so one instance
 *     per memory serves every buffer of the rank. The WebAssembly.Module is compiled once per
 *     thread and cached; instantiation (cheap) is per memory.
 *   - 'js': runtime/reduce.ts (reduceJs/scaleJs) over views of the memory's buffer; the fallback
 *     when WebAssembly SIMD or shared memories are unavailable.
 *
 * Both give results bit-identical to reduceJs/scaleJs for every input whose result is not NaN;
 * a NaN result is NaN in both but its payload bits are unspecified (JS itself leaves the bits of a
 * NaN written to a Float32Array implementation-defined). -0/+0 follow Math.max/Math.min.
 *
 * Offsets need not be aligned (4-byte multiples are the fast path for the JS fallback; the WASM
 * kernel does not care). dst may be exactly a or exactly b; partial overlap at a different offset
 * is not supported. Ranges are checked against the memory: a bad range is a RangeError.
 */
import type { ReduceOp } from './ir.js';
import { KERNELS_WASM_BASE64 } from './kernels-wasm.js';
import { reduceJs, scaleJs } from './reduce.js';

export type KernelsKind = 'wasm-simd' | 'js';

export interface Kernels {
  readonly kind: KernelsKind;
  /** true for the WASM SIMD implementation */
  readonly simd: boolean;
  readonly memory: WebAssembly.Memory;
  /** dst := a op b over n float32 elements; byte offsets into the memory */
  reduce(dstByteOff: number, aByteOff: number, bByteOff: number, n: number, op: ReduceOp): void;
  /** x := x * factor over n float32 elements at byteOff (factor rounded to float32 first) */
  scale(byteOff: number, n: number, factor: number): void;
}

/** Opcodes of the WASM `reduce` export. */
export const REDUCE_OPCODE: Readonly<Record<ReduceOp, number>> = { sum: 0, avg: 0, prod: 1, max: 2, min: 3 };

type ReduceFn = (d: number, a: number, b: number, n: number, op: number) => void;
type ScaleFn = (d: number, n: number, f: number) => void;

// ------------------------------------------------------------------------------ module cache

let wasmBytes: Uint8Array | undefined;
let simdAvailable: boolean | undefined;
let cachedModule: WebAssembly.Module | undefined;

/** The kernel module's binary (decoded once per thread). */
export function kernelsWasmBytes(): Uint8Array {
  wasmBytes ??= new Uint8Array(Buffer.from(KERNELS_WASM_BASE64, 'base64'));
  return wasmBytes;
}

/**
 * True when this engine can compile the kernel module, i.e. supports WebAssembly SIMD (v128) and
 * shared memories (threads). Cached per thread.
 */
export function wasmSimdAvailable(): boolean {
  if (simdAvailable === undefined) {
    try {
      simdAvailable = typeof WebAssembly === 'object' && WebAssembly.validate(kernelsWasmBytes());
    } catch {
      simdAvailable = false;
    }
  }
  return simdAvailable;
}

/** The compiled kernel module, compiled on first use and cached for the thread. */
export function kernelsModule(): WebAssembly.Module {
  if (!cachedModule) {
    if (!wasmSimdAvailable()) throw new Error('WebAssembly SIMD kernels are not available on this engine');
    cachedModule = new WebAssembly.Module(kernelsWasmBytes());
  }
  return cachedModule;
}

// ------------------------------------------------------------------------------ checks

function checkRange(memory: WebAssembly.Memory, what: string, byteOff: number, n: number): void {
  const len = memory.buffer.byteLength;
  if (!Number.isInteger(byteOff) || byteOff < 0 || byteOff + 4 * n > len) {
    throw new RangeError(`kernel ${what}: byte range [${byteOff}, ${byteOff + 4 * n}) is outside the ${len}-byte memory`);
  }
}

function checkCount(n: number): void {
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`kernel: bad element count ${n}`);
}

function opcode(op: ReduceOp): number {
  const c = REDUCE_OPCODE[op];
  if (c === undefined) throw new TypeError(`kernel: unknown reduce op ${String(op)}`);
  return c;
}

// ------------------------------------------------------------------------------ WASM SIMD

/** Instantiate the WASM SIMD kernels on `memory` (must be a shared memory of at most 4 GiB). */
export function createWasmKernels(memory: WebAssembly.Memory): Kernels {
  const inst = new WebAssembly.Instance(kernelsModule(), { env: { memory } });
  const reduceW = inst.exports['reduce'] as unknown as ReduceFn;
  const scaleW = inst.exports['scale'] as unknown as ScaleFn;
  return {
    kind: 'wasm-simd',
    simd: true,
    memory,
    reduce(d, a, b, n, op) {
      const code = opcode(op);
      checkCount(n);
      if (n === 0) return;
      checkRange(memory, 'reduce dst', d, n);
      checkRange(memory, 'reduce a', a, n);
      checkRange(memory, 'reduce b', b, n);
      // offsets >= 2^31 become negative i32s, which wasm reads back as the same unsigned address
      reduceW(d, a, b, n, code);
    },
    scale(d, n, factor) {
      checkCount(n);
      if (n === 0) return;
      checkRange(memory, 'scale', d, n);
      scaleW(d, n, factor); // number -> f32 conversion at the boundary is Math.fround
    },
  };
}

// ------------------------------------------------------------------------------ JS fallback

/** The same interface in plain TypeScript (runtime/reduce.ts) over the memory's buffer. */
export function createJsKernels(memory: WebAssembly.Memory): Kernels {
  let buf: ArrayBufferLike | undefined;
  let f32: Float32Array<ArrayBufferLike> = new Float32Array(0);
  let dv: DataView<ArrayBufferLike> = new DataView(new ArrayBuffer(0));
  const refresh = (): void => {
    const cur = memory.buffer; // a new object after memory.grow
    if (cur !== buf) {
      buf = cur;
      f32 = new Float32Array(cur, 0, cur.byteLength >>> 2);
      dv = new DataView(cur);
    }
  };
  const view = (byteOff: number, n: number): Float32Array => f32.subarray(byteOff / 4, byteOff / 4 + n);
  return {
    kind: 'js',
    simd: false,
    memory,
    reduce(d, a, b, n, op) {
      opcode(op);
      checkCount(n);
      if (n === 0) return;
      checkRange(memory, 'reduce dst', d, n);
      checkRange(memory, 'reduce a', a, n);
      checkRange(memory, 'reduce b', b, n);
      refresh();
      if (d % 4 === 0 && a % 4 === 0 && b % 4 === 0) {
        reduceJs(view(d, n), view(a, n), view(b, n), op);
        return;
      }
      // byte offsets that are not multiples of 4: same arithmetic through a DataView
      const f =
        op === 'prod' ? (x: number, y: number) => x * y
        : op === 'max' ? Math.max
        : op === 'min' ? Math.min
        : (x: number, y: number) => x + y;
      for (let i = 0; i < n; i++) {
        dv.setFloat32(d + 4 * i, f(dv.getFloat32(a + 4 * i, true), dv.getFloat32(b + 4 * i, true)), true);
      }
    },
    scale(d, n, factor) {
      checkCount(n);
      if (n === 0) return;
      checkRange(memory, 'scale', d, n);
      refresh();
      if (d % 4 === 0) {
        scaleJs(view(d, n), factor);
        return;
      }
      const fr = Math.fround(factor);
      for (let i = 0; i < n; i++) dv.setFloat32(d + 4 * i, dv.getFloat32(d + 4 * i, true) * fr, true);
    },
  };
}

// ------------------------------------------------------------------------------ factory

export interface CreateKernelsOptions {
  /** 'auto' (default): WASM SIMD when available and the memory links, else JS */
  impl?: 'auto' | KernelsKind;
}

/**
 * Kernels over `memory`: WASM SIMD when the engine supports it (and the memory is a shared memory
 * the module can import), else the plain-JS fallback. `impl` forces one; forcing 'wasm-simd' where
 * it is unavailable throws.
 */
export function createKernels(memory: WebAssembly.Memory, opts: CreateKernelsOptions = {}): Kernels {
  const impl = opts.impl ?? 'auto';
  if (impl === 'js') return createJsKernels(memory);
  if (impl === 'wasm-simd') return createWasmKernels(memory);
  if (!wasmSimdAvailable()) return createJsKernels(memory);
  try {
    return createWasmKernels(memory);
  } catch (e) {
    // e.g. a non-shared memory: the module imports a shared one
    if (e instanceof Error && e.name === 'LinkError') return createJsKernels(memory);
    throw e;
  }
}
