/**
 * Rail-optimized hierarchical ReduceScatter and AllGather (collectives/basic/reducescatter-hier.ts,
 * allgather-hier.ts) on multi-node topologies: exact data against the float64 reference, the closed
 * form equal to the simulator where every rail hop is alike (and the measured error across llama3
 * pods), the traffic each NIC carries against the flat ring, what --algo auto picks, and the
 * unsupported shapes.
 */
import { describe, expect, it } from 'vitest';
import { simulateCollective } from '../collectives/harness.js';
import { randomInputs } from '../collectives/reference.js';
import { autoSelect, getAlgorithm } from '../collectives/registry.js';
import { countForSize, type CollSpec, type Collective } from '../collectives/types.js';
import { REDUCE_OPS } from '../runtime/ir.js';
import { simulate } from '../runtime/simulate.js';
import { makeTopology, topologyFromJson, type Topology } from '../runtime/topology.js';

const COLLS: Collective[] = ['reducescatter', 'allgather'];
const spec = (coll: Collective, p: number, count: number, op: CollSpec['op'] = 'sum', inPlace = false): CollSpec => ({ coll, p, count, op, inPlace, root: 0 });
const TOPOS: [string, Topology][] = [
  ['hgx-h100 2 nodes', makeTopology('hgx-h100', { nodes: 2 })],
  ['hgx-h100 3 nodes', makeTopology('hgx-h100', { nodes: 3 })],
  ['dgx-a100 4 nodes', makeTopology('dgx-a100', { nodes: 4 })],
  ['llama3 3 pods of 2 servers', makeTopology('llama3', { nodes: 6, podSize: 16 })],
];

describe('hierarchical ReduceScatter / AllGather on multi-node topologies', () => {
  for (const coll of COLLS) {
    const a = getAlgorithm(coll, 'hierarchical');
    it(`${coll}: exact data on 2-4 nodes and across pods, every op, in and out of place, odd counts`, () => {
      const fails: string[] = [];
      for (const [tn, topo] of TOPOS) {
        for (const count of [0, 1, 13, 1029]) for (const op of coll === 'allgather' ? (['sum'] as const) : REDUCE_OPS) for (const inPlace of [false, true]) {
          const s = spec(coll, topo.p, count, op, inPlace);
          const r = simulateCollective(a, s, topo, randomInputs(s, 11 + count));
          if (r.wrong !== 0) fails.push(`${tn} count=${count} ${op} inPlace=${inPlace}: ${r.wrong} wrong`);
        }
      }
      expect(fails).toEqual([]);
    });

    it(`${coll}: the closed form equals the simulator on hgx-h100 / dgx-a100; within 16% across pods`, () => {
      for (const [tn, topo] of TOPOS) {
        for (const bytes of [4, 65536, 1 << 20, 64 << 20]) for (const [op, inPlace] of [['sum', false], ['avg', true]] as const) {
          const s = spec(coll, topo.p, countForSize(coll, topo.p, bytes), op, inPlace);
          const sim = simulate({ topo, programs: a.build(s, topo) }).time;
          const err = a.cost(s, topo) / sim - 1;
          if (tn.startsWith('llama3')) expect(Math.abs(err), `${tn} ${bytes}`).toBeLessThan(0.16);
          else expect(Math.abs(err), `${tn} ${bytes}`).toBeLessThan(1e-9);
        }
      }
    });

    it(`${coll}: each NIC carries (N-1)/N of its GPU's 1/G share, where the flat ring puts (p-1)/p of the data through one NIC per node boundary`, () => {
      const topo = makeTopology('hgx-h100', { nodes: 4 });
      const N = 4, p = 32;
      const bytes = 64 << 20; // the whole vector: p blocks
      const s = spec(coll, p, countForSize(coll, p, bytes));
      const nicBytes = (name: string): number[] => {
        const ev = simulate({ topo, programs: getAlgorithm(coll, name).build(s, topo), trace: true }).events!;
        const per = new Array<number>(p).fill(0);
        for (const e of ev) if (e.kind === 'send' && topo.classOf(e.rank, e.peer) === topo.data.inter) per[e.rank]! += e.bytes;
        return per;
      };
      const blk = s.count * 4;
      const hier = nicBytes('hierarchical');
      for (let r = 0; r < p; r++) expect(hier[r], `rank ${r}`).toBe((N - 1) * blk);
      const ring = nicBytes('ring');
      expect(Math.max(...ring)).toBe((p - 1) * blk);
      expect(ring.filter((b) => b > 0).length).toBe(N); // one NIC per node boundary
      // and it is faster: the ring's boundary NIC is the bottleneck
      const t = (name: string) => simulate({ topo, programs: getAlgorithm(coll, name).build(s, topo) }).time;
      expect(t('hierarchical')).toBeLessThan(t('ring') / 3);
    });
  }

  it('auto picks it across nodes at large sizes; on one node it is the ring; unsupported shapes are refused', () => {
    const two = makeTopology('hgx-h100', { nodes: 2 });
    for (const coll of COLLS) {
      expect(autoSelect(spec(coll, 16, 1 << 22), two).name).toBe('hierarchical');
      const a = getAlgorithm(coll, 'hierarchical');
      const one = makeTopology('hgx-h100');
      const s1 = spec(coll, 8, 1000);
      expect(a.build(s1, one)).toEqual(getAlgorithm(coll, 'ring').build(s1, one));
      expect(a.cost(s1, one)).toBe(getAlgorithm(coll, 'ring').cost(s1, one));
      const single = topologyFromJson({ gpusPerNode: 1, nodes: 4, links: { ib: { latency_us: 5, bandwidth_GBps: 50 } }, intraNode: 'ib', interNode: 'ib' });
      expect(a.unsupported!(spec(coll, 4, 10), single)).toMatch(/one GPU per node/);
      expect(a.unsupported!(spec(coll, 64, 10), makeTopology('tpu-v4'))).toMatch(/torus/);
      expect(a.cost(spec(coll, 64, 10), makeTopology('tpu-v4'))).toBe(Infinity);
    }
  });
});
