import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { ReduceOp } from '../runtime/ir.js';
import { createJsKernels, createKernels, createWasmKernels, kernelsModule, wasmSimdAvailable, type Kernels } from '../runtime/kernels.js';
import { KERNELS_WAT_SHA256 } from '../runtime/kernels-wasm.js';
import { reduceJs, scaleJs } from '../runtime/reduce.js';

const OPS: ReduceOp[] = ['sum', 'prod', 'max', 'min', 'avg'];
const PAGE = 65536;

/** deterministic PRNG (mulberry32) */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SPECIAL_BITS = [
  0x7fc00000, // NaN
  0xffc00000, // -NaN
  0x7fa00001, // signalling NaN with payload
  0x7fc12345, // quiet NaN with payload
  0x00000000, // +0
  0x80000000, // -0
  0x7f800000, // +Inf
  0xff800000, // -Inf
  0x00000001, // smallest denormal
  0x80000001,
  0x007fffff, // largest denormal
  0x807fffff,
  0x00800000, // smallest normal
  0x7f7fffff, // FLT_MAX
  0xff7fffff,
  0x3f800000, // 1
  0xbf800000, // -1
];

/** Fill n float32 bit patterns: specials, denormals, wide-exponent randoms, ordinary values. */
function fillBits(u: Uint32Array, rand: () => number): void {
  const f = new Float32Array(u.buffer, u.byteOffset, u.length);
  for (let i = 0; i < u.length; i++) {
    const r = rand();
    if (r < 0.2) u[i] = SPECIAL_BITS[Math.floor(rand() * SPECIAL_BITS.length)]!;
    else if (r < 0.3) u[i] = (Math.floor(rand() * 0x800000) | (rand() < 0.5 ? 0x80000000 : 0)) >>> 0; // denormal
    else if (r < 0.6) u[i] = Math.floor(rand() * 4294967296) >>> 0; // any bit pattern
    else f[i] = (rand() - 0.5) * 8; // ordinary
  }
}

/** Compare two float32 results: bit-identical unless both are NaN (NaN payload bits are unspecified). */
function mismatches(got: Uint32Array, want: Uint32Array): string[] {
  const out: string[] = [];
  for (let i = 0; i < want.length; i++) {
    const g = got[i]!;
    const w = want[i]!;
    if (g === w) continue;
    const gNaN = (g & 0x7f800000) === 0x7f800000 && (g & 0x7fffff) !== 0;
    const wNaN = (w & 0x7f800000) === 0x7f800000 && (w & 0x7fffff) !== 0;
    if (gNaN && wNaN) continue;
    out.push(`[${i}] got 0x${g.toString(16)} want 0x${w.toString(16)}`);
    if (out.length >= 5) break;
  }
  return out;
}

function bitsOf(f: Float32Array): Uint32Array {
  return new Uint32Array(f.slice().buffer);
}

function sharedMemory(bytes: number): WebAssembly.Memory {
  const pages = Math.max(1, Math.ceil(bytes / PAGE));
  return new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
}

/**
 * Run kernel.reduce on a/b placed at the given element offsets of `mem` and compare to reduceJs on
 * private copies. Returns mismatch descriptions (empty when identical).
 */
function checkReduce(k: Kernels, n: number, op: ReduceOp, offs: { a: number; b: number; d: number | 'a' | 'b' }, seed: number): string[] {
  const rand = rng(seed);
  const bufA = new Uint32Array(n);
  const bufB = new Uint32Array(n);
  fillBits(bufA, rand);
  fillBits(bufB, rand);
  const fa = new Float32Array(bufA.buffer);
  const fb = new Float32Array(bufB.buffer);
  const want = new Float32Array(n);
  reduceJs(want, fa, fb, op);

  const u = new Uint32Array(k.memory.buffer);
  u.fill(0xdeadbeef);
  u.set(bufA, offs.a);
  u.set(bufB, offs.b);
  const d = offs.d === 'a' ? offs.a : offs.d === 'b' ? offs.b : offs.d;
  k.reduce(d * 4, offs.a * 4, offs.b * 4, n, op);
  const bad = mismatches(u.subarray(d, d + n), bitsOf(want));
  // nothing outside dst was written (the sentinel just before and after)
  if (d > 0 && u[d - 1] !== 0xdeadbeef && d - 1 !== offs.a + n - 1 && d - 1 !== offs.b + n - 1) bad.push('wrote before dst');
  if (d + n < u.length && u[d + n] !== 0xdeadbeef && d + n !== offs.a && d + n !== offs.b) bad.push('wrote after dst');
  return bad;
}

const available = wasmSimdAvailable();

describe('kernel module', () => {
  it('is available on this Node and compiles once per thread', () => {
    expect(available).toBe(true);
    expect(kernelsModule()).toBe(kernelsModule());
  });

  it('runtime/kernels-wasm.ts was assembled from the current runtime/kernels.wat', () => {
    const wat = readFileSync(new URL('../runtime/kernels.wat', import.meta.url), 'utf8');
    expect(createHash('sha256').update(wat).digest('hex')).toBe(KERNELS_WAT_SHA256);
  });

  it('createKernels picks WASM SIMD for a shared memory and JS for a non-shared one', () => {
    expect(createKernels(sharedMemory(PAGE)).kind).toBe('wasm-simd');
    expect(createKernels(new WebAssembly.Memory({ initial: 1, maximum: 1 })).kind).toBe('js');
    expect(createKernels(sharedMemory(PAGE), { impl: 'js' }).kind).toBe('js');
  });
});

for (const impl of ['wasm-simd', 'js'] as const) {
  describe(`${impl} kernels: bit-identical to reduceJs/scaleJs`, () => {
    const mem = sharedMemory(4 * PAGE); // 64 Ki floats
    const k = impl === 'wasm-simd' ? createWasmKernels(mem) : createJsKernels(mem);

    it('kind', () => {
      expect(k.kind).toBe(impl);
      expect(k.simd).toBe(impl === 'wasm-simd');
    });

    for (const op of OPS) {
      it(`${op}: lengths 0..67, aligned and unaligned element offsets`, () => {
        const bad: string[] = [];
        for (let n = 0; n <= 67; n++) {
          // 16-byte aligned, then every 4-byte misalignment mix of dst/a/b
          const layouts = [
            { a: 0, b: 1024, d: 2048 },
            { a: 1, b: 1026, d: 2051 },
            { a: 3, b: 1024, d: 2049 },
            { a: 2, b: 1027, d: 2048 },
          ];
          for (const [li, l] of layouts.entries()) {
            const m = checkReduce(k, n, op, l, 1000 * n + li);
            if (m.length) bad.push(`n=${n} layout=${li}: ${m.join(', ')}`);
          }
        }
        expect(bad).toEqual([]);
      });

      it(`${op}: aliasing dst==a and dst==b`, () => {
        const bad: string[] = [];
        for (const n of [0, 1, 3, 4, 5, 15, 16, 17, 63, 64, 67, 1000]) {
          for (const d of ['a', 'b'] as const) {
            const m = checkReduce(k, n, op, { a: 5, b: 2000, d }, 7 * n + (d === 'a' ? 1 : 2));
            if (m.length) bad.push(`n=${n} dst==${d}: ${m.join(', ')}`);
          }
        }
        expect(bad).toEqual([]);
      });

      it(`${op}: large (20000 elements, unaligned)`, () => {
        expect(checkReduce(k, 20_001, op, { a: 1, b: 20_010, d: 40_023 }, 99)).toEqual([]);
        expect(checkReduce(k, 65_536 / 2 - 7, op, { a: 3, b: 32_771, d: 'a' }, 98)).toEqual([]);
      });
    }

    it('byte offsets that are not multiples of 4', () => {
      const n = 37;
      const rand = rng(5);
      const bytes = new Uint8Array(mem.buffer);
      for (const op of OPS) {
        for (const [da, db, dd] of [[1, 2, 3], [2, 0, 1], [3, 3, 0]] as const) {
          const ua = new Uint32Array(n);
          const ub = new Uint32Array(n);
          fillBits(ua, rand);
          fillBits(ub, rand);
          const want = new Float32Array(n);
          reduceJs(want, new Float32Array(ua.buffer), new Float32Array(ub.buffer), op);
          const A = 1000 + da;
          const B = 2000 + db;
          const D = 3000 + dd;
          bytes.set(new Uint8Array(ua.buffer), A);
          bytes.set(new Uint8Array(ub.buffer), B);
          k.reduce(D, A, B, n, op);
          const got = new Uint32Array(bytes.slice(D, D + 4 * n).buffer);
          expect(mismatches(got, bitsOf(want))).toEqual([]);
        }
      }
    });

    it('n = 0 touches nothing, even at the very end of memory', () => {
      const u = new Uint32Array(mem.buffer);
      u.fill(7);
      const end = mem.buffer.byteLength;
      k.reduce(end, end, end, 0, 'sum');
      k.scale(end, 0, 2);
      expect(u.every((x) => x === 7)).toBe(true);
    });

    it('reduce at the very end of memory works, past it is a RangeError', () => {
      const end = mem.buffer.byteLength;
      const f = new Float32Array(mem.buffer);
      f[f.length - 1] = 1.5;
      k.reduce(end - 4, end - 4, end - 4, 1, 'sum');
      expect(f[f.length - 1]).toBe(3);
      expect(() => k.reduce(end - 4, end - 8, 0, 2, 'sum')).toThrow(RangeError);
      expect(() => k.scale(end - 2, 1, 2)).toThrow(RangeError);
      expect(() => k.reduce(0, 0, 0, -1, 'sum')).toThrow(RangeError);
      expect(() => k.reduce(0, 0, 0, 1, 'xor' as ReduceOp)).toThrow(TypeError);
    });

    it('scale: lengths 0..67, unaligned, factors incl. NaN, ±0, ±Inf, denormal, non-float32', () => {
      const factors = [2, 0.5, -3, 0, -0, NaN, Infinity, -Infinity, 1e-45, 3e-39, 0.1, 1 / 3, 1e39, 16777217];
      const bad: string[] = [];
      const u = new Uint32Array(mem.buffer);
      for (const [fi, factor] of factors.entries()) {
        for (let n = 0; n <= 67; n++) {
          for (const off of [0, 1, 2, 3]) {
            const src = new Uint32Array(n);
            fillBits(src, rng(n * 31 + off + fi * 7919));
            const want = new Float32Array(src.slice().buffer);
            scaleJs(want, factor);
            u.fill(0xdeadbeef);
            u.set(src, 100 + off);
            k.scale((100 + off) * 4, n, factor);
            const m = mismatches(u.subarray(100 + off, 100 + off + n), bitsOf(want));
            if (u[99 + off] !== 0xdeadbeef || u[100 + off + n] !== 0xdeadbeef) m.push('wrote outside');
            if (m.length) bad.push(`factor=${factor} n=${n} off=${off}: ${m.join(', ')}`);
          }
        }
      }
      expect(bad).toEqual([]);
    });

    it('scale large, odd byte offset', () => {
      const n = 30_001;
      const src = new Uint32Array(n);
      fillBits(src, rng(3));
      const want = new Float32Array(src.slice().buffer);
      scaleJs(want, 0.7);
      const bytes = new Uint8Array(mem.buffer);
      bytes.set(new Uint8Array(src.buffer), 9);
      k.scale(9, n, 0.7);
      expect(mismatches(new Uint32Array(bytes.slice(9, 9 + 4 * n).buffer), bitsOf(want))).toEqual([]);
    });
  });
}

describe('signed zeros and NaN follow Math.max/Math.min', () => {
  const mem = sharedMemory(PAGE);
  const k = createWasmKernels(mem);
  const f = new Float32Array(mem.buffer);
  const cases: [number, number][] = [[-0, 0], [0, -0], [-0, -0], [0, 0], [NaN, 1], [1, NaN], [NaN, -Infinity], [-Infinity, NaN], [NaN, NaN]];
  for (const n of [cases.length, 16 + cases.length]) {
    // n = 9 runs the 4-wide loop and the scalar tail; n = 25 also the 16-wide loop
    it(`n=${n}`, () => {
      for (let i = 0; i < n; i++) {
        const [x, y] = cases[i % cases.length]!;
        f[i] = x;
        f[64 + i] = y;
      }
      for (const [op, ref] of [['max', Math.max], ['min', Math.min]] as const) {
        k.reduce(128 * 4, 0, 64 * 4, n, op);
        for (let i = 0; i < n; i++) {
          const [x, y] = cases[i % cases.length]!;
          expect(Object.is(f[128 + i], ref(x, y)), `${op}(${x}, ${y}) at ${i} = ${f[128 + i]}`).toBe(true);
        }
      }
    });
  }
});

describe('a large reduce (4M elements)', () => {
  it('sum and max match reduceJs', () => {
    const n = (1 << 22) + 3;
    const mem = sharedMemory(3 * 4 * n + 64);
    const k = createWasmKernels(mem);
    const u = new Uint32Array(mem.buffer);
    const rand = rng(11);
    fillBits(u.subarray(1, 1 + n), rand);
    fillBits(u.subarray(1 + n, 1 + 2 * n), rand);
    const f = new Float32Array(mem.buffer);
    for (const op of ['sum', 'max'] as const) {
      const want = new Float32Array(n);
      reduceJs(want, f.subarray(1, 1 + n), f.subarray(1 + n, 1 + 2 * n), op);
      const D = 1 + 2 * n;
      k.reduce(D * 4, 4, (1 + n) * 4, n, op);
      expect(mismatches(u.subarray(D, D + n), bitsOf(want))).toEqual([]);
    }
  });
});
