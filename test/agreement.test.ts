/**
 * The trust chain: for every algorithm, rank counts and sizes from 1 B to 256 MB, the worker-thread
 * emulator and the one-thread simulator give identical virtual times, and both agree with the
 * closed-form formula within 1% on an uncontended topology (flat). (On multi-node topologies the
 * formulas are estimates: test/protocols.test.ts measures and bounds them.) The emulator runs in
 * timing-only mode here (same programs, ordering and waits, no payload), so 64 ranks x 256 MB fits.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { ALGORITHMS } from '../collectives/registry.js';
import { bufferSizes, countForSize, type CollSpec } from '../collectives/types.js';
import { Cluster } from '../runtime/cluster.js';
import { simulate } from '../runtime/simulate.js';
import { makeTopology } from '../runtime/topology.js';

const SIZES = [1, 1024, 65536, 1 << 20, 16 << 20, 256 << 20];

function specFor(coll: CollSpec['coll'], p: number, bytes: number, inPlace = false): CollSpec {
  return { coll, p, count: countForSize(coll, p, bytes), op: 'sum', inPlace, root: p > 2 ? 1 : 0 };
}

describe('simulator vs closed-form formula (flat, 450 GB/s, 1 us; with and without reduction cost)', () => {
  for (const reduceBw of [undefined, 1000]) {
    it(`every algorithm, p in 2..64, 1 B..256 MB${reduceBw ? ', reduce-bw 1000' : ''}`, () => {
      let cases = 0;
      let worst = 0;
      for (const p of [2, 3, 5, 7, 8, 16, 31, 64]) {
        const topo = makeTopology('flat', { ranks: p, linkBw: 450, linkLatency: 1, reduceBw });
        for (const algo of ALGORITHMS) {
          for (const bytes of SIZES) {
            for (const inPlace of [false, true]) {
              const spec = specFor(algo.coll, p, bytes, inPlace);
              if (algo.unsupported?.(spec, topo)) continue;
              const t = simulate({ topo, programs: algo.build(spec, topo) }).time;
              const f = algo.cost(spec, topo);
              const err = Math.abs(t - f) / Math.max(f, 1e-12);
              worst = Math.max(worst, err);
              expect(err, `${algo.coll}/${algo.name} p=${p} ${bytes} B inPlace=${inPlace}: sim ${t} formula ${f}`).toBeLessThanOrEqual(0.01);
              cases++;
            }
          }
        }
      }
      expect(cases).toBeGreaterThan(1000);
      expect(worst).toBeLessThan(0.01);
    }, 120_000);
  }
});

describe('emulator == simulator, identical virtual times', () => {
  const clusters: Cluster[] = [];
  afterAll(async () => { await Promise.all(clusters.map((c) => c.close())); });
  for (const p of [2, 5, 8, 16, 64]) {
    it(`p=${p}: every algorithm at 1 B, 64 KB, 16 MB and 256 MB (timing-only emulation)`, async () => {
      const topo = makeTopology('flat', { ranks: p, linkBw: 450, linkLatency: 1, reduceBw: 1000 });
      const c = await Cluster.start(topo);
      clusters.push(c);
      let runs = 0;
      for (const algo of ALGORITHMS) {
        for (const bytes of [1, 65536, 16 << 20, 256 << 20]) {
          const spec = specFor(algo.coll, p, bytes);
          if (algo.unsupported?.(spec, topo)) continue;
          const programs = algo.build(spec, topo);
          const sim = simulate({ topo, programs });
          const emu = await c.run({ programs, sizes: bufferSizes(spec, algo, topo), timingOnly: true });
          expect(emu.rankTimes, `${algo.coll}/${algo.name} p=${p} ${bytes} B`).toEqual(Array.from(sim.rankTimes));
          expect(Math.abs(emu.time - algo.cost(spec, topo)) / algo.cost(spec, topo)).toBeLessThanOrEqual(0.01);
          runs++;
        }
      }
      expect(runs).toBeGreaterThanOrEqual(17 * 4 - 4);
    }, 180_000);
  }

  it('multi-node hgx-h100 (2 nodes): identical emulator and simulator times with real data', async () => {
    const topo = makeTopology('hgx-h100', { nodes: 2 });
    const c = await Cluster.start(topo);
    clusters.push(c);
    for (const algo of ALGORITHMS) {
      const spec = specFor(algo.coll, 16, 1 << 20);
      if (algo.unsupported?.(spec, topo)) continue;
      const programs = algo.build(spec, topo);
      const emu = await c.run({ programs, sizes: bufferSizes(spec, algo, topo), pattern: spec, check: true });
      expect(emu.wrong, `${algo.coll}/${algo.name}`).toBe(0);
      expect(emu.rankTimes, `${algo.coll}/${algo.name}`).toEqual(Array.from(simulate({ topo, programs }).rankTimes));
    }
  }, 120_000);

  it('llama3 across pods (3 servers, --pod-size 16: NVLink, RoCE, cross-pod on one NIC port): identical times with real data', async () => {
    const topo = makeTopology('llama3', { nodes: 3, podSize: 16 });
    const c = await Cluster.start(topo);
    clusters.push(c);
    let runs = 0;
    for (const algo of ALGORITHMS) {
      const spec = specFor(algo.coll, 24, 1 << 20);
      if (algo.unsupported?.(spec, topo)) continue;
      const programs = algo.build(spec, topo);
      const emu = await c.run({ programs, sizes: bufferSizes(spec, algo, topo), pattern: spec, check: true });
      expect(emu.wrong, `${algo.coll}/${algo.name}`).toBe(0);
      expect(emu.rankTimes, `${algo.coll}/${algo.name}`).toEqual(Array.from(simulate({ topo, programs }).rankTimes));
      runs++;
    }
    expect(runs).toBeGreaterThanOrEqual(25);
  }, 180_000);
});
