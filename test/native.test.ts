/**
 * The native data-plane kernels (native/kernels.c via runtime/native.ts, built by
 * scripts/build-native.mjs at install) and what the emulator does with them:
 *  - reduce / reduceMany / copy are bit-identical to the plain TypeScript kernels (runtime/reduce.ts)
 *    for every op, on special values, unaligned element offsets, aliasing dst = a, and sizes past
 *    the streaming-store threshold (4 MB); bad arguments throw;
 *  - fused receive runs (worker fuse()) happen where messages are already posted and give exact
 *    data; padding receives (`pad`) write nothing in either executor;
 *  - with and without the native kernels (COLLEMU_NO_NATIVE_KERNELS): the same virtual times and
 *    exact data for the algorithms that use fused runs, streaming stores and padding.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeBuffers } from '../collectives/harness.js';
import { checkOutputs, randomInputs } from '../collectives/reference.js';
import { resolveAlgorithm } from '../collectives/registry.js';
import { bufferSizes, outputRegion, type CollSpec } from '../collectives/types.js';
import { Cluster } from '../runtime/cluster.js';
import { IRError, REDUCE_OPS, validatePrograms, type Op, type Program, type ReduceOp } from '../runtime/ir.js';
import { REDUCE_OPCODE } from '../runtime/kernels.js';
import { NATIVE, YIELD } from '../runtime/native.js';
import { reduceJs } from '../runtime/reduce.js';
import { simulate, type RankBuffers } from '../runtime/simulate.js';
import { makeTopology } from '../runtime/topology.js';

const BIN = join(import.meta.dirname, '..', 'bin', 'collemu');
const hasCompiler = spawnSync(process.env.CC || 'cc', ['--version']).status === 0;

/** values with specials (±0, ±inf, tiny, huge) mixed into random ones */
function values(n: number, seed: number): Float32Array {
  const f = new Float32Array(new SharedArrayBuffer(4 * n));
  const specials = [0, -0, Infinity, -Infinity, 1e-40, -1e-40, 3.4e38, -3.4e38, 1, -1];
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    f[i] = s % 13 === 0 ? specials[s % specials.length]! : (s / 2 ** 31 - 1) * 1e3;
  }
  return f;
}

function sameBits(a: Float32Array, b: Float32Array): number {
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length), y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  let bad = 0;
  for (let i = 0; i < x.length; i++) {
    const nan = Number.isNaN(a[i]!) && Number.isNaN(b[i]!); // NaN payloads are unspecified
    if (x[i] !== y[i] && !nan) bad++;
  }
  return bad;
}

const describeNative = NATIVE ? describe : describe.skip;

describe('native kernels', () => {
  it('are built and loaded where a C compiler exists (unless turned off)', () => {
    if (!hasCompiler || process.env.COLLEMU_NO_NATIVE_KERNELS) return;
    expect(NATIVE).toBeDefined();
  });
});

describeNative('native kernels: bit-identical to runtime/reduce.ts', () => {
  const nk = NATIVE!;
  // 1.5 M elements = 6 MB: past the 4 MB streaming-store threshold
  for (const n of [0, 1, 7, 1000, 1_500_000]) {
    it(`reduce, every op, n = ${n}, offsets 0/3/5, dst = a and dst apart`, () => {
      const a = values(n + 8, 1), b = values(n + 8, 2);
      for (const op of REDUCE_OPS) {
        const code = REDUCE_OPCODE[op];
        // dst apart, odd element offsets
        const d = new Float32Array(new SharedArrayBuffer(4 * (n + 8)));
        nk.reduce(d, 5, a, 3, b, 0, n, code);
        const ref = new Float32Array(n);
        reduceJs(ref, a.subarray(3, 3 + n), b.subarray(0, n), op);
        expect(sameBits(d.subarray(5, 5 + n), ref), op).toBe(0);
        // dst = a
        const a2 = a.slice(), ref2 = new Float32Array(n);
        reduceJs(ref2, a.subarray(0, n), b.subarray(1, 1 + n), op);
        nk.reduce(a2, 0, a2, 0, b, 1, n, code);
        expect(sameBits(a2.subarray(0, n), ref2), `${op} in place`).toBe(0);
      }
    });
  }

  it('treats max/min like Math.max/Math.min on signed zeros and NaN', () => {
    const a = new Float32Array([-0, 0, NaN, 1, -0, 0]), b = new Float32Array([0, -0, 1, NaN, -0, 0]);
    const d = new Float32Array(6);
    nk.reduce(d, 0, a, 0, b, 0, 6, REDUCE_OPCODE.max);
    expect(Array.from(d).map((x) => Object.is(x, -0) ? '-0' : String(x))).toEqual(['0', '0', 'NaN', 'NaN', '-0', '0']);
    nk.reduce(d, 0, a, 0, b, 0, 6, REDUCE_OPCODE.min);
    expect(Array.from(d).map((x) => Object.is(x, -0) ? '-0' : String(x))).toEqual(['-0', '-0', 'NaN', 'NaN', '-0', '0']);
  });

  for (const n of [1, 4095, 4097, 1_200_000]) {
    it(`reduceMany equals k reduces in order, every op, n = ${n}`, () => {
      const srcs = [values(n + 2, 3), values(n + 2, 4), values(n + 2, 5), values(n + 2, 6)];
      const acc = values(n, 7);
      for (const op of REDUCE_OPS) {
        const ref = acc.slice();
        for (const s of srcs) reduceJs(ref, ref, s.subarray(2, 2 + n), op);
        // dst apart from a
        const d = new Float32Array(new SharedArrayBuffer(4 * n));
        nk.reduceMany(d, 0, acc, 0, srcs, srcs.map(() => 2), n, REDUCE_OPCODE[op]);
        expect(sameBits(d, ref), op).toBe(0);
        // dst = a
        const d2 = acc.slice();
        nk.reduceMany(d2, 0, d2, 0, srcs, srcs.map(() => 2), n, REDUCE_OPCODE[op]);
        expect(sameBits(d2, ref), `${op} in place`).toBe(0);
      }
      // no sources: a copy
      const d3 = new Float32Array(n);
      nk.reduceMany(d3, 0, acc, 0, [], [], n, 0);
      expect(sameBits(d3, acc)).toBe(0);
    });
  }

  it('copy is exact, overlapping or not, below and past the streaming threshold', () => {
    for (const n of [0, 3, 1_300_000]) {
      const s = values(n + 16, 8), d = new Float32Array(new SharedArrayBuffer(4 * (n + 16)));
      nk.copy(d, 7, s, 1, n);
      expect(sameBits(d.subarray(7, 7 + n), s.subarray(1, 1 + n))).toBe(0);
      const o = s.slice(), ref = s.slice();
      ref.copyWithin(3, 0, n);
      nk.copy(o, 3, o, 0, n); // overlapping: memmove
      expect(sameBits(o, ref)).toBe(0);
    }
  });

  it('rejects bad arguments with an error, not a crash', () => {
    const a = new Float32Array(8);
    expect(() => nk.reduce(a, 0, a, 0, a, 4, 5, 0)).toThrow(RangeError);
    expect(() => nk.reduce(a, -1, a, 0, a, 0, 1, 0)).toThrow(RangeError);
    expect(() => nk.reduce(a, 0.5, a, 0, a, 0, 1, 0)).toThrow(RangeError);
    expect(() => nk.reduce(a, 0, a, 0, a, 0, 1, 9)).toThrow(/op must be/);
    expect(() => nk.reduce(new Int32Array(8) as unknown as Float32Array, 0, a, 0, a, 0, 1, 0)).toThrow(TypeError);
    expect(() => nk.copy(a, 4, a, 0, 5)).toThrow(RangeError);
    expect(() => nk.reduceMany(a, 0, a, 0, [a], [6], 4, 0)).toThrow(RangeError);
    expect(() => nk.reduceMany(a, 0, a, 0, [a], [0, 1], 4, 0)).toThrow(TypeError);
    expect(() => nk.reduceMany(a, 0, a, 0, Array(65).fill(a), Array(65).fill(0), 1, 0)).toThrow(/too many/);
  });
});

describe('yield-polling stops when every core has a busy rank', () => {
  it('pollYieldGE(..., busyIndex, maxBusy) returns at once when busy >= maxBusy', () => {
    if (!YIELD) {
      if (hasCompiler && !process.env.COLLEMU_NO_YIELD) throw new Error('native helper not built (npm install builds it)');
      return;
    }
    const w = new Int32Array(new SharedArrayBuffer(16));
    w[1] = 3; // target never reached
    w[2] = 2; // busy ranks
    const t0 = performance.now();
    expect(YIELD.pollYieldGE(w, 1, 5, 50e6, 2, 2)).toBe(3); // 50 ms budget, but 2 busy >= 2
    expect(performance.now() - t0).toBeLessThan(25);
    const t1 = performance.now();
    expect(YIELD.pollYieldGE(w, 1, 5, 3e6, 2, 3)).toBe(3); // 2 busy < 3: the whole 3 ms budget
    expect(performance.now() - t1).toBeGreaterThanOrEqual(2.9);
    expect(() => YIELD!.pollYieldGE(w, 1, 5, 1, 9, 1)).toThrow(/busyIndex/);
  });
});

describe('element-wise reductions read their output region itself or a disjoint one', () => {
  // kernels that run in blocks (SIMD, native) would read a partly overlapping input after writing it
  const sizes = { in: 8, out: 8, tmp: 0 };
  const recvInto = (acc: { buf: 'in' | 'out'; off: number; len: number }): Program[] => [
    [{ k: 'send', peer: 1, src: { buf: 'in', off: 0, len: 4 } }],
    [{ k: 'recv', peer: 0, dst: { buf: 'out', off: 0, len: 4 }, op: 'sum', acc }],
  ];
  it('accepts acc = dst and a disjoint acc', () => {
    validatePrograms(recvInto({ buf: 'out', off: 0, len: 4 }), sizes);
    validatePrograms(recvInto({ buf: 'out', off: 4, len: 4 }), sizes);
    validatePrograms(recvInto({ buf: 'in', off: 1, len: 4 }), sizes);
  });
  it('rejects a partly overlapping acc, or reduce input, naming the regions', () => {
    expect(() => validatePrograms(recvInto({ buf: 'out', off: 1, len: 4 }), sizes)).toThrow(/rank 1 op 0: acc out\[1\.\.5\) overlaps dst out\[0\.\.4\) without being it/);
    const local: Program[] = [[{ k: 'reduce', a: { buf: 'in', off: 0, len: 4 }, b: { buf: 'out', off: 2, len: 4 }, dst: { buf: 'out', off: 0, len: 4 }, op: 'max' }]];
    expect(() => validatePrograms(local, sizes)).toThrow(/rank 0 op 0: reduce b out\[2\.\.6\) overlaps dst out\[0\.\.4\)/);
    const same: Program[] = [[{ k: 'reduce', a: { buf: 'out', off: 0, len: 4 }, b: { buf: 'in', off: 0, len: 4 }, dst: { buf: 'out', off: 0, len: 4 }, op: 'max' }]];
    validatePrograms(same, sizes);
  });
});

describe('validatePrograms rejects what no executor can run', () => {
  const sizes = { in: 8, out: 8, tmp: 0 };
  const R = (off: number, len: number) => ({ buf: 'out' as const, off, len });
  it('unknown reduction ops, non-finite costs and factors, and non-ops', () => {
    const recvOp = (op: string): Program[] => [
      [{ k: 'send', peer: 1, src: R(0, 4) }],
      [{ k: 'recv', peer: 0, dst: R(0, 4), op: op as ReduceOp }],
    ];
    for (const op of REDUCE_OPS) validatePrograms(recvOp(op), sizes);
    expect(() => validatePrograms(recvOp('xor'), sizes)).toThrow(/rank 1 op 0: unknown reduction op "xor" \(known: sum, prod, max, min, avg\)/);
    expect(() => validatePrograms([[{ k: 'reduce', a: R(0, 2), b: R(2, 2), dst: R(0, 2), op: 'mean' as ReduceOp }]], sizes)).toThrow(/rank 0 op 0: unknown reduction op "mean"/);
    expect(() => validatePrograms([[{ k: 'compute', flops: Infinity, bytes: 0 }]], sizes)).toThrow(/compute needs finite flops/);
    expect(() => validatePrograms([[{ k: 'compute', flops: 0, bytes: NaN }]], sizes)).toThrow(/compute needs finite flops/);
    validatePrograms([[{ k: 'compute', flops: 1e15, bytes: 1e12 }]], sizes);
    expect(() => validatePrograms([[{ k: 'scale', dst: R(0, 4), factor: NaN }]], sizes)).toThrow(/scale factor must be a finite number/);
    expect(() => validatePrograms([[null as unknown as Op]], sizes)).toThrow(IRError);
  });
});

describe('padding receives (pad) write no data', () => {
  // rank 0 sends a padding message then a data message to rank 1
  const programs: Program[] = [
    [{ k: 'send', peer: 1, src: { buf: 'in', off: 0, len: 4 } }, { k: 'send', peer: 1, src: { buf: 'in', off: 4, len: 4 } }],
    [{ k: 'recv', peer: 0, dst: { buf: 'out', off: 0, len: 4 }, op: 'sum', pad: true }, { k: 'recv', peer: 0, dst: { buf: 'out', off: 4, len: 4 } }],
  ];
  const sizes = { in: 8, out: 8, tmp: 0 };
  const topo = makeTopology('flat', { ranks: 2, linkBw: 100, linkLatency: 1 });
  const fill = (get: (r: number, b: 'in' | 'out') => Float32Array) => {
    get(0, 'in').set([1, 2, 3, 4, 5, 6, 7, 8]);
    get(1, 'out').set([-1, -1, -1, -1, -1, -1, -1, -1]);
  };

  it('is validated as a boolean', () => {
    validatePrograms(programs, sizes);
    const bad = [programs[0]!, [{ ...programs[1]![0]!, pad: 1 as unknown as boolean }, programs[1]![1]!]];
    expect(() => validatePrograms(bad, sizes)).toThrow(IRError);
  });

  it('the emulator and the simulator time it and leave dst as it was', async () => {
    const c = await Cluster.start(topo);
    try {
      const res = await c.run({ programs, sizes, beforeRun: (cl) => fill((r, b) => cl.view(r, b)) });
      expect(Array.from(c.view(1, 'out'))).toEqual([-1, -1, -1, -1, 5, 6, 7, 8]);
      const data = [0, 1].map(() => ({ in: new Float32Array(8), out: new Float32Array(8), tmp: new Float32Array(0) }));
      fill((r, b) => data[r]![b]);
      const sim = simulate({ topo, programs, data });
      expect(Array.from(data[1]!.out)).toEqual([-1, -1, -1, -1, 5, 6, 7, 8]);
      expect(res.time).toBe(sim.time);
      // timed like any message: the data message waits behind it on the port
      const plain = simulate({ topo, programs: [programs[0]!, [{ k: 'recv', peer: 0, dst: { buf: 'out', off: 0, len: 4 } }, programs[1]![1]!]] });
      expect(sim.time).toBe(plain.time);
    } finally {
      await c.close();
    }
  });
});

describeNative('fused receive runs', () => {
  let c: Cluster;
  const topo = makeTopology('flat', { ranks: 5, linkBw: 100, linkLatency: 1 });
  beforeAll(async () => { c = await Cluster.start(topo); });
  afterAll(async () => { await c.close(); });

  it('reduce messages that are already posted in one pass, exactly, with the same virtual time', async () => {
    // ranks 1..3 send their input to rank 0, then a token to rank 4; rank 4 collects the tokens and
    // tells rank 0, so when rank 0 receives, all three messages are posted: a fused run (with a
    // padding receive from rank 2 in it) is certain.
    const n = 70_000;
    const R = (buf: 'in' | 'out' | 'tmp', off = 0, len = n) => ({ buf, off, len });
    const programs: Program[] = [
      [
        { k: 'recv', peer: 4, dst: R('tmp', 0, 1) },
        { k: 'recv', peer: 1, dst: R('out'), op: 'sum', acc: R('in') },
        { k: 'recv', peer: 2, dst: R('tmp', 1, 8), pad: true },
        { k: 'recv', peer: 2, dst: R('out'), op: 'sum' },
        { k: 'recv', peer: 3, dst: R('out'), op: 'sum', acc: R('out') },
      ],
      ...[1, 2, 3].map((q): Program => [
        ...(q === 2 ? [{ k: 'send', peer: 0, src: R('tmp', 0, 8) } as const] : []),
        { k: 'send', peer: 0, src: R('in') },
        { k: 'send', peer: 4, src: R('tmp', 0, 1) },
      ]),
      [...[1, 2, 3].map((q) => ({ k: 'recv', peer: q, dst: R('tmp', q, 1) }) as const), { k: 'send', peer: 0, src: R('tmp', 0, 1) }],
    ];
    const sizes = { in: n, out: n, tmp: 16 };
    validatePrograms(programs, sizes);
    const inputs = [0, 1, 2, 3].map((r) => values(n, 10 + r));
    const res = await c.run({ programs, sizes, iters: 3, beforeRun: (cl) => { for (let r = 0; r < 4; r++) cl.view(r, 'in').set(inputs[r]!); } });
    expect(res.fusedRecvs).toBe(3 * 3); // three data receives per iteration
    const ref = new Float32Array(n);
    reduceJs(ref, inputs[0]!, inputs[1]!, 'sum');
    reduceJs(ref, ref, inputs[2]!, 'sum');
    reduceJs(ref, ref, inputs[3]!, 'sum');
    expect(sameBits(c.view(0, 'out').subarray(0, n), ref)).toBe(0);
    expect(res.time).toBe(simulate({ topo, programs }).time);
  });

  it('never fuses without the native kernels', async () => {
    const c2 = await Cluster.start(topo, { native: false });
    try {
      const spec: CollSpec = { coll: 'allreduce', p: 5, count: 40_000, op: 'sum', inPlace: false, root: 0 };
      const algo = resolveAlgorithm(spec, topo, 'direct');
      const res = await c2.run({ programs: algo.build(spec, topo), sizes: bufferSizes(spec, algo, topo), iters: 3, pattern: spec, check: true });
      expect(res.wrong).toBe(0);
      expect(res.fusedRecvs).toBe(0);
    } finally {
      await c2.close();
    }
  });
});

describeNative('fused receive runs: random fan-in programs', () => {
  // Rank 0 receives a random run of messages from ranks 1..3 (plain, reducing with a random op, into
  // one of a few regions, acc = dst, a disjoint region or none, padding in between); every message
  // is posted before rank 0 starts (ranks 1..3 send, then signal rank 4, which signals rank 0),
  // so fused runs happen wherever the rules allow. The data must be bit-identical to the
  // one-thread simulator's and to the emulator without native kernels, and the times equal.
  const topo = makeTopology('flat', { ranks: 5, linkBw: 100, linkLatency: 1 });
  let fast: Cluster, plain: Cluster;
  beforeAll(async () => { [fast, plain] = await Promise.all([Cluster.start(topo), Cluster.start(topo, { native: false })]); });
  afterAll(async () => { await Promise.all([fast.close(), plain.close()]); });

  it('give the same bits as one receive at a time, over 40 random programs', async () => {
    let seed = 12345;
    const rnd = (k: number) => {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      return seed % k;
    };
    const ops: (ReduceOp | undefined)[] = ['sum', 'sum', 'sum', 'max', 'min', 'prod', undefined];
    let fusedTotal = 0;
    for (let trial = 0; trial < 40; trial++) {
      const n = [1, 7, 4096, 70_001][rnd(4)]!;
      const R = (buf: 'in' | 'out' | 'tmp', off: number, len = n) => ({ buf, off, len });
      const dsts = [R('out', 0), R('out', n), R('tmp', 0)];
      const recvs: Op[] = [{ k: 'recv', peer: 4, dst: R('tmp', n, 1) }];
      const sends: Op[][] = [[], [], [], []];
      const k = 2 + rnd(10);
      const op = ops[rnd(ops.length)];
      for (let j = 0; j < k; j++) {
        const q = 1 + rnd(3);
        if (rnd(5) === 0) {
          // padding of another length, into scratch
          const len = 1 + rnd(8);
          sends[q]!.push({ k: 'send', peer: 0, src: R('tmp', rnd(8), len) });
          recvs.push({ k: 'recv', peer: q, dst: R('tmp', n + 1, len), pad: true, ...(op ? { op } : {}) });
          continue;
        }
        sends[q]!.push({ k: 'send', peer: 0, src: R('in', rnd(n + 1), n) });
        const dst = dsts[rnd(4) === 0 ? rnd(3) : 0]!;
        const mop = rnd(6) === 0 ? ops[rnd(ops.length)] : op;
        const a = rnd(4);
        recvs.push(mop === undefined ? { k: 'recv', peer: q, dst } : { k: 'recv', peer: q, dst, op: mop, ...(a === 0 ? { acc: R('in', rnd(n + 1)) } : a === 1 ? { acc: dst } : {}) });
      }
      const programs: Program[] = [
        recvs,
        ...[1, 2, 3].map((q): Program => [...sends[q]!, { k: 'send', peer: 4, src: R('in', 0, 1) }]),
        [...[1, 2, 3].map((q) => ({ k: 'recv', peer: q, dst: R('tmp', q, 1) }) as const), { k: 'send', peer: 0, src: R('in', 0, 1) }],
      ];
      const sizes = { in: 2 * n + 1, out: 2 * n, tmp: n + 16 };
      validatePrograms(programs, sizes);
      const init = (r: number, b: 'in' | 'out' | 'tmp') => values(sizes[b], 100 * trial + 10 * r + (b === 'in' ? 1 : b === 'out' ? 2 : 3));
      const bufs = [0, 1, 2, 3, 4].map((r) => ({ in: init(r, 'in'), out: init(r, 'out'), tmp: init(r, 'tmp') }));
      const simBufs: RankBuffers[] = bufs.map((b) => ({ in: b.in.slice(), out: b.out.slice(), tmp: b.tmp.slice() }));
      const sim = simulate({ topo, programs, data: simBufs }); // moves the data in simBufs
      for (const c of [fast, plain]) {
        const res = await c.run({ programs, sizes, beforeRun: (cl) => { for (let r = 0; r < 5; r++) for (const b of ['in', 'out', 'tmp'] as const) cl.view(r, b).set(bufs[r]![b]); } });
        if (c === fast) fusedTotal += res.fusedRecvs;
        else expect(res.fusedRecvs).toBe(0);
        expect(res.time, `trial ${trial}`).toBe(sim.time);
        for (const b of ['out', 'tmp'] as const) expect(sameBits(c.view(0, b).subarray(0, sizes[b]), simBufs[0]![b]), `trial ${trial} ${b}`).toBe(0);
      }
      for (const b of ['out', 'tmp'] as const) expect(sameBits(fast.view(0, b).subarray(0, sizes[b]), plain.view(0, b).subarray(0, sizes[b])), `trial ${trial} ${b}: fused vs plain`).toBe(0);
    }
    expect(fusedTotal).toBeGreaterThan(40);
  }, 60_000);
});

describe('emulator with and without the native kernels', () => {
  const topo = makeTopology('hgx-h100', { ranks: 8 });
  // nvls: fused runs and padding; tree and direct: fused runs; rhd: streaming stores (its first
  // reduction and last copy move 5 MB, past the 4 MB threshold)
  const cases: [string, number, ReduceOp][] = [['nvls', 4_000_003, 'sum'], ['nvls', 100_001, 'max'], ['tree', 3_000_001, 'avg'], ['direct', 50_001, 'prod'], ['rhd', 2_500_001, 'sum']];
  for (const native of [true, false]) {
    it(`native ${native}: exact data (float64 reference) and the simulator's virtual times`, async () => {
      const c = await Cluster.start(topo, { native });
      try {
        for (const [name, count, op] of cases) {
          const spec: CollSpec = { coll: 'allreduce', p: 8, count, op, inPlace: false, root: 0 };
          const algo = resolveAlgorithm(spec, topo, name);
          const inputs = randomInputs(spec, 5);
          const bufs = makeBuffers(spec, algo, topo, inputs);
          const programs = algo.build(spec, topo);
          const res = await c.run({
            programs, sizes: bufferSizes(spec, algo, topo), iters: 2,
            beforeRun: (cl) => { for (let r = 0; r < 8; r++) for (const b of ['in', 'out', 'tmp'] as const) cl.view(r, b).set(bufs[r]![b]); },
          });
          // (inputs are re-read each iteration, outputs rewritten: out-of-place is idempotent)
          const outputs = Array.from({ length: 8 }, (_, r) => { const O = outputRegion(spec, r); return c.view(r, O.buf, O.off, O.len).slice(); });
          expect(checkOutputs(spec, inputs, outputs).wrong, `${name} ${op}`).toBe(0);
          expect(res.time, `${name} ${op}`).toBe(simulate({ topo, programs }).time);
          if (!native) expect(res.fusedRecvs).toBe(0);
        }
      } finally {
        await c.close();
      }
    }, 120_000);
  }
});
