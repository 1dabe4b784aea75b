/**
 * bench/membw.ts: the memory-traffic count that explains the 64-rank host figure, and the
 * two-thread bandwidth probe it is compared with.
 */
import { describe, expect, it } from 'vitest';
import { memoryTraffic, parallelBandwidth } from '../bench/membw.js';
import { resolveAlgorithm } from '../collectives/registry.js';
import type { CollSpec } from '../collectives/types.js';
import { NATIVE } from '../runtime/native.js';
import { makeTopology } from '../runtime/topology.js';

describe('memoryTraffic', () => {
  it('counts a ring AllReduce as p (p-1) reduced blocks (3 accesses each) and p (p-1) copied blocks (2 each)', () => {
    for (const [p, count] of [[4, 4096], [8, 8000], [5, 12345]] as const) {
      const topo = makeTopology('flat', { ranks: p });
      const spec: CollSpec = { coll: 'allreduce', p, count, op: 'sum', inPlace: false, root: 0 };
      const progs = resolveAlgorithm(spec, topo, 'ring').build(spec, topo);
      // each rank reduces every block but one in the reduce-scatter and copies every block but
      // one in the all-gather; the left-out blocks are a permutation, so (p-1) count elements each
      expect(memoryTraffic(progs)).toBe((p - 1) * count * (3 + 2) * 4);
    }
  });

  it('charges nothing for padding messages and counts local copy, scale and reduce ops', () => {
    const r = (off: number, len: number) => ({ buf: 'out' as const, off, len });
    expect(memoryTraffic([
      [{ k: 'send', peer: 1, src: r(0, 10) }, { k: 'recv', peer: 1, dst: r(0, 7), pad: true }],
      [{ k: 'recv', peer: 0, dst: r(0, 10), op: 'sum' }, { k: 'copy', src: r(0, 4), dst: r(4, 4) }, { k: 'scale', dst: r(0, 2), factor: 2 },
        { k: 'reduce', a: r(0, 3), b: r(3, 3), dst: r(0, 3), op: 'max' }, { k: 'compute', flops: 1e9, bytes: 1e9 }],
    ])).toBe((3 * 10 + 2 * 4 + 2 * 2 + 3 * 3) * 4);
  });
});

(NATIVE ? describe : describe.skip)('parallelBandwidth', () => {
  it('reports one positive GB/s figure per thread', async () => {
    const g = await parallelBandwidth(1, 2);
    expect(g).toHaveLength(2);
    for (const x of g!) expect(x).toBeGreaterThan(0);
  });
});
