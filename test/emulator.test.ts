/**
 * The worker-thread emulator: real data, identical virtual times to the one-thread simulator,
 * determinism under host load, failure reports (rank error, deadlock, out of memory), pacing,
 * and clean start/teardown from 1 to 128 ranks.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ringAllreduce } from '../collectives/allreduce/ring.js';
import { makeBuffers } from '../collectives/harness.js';
import { checkOutputs, randomInputs } from '../collectives/reference.js';
import { ALGORITHMS } from '../collectives/registry.js';
import { bufferSizes, outputRegion, type CollSpec } from '../collectives/types.js';
import { Cluster, EmulatorDeadlock, RankFailure } from '../runtime/cluster.js';
import type { Program } from '../runtime/ir.js';
import { OutOfMemoryError } from '../runtime/memory.js';
import { simulate } from '../runtime/simulate.js';
import { makeTopology } from '../runtime/topology.js';
import { toChromeTrace } from '../runtime/trace.js';

/** Run a spec with random inputs on the emulator; return outputs, time and the check. */
async function emulateWithData(c: Cluster, spec: CollSpec, algo = ringAllreduce, seed = 3) {
  const inputs = randomInputs(spec, seed);
  const bufs = makeBuffers(spec, algo, c.topo, inputs);
  const programs = algo.build(spec, c.topo);
  const res = await c.run({
    programs, sizes: bufferSizes(spec, algo, c.topo), trace: true,
    beforeRun: (cl) => {
      for (let r = 0; r < spec.p; r++) for (const b of ['in', 'out', 'tmp'] as const) cl.view(r, b).set(bufs[r]![b]);
    },
  });
  const outputs = Array.from({ length: spec.p }, (_, r) => {
    const O = outputRegion(spec, r);
    return c.view(r, O.buf, O.off, O.len).slice();
  });
  return { res, outputs, check: checkOutputs(spec, inputs, outputs), programs };
}

describe('emulator with 8 ranks on flat', () => {
  const topo = makeTopology('flat', { ranks: 8, linkBw: 450, linkLatency: 1, reduceBw: 1000 });
  let c: Cluster;
  beforeAll(async () => { c = await Cluster.start(topo); });
  afterAll(async () => { await c.close(); });

  it('every registered algorithm gives correct data and the simulator\'s exact virtual time', async () => {
    const colls = new Set(ALGORITHMS.map((a) => a.coll));
    expect(colls.size).toBeGreaterThan(0);
    for (const algo of ALGORITHMS) {
      for (const inPlace of [false, true]) {
        const spec: CollSpec = { coll: algo.coll, p: 8, count: 1003, op: 'sum', inPlace, root: 3 };
        if (algo.unsupported?.(spec, topo)) continue;
        const { res, check, programs } = await emulateWithData(c, spec, algo);
        expect(check.wrong, `${algo.coll}/${algo.name} inPlace=${inPlace}`).toBe(0);
        const sim = simulate({ topo, programs });
        expect(res.time, `${algo.coll}/${algo.name}`).toBe(sim.time);
        expect(res.rankTimes).toEqual(Array.from(sim.rankTimes));
      }
    }
  });

  it('matches the float64 reference for every op, odd sizes, in and out of place', async () => {
    for (const op of ['sum', 'prod', 'max', 'min', 'avg'] as const) {
      for (const count of [0, 1, 13, 100_003]) {
        for (const inPlace of [false, true]) {
          const { check } = await emulateWithData(c, { coll: 'allreduce', p: 8, count, op, inPlace, root: 0 });
          expect(check.wrong, `${op} ${count} ${inPlace}`).toBe(0);
        }
      }
    }
  });

  it('bench pattern check counts zero wrong and the timing equals the formula', async () => {
    const spec: CollSpec = { coll: 'allreduce', p: 8, count: 1 << 18, op: 'sum', inPlace: false, root: 0 };
    const r = await c.run({ programs: ringAllreduce.build(spec, topo), sizes: bufferSizes(spec, ringAllreduce, topo), warmup: 1, iters: 3, pattern: spec, check: true });
    expect(r.wrong).toBe(0);
    expect(r.time).toBeCloseTo(ringAllreduce.cost(spec, topo), 12);
  });

  it('records a trace that converts to Chrome trace events with flows', async () => {
    const { res } = await emulateWithData(c, { coll: 'allreduce', p: 8, count: 64, op: 'sum', inPlace: false, root: 0 });
    const ev = res.events!;
    expect(ev.filter((e) => e.kind === 'send').length).toBe(8 * 14);
    expect(ev.filter((e) => e.kind === 'recv').length).toBe(8 * 14);
    for (const e of ev) expect(e.vEnd).toBeGreaterThanOrEqual(e.vStart);
    const ct = toChromeTrace(ev, ['link']);
    expect(ct.traceEvents.filter((e) => e.ph === 's').length).toBe(8 * 14);
    expect(ct.traceEvents.filter((e) => e.ph === 'f').length).toBe(8 * 14);
  });

  it('reports a rank that throws (bad message length) and stays usable', async () => {
    const programs: Program[] = Array.from({ length: 8 }, () => []);
    programs[0] = [{ k: 'send', peer: 1, src: { buf: 'out', off: 0, len: 4 } }];
    programs[1] = [{ k: 'recv', peer: 0, dst: { buf: 'out', off: 0, len: 2 } }];
    await expect(c.run({ programs, sizes: { in: 0, out: 4, tmp: 0 } })).rejects.toThrow(/rank 1 failed: .*4 elements, recv expects 2/);
    const spec: CollSpec = { coll: 'allreduce', p: 8, count: 100, op: 'sum', inPlace: false, root: 0 };
    const { check } = await emulateWithData(c, spec);
    expect(check.wrong).toBe(0);
  });

  it('detects a deadlock within about a second and says what each rank waits for', async () => {
    // every rank receives from its left neighbour before sending: a cycle of waits
    const programs: Program[] = Array.from({ length: 8 }, (_, r) => [
      { k: 'recv', peer: (r + 7) % 8, dst: { buf: 'out', off: 0, len: 1 } },
      { k: 'send', peer: (r + 1) % 8, src: { buf: 'out', off: 0, len: 1 } },
    ]);
    const t0 = Date.now();
    const err = await c.run({ programs, sizes: { in: 0, out: 1, tmp: 0 } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EmulatorDeadlock);
    expect(Date.now() - t0).toBeLessThan(2500);
    const pend = (err as EmulatorDeadlock).pending;
    expect(pend).toHaveLength(8);
    expect(pend[3]).toMatch(/rank 3 at op 0 \(recv into out\[0\.\.1\) from rank 2\): waits for message #0 from rank 2/);
    // and the cluster still works afterwards
    const { check } = await emulateWithData(c, { coll: 'allreduce', p: 8, count: 10, op: 'max', inPlace: true, root: 0 });
    expect(check.wrong).toBe(0);
  });

  it('detects a send-buffer-reuse deadlock', async () => {
    // rank 0 overwrites out[0] while its send of out[0] to rank 1 is unconsumed; rank 1 first waits
    // for rank 2, which waits for rank 0's next message: a cycle through the send-buffer rule
    const programs: Program[] = Array.from({ length: 8 }, () => []);
    programs[0] = [
      { k: 'send', peer: 1, src: { buf: 'out', off: 0, len: 1 } },
      { k: 'copy', src: { buf: 'out', off: 1, len: 1 }, dst: { buf: 'out', off: 0, len: 1 } },
      { k: 'send', peer: 2, src: { buf: 'out', off: 2, len: 1 } },
    ];
    programs[1] = [
      { k: 'recv', peer: 2, dst: { buf: 'out', off: 1, len: 1 } },
      { k: 'recv', peer: 0, dst: { buf: 'out', off: 2, len: 1 } },
    ];
    programs[2] = [
      { k: 'recv', peer: 0, dst: { buf: 'out', off: 0, len: 1 } },
      { k: 'send', peer: 1, src: { buf: 'out', off: 0, len: 1 } },
    ];
    const err = await c.run({ programs, sizes: { in: 0, out: 3, tmp: 0 } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EmulatorDeadlock);
    const text = (err as EmulatorDeadlock).pending.join('\n');
    expect(text).toMatch(/rank 0 at op 1 \(copy .*\): waits for rank 1 to receive message #0 it sent/);
    expect(text).toMatch(/rank 1 at op 0 .*waits for message #0 from rank 2/);
    expect(text).toMatch(/rank 2 at op 0 .*waits for message #0 from rank 0/);
    // the one-thread simulator reports the same deadlock
    const topo8 = makeTopology('flat', { ranks: 8 });
    expect(() => simulate({ topo: topo8, programs })).toThrow(/rank 0 at op 1 .*send buffer reuse/);
  });

  it('many sends posted to one peer before any receive do not block (unbounded-buffer semantics)', async () => {
    // ranks 0 and 1 each post 300 sends to the other, then receive 300: valid in the IR, and the
    // shape of a pipelined tree that sends all its leaf chunks first
    const n = 300;
    const programs: Program[] = Array.from({ length: 8 }, () => []);
    for (const [a, b] of [[0, 1], [1, 0]] as const) {
      for (let i = 0; i < n; i++) programs[a]!.push({ k: 'send', peer: b, src: { buf: 'in', off: i, len: 1 } });
      for (let i = 0; i < n; i++) programs[a]!.push({ k: 'recv', peer: b, dst: { buf: 'out', off: i, len: 1 } });
    }
    const r = await c.run({
      programs, sizes: { in: n, out: n, tmp: 0 }, iters: 3,
      beforeRun: (cl) => { for (const q of [0, 1]) cl.view(q, 'in').set(Float32Array.from({ length: n }, (_, i) => q * 1000 + i)); },
    });
    expect(Array.from(c.view(0, 'out').subarray(0, 5))).toEqual([1000, 1001, 1002, 1003, 1004]);
    expect(Array.from(c.view(1, 'out').subarray(n - 2, n))).toEqual([n - 2, n - 1]);
    expect(r.time).toBe(simulate({ topo, programs }).time);
  });

  it('wall-clock pacing tracks virtual time x dilation within 15%', async () => {
    // a 1 ms virtual collective paced x 500 -> ~0.5 s of wall time; host overhead ~ms
    const slow = makeTopology('flat', { ranks: 8, linkBw: 0.5, linkLatency: 10 });
    const pc = await Cluster.start(slow);
    try {
      const spec: CollSpec = { coll: 'allreduce', p: 8, count: 16384, op: 'sum', inPlace: false, root: 0 };
      const programs = ringAllreduce.build(spec, slow);
      const base = await pc.run({ programs, sizes: bufferSizes(spec, ringAllreduce, slow), iters: 1 });
      const dil = 0.5 / base.time;
      const paced = await pc.run({ programs, sizes: bufferSizes(spec, ringAllreduce, slow), iters: 2, pace: dil });
      expect(paced.time).toBe(base.time);
      const ratio = paced.hostTime / (base.time * dil);
      expect(ratio).toBeGreaterThan(0.85);
      expect(ratio).toBeLessThan(1.15);
    } finally {
      await pc.close();
    }
  });
});

describe('determinism', () => {
  it('bit-identical data and timings across runs, host loads and spin settings', async () => {
    const topo = makeTopology('hgx-h100', { nodes: 2 });
    const spec: CollSpec = { coll: 'allreduce', p: 16, count: 50_021, op: 'sum', inPlace: false, root: 0 };
    const digests: string[] = [];
    // background load on the host: two busy threads competing for the two cores
    const hog = () => new Worker('const e=Date.now()+4000; while(Date.now()<e){}', { eval: true });
    for (const [spin, load] of [[0, false], [3000, false], [0, true], [50, true]] as const) {
      const hogs = load ? [hog(), hog()] : [];
      const c = await Cluster.start(topo, { spin });
      try {
        const { res, outputs } = await emulateWithData(c, spec, ringAllreduce, 11);
        const h = Buffer.concat(outputs.map((o) => Buffer.from(o.buffer, o.byteOffset, o.byteLength))).toString('base64').length;
        digests.push(JSON.stringify([res.rankTimes, Buffer.concat(outputs.map((o) => Buffer.from(o.buffer, o.byteOffset, o.byteLength))).toString('base64'), h]));
      } finally {
        await c.close();
        await Promise.all(hogs.map((w) => w.terminate()));
      }
    }
    for (const d of digests) expect(d).toBe(digests[0]);
  });
});

describe('cluster lifecycle and memory', () => {
  it('starts and tears down 1, 2, 7 and 128 ranks, running a checked collective', async () => {
    for (const p of [1, 2, 7, 128]) {
      const topo = makeTopology('flat', { ranks: p });
      const c = await Cluster.start(topo);
      try {
        const spec: CollSpec = { coll: 'allreduce', p, count: 3 * p + 1, op: 'sum', inPlace: false, root: 0 };
        const r = await c.run({ programs: ringAllreduce.build(spec, topo), sizes: bufferSizes(spec, ringAllreduce, topo), pattern: spec, check: true });
        expect(r.wrong).toBe(0);
        expect(r.time).toBeCloseTo(ringAllreduce.cost(spec, topo), 12);
      } finally {
        await c.close();
      }
    }
  }, 120_000);

  it('out of device memory names the rank, requested and free bytes', async () => {
    const topo = makeTopology('flat', { ranks: 2, memCapacity: 1 << 20 });
    const c = await Cluster.start(topo);
    try {
      const spec: CollSpec = { coll: 'allreduce', p: 2, count: 200_000, op: 'sum', inPlace: false, root: 0 };
      const err = await c.run({ programs: ringAllreduce.build(spec, topo), sizes: bufferSizes(spec, ringAllreduce, topo) }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(OutOfMemoryError);
      expect((err as Error).message).toMatch(/rank 0: out of device memory allocating 'out' buffer: requested 800\.00 KB \(800000 B\), free 248\.58 KB \(248576 B\) of 1\.05 MB \(1048576 B\)/);
    } finally {
      await c.close();
    }
  });

  it('close() frees the host memory behind the device memories at once (clusters run one after another)', () => {
    // in a child process, so that only this cluster's memory counts: 8 ranks x (64 MB in + 64 MB out)
    const dist = join(import.meta.dirname, '..', 'dist', 'runtime');
    const script = `
      const { Cluster } = await import(${JSON.stringify(pathToFileURL(join(dist, 'cluster.js')).href)});
      const { makeTopology } = await import(${JSON.stringify(pathToFileURL(join(dist, 'topology.js')).href)});
      const { ALGORITHMS } = await import(${JSON.stringify(pathToFileURL(join(dist, '..', 'collectives', 'registry.js')).href)});
      const { bufferSizes } = await import(${JSON.stringify(pathToFileURL(join(dist, '..', 'collectives', 'types.js')).href)});
      const topo = makeTopology('hgx-h100', { ranks: 8 });
      const algo = ALGORITHMS.find((a) => a.coll === 'allreduce' && a.name === 'ring');
      const spec = { coll: 'allreduce', p: 8, count: 16 << 20, op: 'sum', inPlace: false, root: 0 };
      const c = await Cluster.start(topo);
      const r = await c.run({ programs: algo.build(spec, topo), sizes: bufferSizes(spec, algo, topo), pattern: spec, check: true });
      const held = process.memoryUsage().rss;
      await c.close();
      await new Promise((res) => setTimeout(res, 300));
      console.log(JSON.stringify({ wrong: r.wrong, held, after: process.memoryUsage().rss }));
    `;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    const m = JSON.parse(out.trim()) as { wrong: number; held: number; after: number };
    expect(m.wrong).toBe(0);
    expect(m.held).toBeGreaterThan(1e9);
    expect(m.after).toBeLessThan(m.held - 0.8e9);
  }, 60_000);

  it('a worker error message names the failing rank', () => {
    expect(new RankFailure(5, 'boom').message).toBe('rank 5 failed: boom');
  });
});
