/**
 * NCCL protocol variants (collectives/protocols/): ring-ll, ring-ll128, ring-simple for AllReduce,
 * AllGather and ReduceScatter: exact data (bit-identical to the plain ring), wire encoding, formula =
 * simulator on flat, NCCL's latencies, the published 8 x H100 busbw (calibration.md); and the
 * measured error of every closed form on multi-node topologies (hgx-h100, dgx-a100, llama3 with
 * pods) against the simulator. (NVLS: test/contention.test.ts.)
 */
import { describe, expect, it } from 'vitest';
import { simulateCollective } from '../collectives/harness.js';
import { flagElems, MAX_CHUNKS, overheadElems, PROTOCOLS, wireElems } from '../collectives/protocols/nccl.js';
import { nvlsAllreduce } from '../collectives/protocols/nvls.js';
import { PROTOCOL_ALGOS } from '../collectives/protocols/index.js';
import { pipelinedRingTime } from '../collectives/ringtime.js';
import { randomInputs } from '../collectives/reference.js';
import { ALGORITHMS, algorithmsFor, getAlgorithm } from '../collectives/registry.js';
import { busBwFactor, countForSize, isReducing, type Algorithm, type CollSpec, type Collective } from '../collectives/types.js';
import { REDUCE_OPS, type Program } from '../runtime/ir.js';
import { simulate } from '../runtime/simulate.js';
import { makeTopology, scaleTopology, Topology } from '../runtime/topology.js';

const COLLS = ['allreduce', 'allgather', 'reducescatter'] as const;
const NAMES = ['ring-ll', 'ring-ll128', 'ring-simple'];
const RINGS = PROTOCOL_ALGOS.filter((a) => a.name !== 'nvls');
const flat = (p: number, reduceBw?: number) => makeTopology('flat', { ranks: p, linkBw: 450, linkLatency: 1, reduceBw });
const specOf = (coll: Collective, p: number, count: number, op: CollSpec['op'] = 'sum', inPlace = false): CollSpec => ({ coll, p, count, op, inPlace, root: 0 });
const relErr = (a: number, b: number) => (a === 0 && b === 0 ? 0 : Math.abs(a - b) / Math.max(Math.abs(a), Math.abs(b)));
const simTime = (a: Algorithm, s: CollSpec, topo: Topology) => simulate({ topo, programs: a.build(s, topo) }).time;
const GB = 1e9;

/** '' when two outputs hold the same bits */
function sameBits(x: Float32Array, y: Float32Array): boolean {
  if (x.length !== y.length) return false;
  const a = new Uint32Array(x.buffer, x.byteOffset, x.length), b = new Uint32Array(y.buffer, y.byteOffset, y.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

describe('registry', () => {
  it('has ring-ll, ring-ll128, ring-simple for allreduce, allgather, reducescatter, and nvls, reachable by name', () => {
    for (const coll of COLLS) {
      for (const name of NAMES) {
        const a = getAlgorithm(coll, name);
        expect(a.coll).toBe(coll);
        expect(algorithmsFor(coll)).toContain(a);
        expect(ALGORITHMS).toContain(a);
        expect(a.formula.length).toBeGreaterThan(20);
      }
    }
    expect(getAlgorithm('allreduce', 'nvls')).toBe(nvlsAllreduce);
    expect(RINGS).toHaveLength(9);
  });
});

describe('protocol variants: exact results', () => {
  it('flat, p = 1..8, odd counts, every op, in and out of place; bit-identical to the plain ring', () => {
    const fails: string[] = [];
    for (const p of [1, 2, 3, 5, 8]) {
      const topo = flat(p);
      for (const a of RINGS) {
        const plain = getAlgorithm(a.coll, 'ring');
        for (const count of [0, 1, 13, 1003]) {
          for (const op of isReducing(a.coll) ? REDUCE_OPS : (['sum'] as const)) {
            for (const inPlace of [false, true]) {
              const s = specOf(a.coll, p, count, op, inPlace);
              const inputs = randomInputs(s, 5 + p + count);
              const res = simulateCollective(a, s, topo, inputs);
              const ref = simulateCollective(plain, s, topo, inputs);
              const tag = `${a.coll}/${a.name} p=${p} count=${count} ${op} inPlace=${inPlace}`;
              if (res.wrong !== 0) fails.push(`${tag}: ${res.wrong} wrong`);
              for (let r = 0; r < p; r++) if (!sameBits(res.outputs[r]!, ref.outputs[r]!)) { fails.push(`${tag}: rank ${r} differs from ring`); break; }
            }
          }
        }
      }
    }
    expect(fails).toEqual([]);
  }, 120_000);

  it('multi-node and pods (NVLink and NIC efficiencies, hop delays): exact results', () => {
    const topos = [makeTopology('hgx-h100', { nodes: 2 }), makeTopology('llama3', { nodes: 3, podSize: 16 }), makeTopology('dgx-a100', { nodes: 2 })];
    for (const topo of topos) {
      for (const a of RINGS) {
        for (const [count, op, inPlace] of [[4099, 'sum', false], [topo.p * 37 + 1, 'avg', true], [7, 'max', false]] as const) {
          const s = specOf(a.coll, topo.p, count, op, inPlace);
          const res = simulateCollective(a, s, topo, randomInputs(s, 9));
          expect(res.wrong, `${a.coll}/${a.name} on ${topo.describe()} count=${count} ${op}`).toBe(0);
        }
      }
    }
  }, 120_000);
});

describe('streaming (rankProgram)', () => {
  it('yields exactly build()\'s ops, so the simulator can stream them (256 ranks here)', () => {
    const topo = makeTopology('hgx-h100', { nodes: 2 });
    for (const a of RINGS) {
      const s = specOf(a.coll, 16, 16 * 3001, 'avg', false);
      const built = a.build(s, topo);
      for (const r of [0, 7, 8, 15]) expect([...a.rankProgram!(s, topo, r)], `${a.coll}/${a.name} rank ${r}`).toEqual(built[r]);
    }
    const big = makeTopology('hgx-h100', { nodes: 32 });
    const a = getAlgorithm('allreduce', 'ring-simple');
    const s = specOf('allreduce', 256, 1 << 20);
    const t = simulate({ topo: big, programs: (r) => a.rankProgram!(s, big, r) }).time;
    expect(relErr(t, a.cost(s, big))).toBeLessThan(0.2); // multi-node: the estimate's bound (below)
  }, 60_000);
});

describe('wire encoding and latencies', () => {
  const link = (efficiency?: number) => ({ name: 'x', alpha: 1e-6, bw: 450e9, efficiency });
  it('LL: a 4-byte flag per 4 data bytes; LL128: 8 bytes per 120; Simple: none; then the link efficiency', () => {
    expect([flagElems(PROTOCOLS.LL, 1000), flagElems(PROTOCOLS.LL128, 1000), flagElems(PROTOCOLS.Simple, 1000)]).toEqual([1000, 68, 0]);
    expect(flagElems(PROTOCOLS.LL128, 30)).toBe(2); // one 128-byte line
    expect(flagElems(PROTOCOLS.LL128, 31)).toBe(4);
    expect([wireElems(PROTOCOLS.LL, link(), 1000), wireElems(PROTOCOLS.LL128, link(), 1000), wireElems(PROTOCOLS.Simple, link(), 1000)]).toEqual([2000, 1068, 1000]);
    // NVLink 4 for NCCL: 20.6 of 25 GB/s per link carries payload
    const nv = makeTopology('hgx-h100').data.links[0]!;
    expect(wireElems(PROTOCOLS.Simple, nv, 1000)).toBe(Math.ceil(1000 / (20.6 / 25)));
    expect(overheadElems(PROTOCOLS.Simple, nv, 1000)).toBe(1214 - 1000);
    expect(overheadElems(PROTOCOLS.Simple, link(), 1000)).toBe(0);
  });

  it('a program puts exactly the encoded bytes on the wire, as an overhead message before each data message', () => {
    const topo = makeTopology('hgx-h100');
    const count = 8 * 3000;
    for (const name of NAMES) {
      const a = getAlgorithm('allreduce', name);
      const proto = Object.values(PROTOCOLS).find((x) => `ring-${x.id}` === name)!;
      const prog: Program = a.build(specOf('allreduce', 8, count), topo)[0]!;
      const sends = prog.filter((o) => o.k === 'send');
      const data = sends.filter((o) => o.k === 'send' && o.src.buf !== 'tmp').reduce((t, o) => t + (o.k === 'send' ? o.src.len : 0), 0);
      const all = sends.reduce((t, o) => t + (o.k === 'send' ? o.src.len : 0), 0);
      expect(data, name).toBe(14 * 3000); // 2(p-1) blocks of count/p
      expect(all, name).toBe(14 * wireElems(proto, topo.data.links[0]!, 3000)); // one chunk per block at this size
    }
  });

  it('large messages: the bus bandwidth is line rate x link efficiency x protocol payload share', () => {
    const topo = flat(8); // no link efficiency on flat
    const s = specOf('allreduce', 8, 1 << 26);
    const bus = (name: string) => (4 * (1 << 26) / simTime(getAlgorithm('allreduce', name), s, topo)) * busBwFactor('allreduce', 8) / GB;
    expect(bus('ring-simple') / 450).toBeGreaterThan(0.98); // 1% of latency (8.4 + 1 us) at 256 MB
    expect(bus('ring-simple') / 450).toBeLessThan(1);
    expect(bus('ring-ll128') / (450 * 120 / 128)).toBeGreaterThan(0.98);
    expect(bus('ring-ll128') / (450 * 120 / 128)).toBeLessThan(1.001);
    expect(bus('ring-ll') / 225).toBeGreaterThan(0.98);
    expect(bus('ring-ll') / 225).toBeLessThan(1.001);
  });

  it('small messages cost NCCL\'s latency model: base + 2(p-1) x max(alpha, hop latency) (+ one chunk per hop)', () => {
    const topo = makeTopology('hgx-h100', { reduceBw: 0 });
    const s = specOf('allreduce', 8, 8); // one element per block
    const w = (name: keyof typeof PROTOCOLS) => (wireElems(PROTOCOLS[name], topo.data.links[0]!, 1) * 4) / 450e9;
    // NVLink ring hop: LL 0.6 us (below alpha = 1 us: alpha), LL128 1.9 us, Simple 3.4 us; base 6.6 / 14 / 8.4 us
    expect(simTime(getAlgorithm('allreduce', 'ring-ll'), s, topo)).toBeCloseTo(6.6e-6 + 14 * (1e-6 + w('LL')), 12);
    expect(simTime(getAlgorithm('allreduce', 'ring-ll128'), s, topo)).toBeCloseTo(14e-6 + 14 * (1.9e-6 + w('LL128')), 12);
    expect(simTime(getAlgorithm('allreduce', 'ring-simple'), s, topo)).toBeCloseTo(8.4e-6 + 14 * (3.4e-6 + w('Simple')), 12);
    // on the network the hop latency is NCCL's net figure: Simple 14 us, LL128 4 us (below the IB
    // alpha of 5 us: alpha); two GPUs on two nodes, one AllGather step
    const two = makeTopology('hgx-h100', { nodes: 2, reduceBw: 0 });
    const pair = new Topology({ ...two.data, p: 2, gpusPerNode: 1 });
    const ib = pair.data.links[1]!;
    const wIb = (name: keyof typeof PROTOCOLS) => (wireElems(PROTOCOLS[name], ib, 1) * 4) / 50e9;
    const one = specOf('allgather', 2, 1, 'sum', true);
    expect(simTime(getAlgorithm('allgather', 'ring-simple'), one, pair)).toBeCloseTo(8.4e-6 + 14e-6 + wIb('Simple'), 12);
    expect(simTime(getAlgorithm('allgather', 'ring-ll128'), one, pair)).toBeCloseTo(14e-6 + 5e-6 + wIb('LL128'), 12);
    expect(getAlgorithm('allgather', 'ring-simple').cost(one, pair)).toBeCloseTo(8.4e-6 + 14e-6 + wIb('Simple'), 12);
  });
});

describe('formula = simulator on flat', () => {
  it('exact when the chunks are equal, within 1e-4 otherwise; every variant, p 2..16, gamma/delta free, moderate and reduce-bound', () => {
    const fails: string[] = [];
    let worstEq = 0, worstAny = 0;
    for (const p of [2, 3, 5, 8, 16]) {
      for (const reduceBw of [undefined, 1000, 30]) {
        const topo = flat(p, reduceBw);
        for (const a of RINGS) {
          // per-rank counts: equal chunks (p * 8 * 1024 * k) and uneven ones
          for (const count of [0, 1, 7, p * 8 * 3, p * 8 * 4096, p * 8 * 65536, 100003, 1 << 20]) {
            for (const [op, inPlace] of [['sum', false], ['avg', true], ['avg', false]] as const) {
              const s = specOf(a.coll, p, a.coll === 'allreduce' ? count : Math.ceil(count / p), op, inPlace);
              const sim = simTime(a, s, topo), f = a.cost(s, topo);
              const e = relErr(sim, f);
              const be = a.coll === 'allreduce' ? count / p : s.count;
              const equal = Number.isInteger(be) && (be === 0 || be % MAX_CHUNKS === 0 || be < 2);
              if (equal) worstEq = Math.max(worstEq, e); else worstAny = Math.max(worstAny, e);
              if (e > (equal ? 1e-9 : 1e-4)) fails.push(`${a.coll}/${a.name} p=${p} count=${s.count} ${op} ${inPlace} reduceBw=${reduceBw}: sim ${sim * 1e6} us, formula ${f * 1e6} us`);
            }
          }
        }
      }
    }
    expect(fails).toEqual([]);
    expect(worstEq).toBeLessThan(1e-9);
    expect(worstAny).toBeLessThan(1e-4);
  }, 120_000);

  it('the recurrence\'s two regimes: K = 1 is the latency-bound ring, large K keeps the port busy', () => {
    const g = () => 2e-6;
    // K = 1: T = t0 + N (w + a + d) + N g
    expect(pipelinedRingTime(6, 1, 1e-6, 3e-6, 0.5e-6, g, 7e-6, 7e-6)).toBeCloseTo(7e-6 + 6 * (1e-6 + 3e-6 + 0.5e-6 + 2e-6), 15);
    // many chunks, w > g: T = t0 + N K w + a (+ the last chunk's g)
    expect(pipelinedRingTime(6, 64, 1e-6, 3e-6, 0.5e-6, () => 0.2e-6, 0, 0)).toBeCloseTo(6 * 64 * 1e-6 + 3e-6 + 0.2e-6, 15);
  });

  it('a scaled-down run keeps the schedule (same chunk count) and the time (up to rounding of the overhead)', () => {
    const topo = makeTopology('hgx-h100');
    const s = specOf('allreduce', 8, 1 << 24);
    const a = getAlgorithm('allreduce', 'ring-simple');
    const full = simTime(a, s, topo);
    const small = simTime(a, { ...s, count: (1 << 24) / 32 }, scaleTopology(topo, 32));
    expect(relErr(full, small)).toBeLessThan(1e-3);
    expect(a.build({ ...s, count: (1 << 24) / 32 }, scaleTopology(topo, 32))[0]!.length).toBe(a.build(s, topo)[0]!.length);
  });
});

describe('8 x H100 (hgx-h100): published bus bandwidth (calibration.md)', () => {
  const topo = makeTopology('hgx-h100');
  const SIZES = [1 << 30, 2 ** 31, 2 ** 32, 2 ** 33];

  it('ring with Simple, the protocol NCCL picks at large sizes: ~370 GB/s busbw at 1-8 GB (within 5%)', () => {
    const a = getAlgorithm('allreduce', 'ring-simple');
    for (const bytes of SIZES) {
      const s = specOf('allreduce', 8, countForSize('allreduce', 8, bytes));
      const t = simTime(a, s, topo);
      const busbw = (bytes / t) * busBwFactor('allreduce', 8) / GB;
      expect(Math.abs(busbw / 370 - 1), `${bytes} B: ${busbw} GB/s`).toBeLessThan(0.05);
      expect(busbw).toBeGreaterThan(369); // 18 x 20.6 = 370.8 GB/s, minus < 0.2% of latency
      expect(relErr(a.cost(s, topo), t)).toBeLessThan(1e-9);
    }
  });

  it('among the protocols the cost formulas pick LL for tiny messages and Simple at large sizes, as NCCL does', () => {
    const best = (bytes: number) => {
      const s = specOf('allreduce', 8, countForSize('allreduce', 8, bytes));
      return NAMES.map((n) => [n, getAlgorithm('allreduce', n).cost(s, topo)] as const).sort((x, y) => x[1] - y[1])[0]![0];
    };
    expect(best(1024)).toBe('ring-ll');
    expect(best(64 << 20)).toBe('ring-simple');
    expect(best(1 << 30)).toBe('ring-simple');
  });
  // NVLS (runnable: switch multicast and in-network reduction) is tested in test/contention.test.ts
});

/**
 * Formula vs simulator on multi-node topologies: measured bounds of (formula / simulated - 1), over
 * hgx-h100 (2, 4 nodes), dgx-a100 (3 nodes; 4 nodes at 1:2 spine oversubscription) and llama3 (one pod
 * of 4 servers; 2 and 3 pods of 2 servers with --pod-size 16), sizes 4 B - 256 MB, sum
 * out-of-place and avg in-place, root 1. The formulas are exact on flat (above, and
 * test/agreement.test.ts); here they are estimates, and these are their documented bounds (a few
 * points of slack over the worst measured case, given in the comments).
 */
const MULTINODE_BOUNDS: Record<string, [number, number]> = {
  // allreduce. ring, hierarchical, direct: exact (< 0.01%) on hgx/dgx; across pods every node
  // boundary is charged as cross-pod (measured up to +39%, +55%, +39%)
  'allreduce/ring': [-0.001, 0.45],
  'allreduce/hierarchical': [-0.001, 0.6],
  'allreduce/direct': [-0.001, 0.45],
  // rhd: per-step slowest pair (measured 0 .. +11.4%)
  'allreduce/rhd': [-0.001, 0.15],
  // double binary tree: every level at the slowest class (measured +29% .. +95% on hgx/dgx, up to +130% across pods)
  'allreduce/tree': [-0.001, 1.4],
  // NCCL protocol rings: three-path estimate (measured -10% .. +17.5%)
  'allreduce/ring-ll': [-0.13, 0.2], 'allreduce/ring-ll128': [-0.13, 0.2], 'allreduce/ring-simple': [-0.13, 0.22],
  'allgather/ring-ll': [-0.13, 0.2], 'allgather/ring-ll128': [-0.13, 0.2], 'allgather/ring-simple': [-0.13, 0.22],
  'reducescatter/ring-ll': [-0.13, 0.2], 'reducescatter/ring-ll128': [-0.13, 0.2], 'reducescatter/ring-simple': [-0.13, 0.22],
  // plain rings: the same estimate with K = 1 (measured -12.3% .. +4.3%); chain: tandem pipeline, exact
  'allgather/ring': [-0.15, 0.08], 'reducescatter/ring': [-0.15, 0.08], 'reduce/ring': [-0.15, 0.08],
  'broadcast/chain': [-0.001, 0.001], 'sendrecv/ring': [-0.001, 0.001],
  // the rest: every message at the slowest class the pattern crosses (an upper bound; measured
  // worst: rd, rh +150% nodes / +257% pods (tiny sizes); bruck, barrier +67% / +113%; binomial
  // broadcast/reduce +85% / +130%; pairwise alltoall +48% / +61%)
  'allgather/rd': [-0.001, 2.8], 'reducescatter/rh': [-0.001, 2.8], 'allgather/bruck': [-0.001, 1.3],
  'barrier/dissemination': [-0.001, 1.3], 'broadcast/binomial': [-0.001, 1.45], 'reduce/binomial': [-0.001, 1.45],
  'alltoall/pairwise': [-0.001, 0.75],
  // rail-optimized hierarchical ReduceScatter / AllGather: exact (< 1e-5) on hgx/dgx; across pods the
  // three-path ring estimate over the rail ring (measured -15.1% .. 0)
  'reducescatter/hierarchical': [-0.17, 0.001], 'allgather/hierarchical': [-0.17, 0.001],
};

describe('closed forms on multi-node topologies vs the simulator (documented bounds)', () => {
  it('every runnable algorithm stays within its bound', () => {
    const topos: [string, Topology][] = [
      ['hgx-h100 2 nodes', makeTopology('hgx-h100', { nodes: 2 })], ['hgx-h100 4 nodes', makeTopology('hgx-h100', { nodes: 4 })],
      ['dgx-a100 3 nodes', makeTopology('dgx-a100', { nodes: 3 })], ['dgx-a100 4 nodes 1:2', makeTopology('dgx-a100', { nodes: 4, spineOversubscription: 2 })],
      ['llama3 1 pod', makeTopology('llama3', { nodes: 4 })], ['llama3 2 pods', makeTopology('llama3', { nodes: 4, podSize: 16 })],
      ['llama3 3 pods', makeTopology('llama3', { nodes: 6, podSize: 16 })],
    ];
    const fails: string[] = [];
    const seen = new Set<string>();
    for (const [tn, topo] of topos) {
      for (const a of ALGORITHMS) {
        const key = `${a.coll}/${a.name}`;
        for (const bytes of [4, 65536, 1 << 20, 16 << 20, 256 << 20]) {
          for (const [op, inPlace] of [['sum', false], ['avg', true]] as const) {
            const s: CollSpec = { coll: a.coll, p: topo.p, count: countForSize(a.coll, topo.p, bytes), op, inPlace, root: 1 };
            if (a.unsupported?.(s, topo)) continue;
            const bound = MULTINODE_BOUNDS[key];
            if (!bound) { fails.push(`${key}: no documented bound`); continue; }
            seen.add(key);
            const sim = simTime(a, s, topo), f = a.cost(s, topo);
            const r = f / sim - 1;
            if (!(r >= bound[0] && r <= bound[1])) fails.push(`${key} on ${tn}, ${bytes} B ${op}: formula ${(f * 1e6).toFixed(2)} us, simulated ${(sim * 1e6).toFixed(2)} us (${(r * 100).toFixed(1)}%)`);
          }
        }
      }
    }
    expect(fails).toEqual([]);
    expect(seen.size).toBe(Object.keys(MULTINODE_BOUNDS).length);
  }, 300_000);
});
