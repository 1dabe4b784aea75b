/**
 * AllReduce algorithms (collectives/allreduce/): results against the float64 reference for every
 * algorithm x rank count x count x op x in/out-of-place, and the closed-form cost formulas against
 * the simulator's virtual time (within 1%) on flat and on multi-node hgx-h100.
 */
import { describe, expect, it } from 'vitest';
import { ALLREDUCE_ALGOS } from '../collectives/allreduce/index.js';
import { doubleTree, TREE_CHUNK_BYTES, treeChunks } from '../collectives/allreduce/tree.js';
import { simulateCollective } from '../collectives/harness.js';
import { randomInputs } from '../collectives/reference.js';
import type { Algorithm, CollSpec } from '../collectives/types.js';
import { REDUCE_OPS, type ReduceOp } from '../runtime/ir.js';
import { simulate } from '../runtime/simulate.js';
import { makeTopology, Topology } from '../runtime/topology.js';

const RANKS = [1, 2, 3, 4, 5, 7, 8, 16];
const NAMES = ['ring', 'tree', 'rhd', 'hierarchical', 'direct'];
const algo = (name: string): Algorithm => {
  const a = ALLREDUCE_ALGOS.find((x) => x.name === name);
  if (!a) throw new Error(`allreduce algorithm ${name} is not registered`);
  return a;
};
const spec = (p: number, count: number, op: ReduceOp, inPlace: boolean): CollSpec => ({ coll: 'allreduce', p, count, op, inPlace, root: 0 });
const flat = (p: number, reduceBw?: number) => makeTopology('flat', { ranks: p, linkBw: 450, linkLatency: 1, reduceBw });

/** Simulated virtual time (no data) and the formula's time. */
function times(a: Algorithm, s: CollSpec, topo: Topology): { sim: number; formula: number } {
  const sim = simulate({ topo, programs: a.build(s, topo) }).time;
  return { sim, formula: a.cost(s, topo) };
}

/** '' when every rank's output has the same bits as rank 0's, else where they first differ. */
function firstDifference(outs: Float32Array[]): string {
  const a = new Uint32Array(outs[0]!.buffer, outs[0]!.byteOffset, outs[0]!.length);
  for (let r = 1; r < outs.length; r++) {
    const b = new Uint32Array(outs[r]!.buffer, outs[r]!.byteOffset, outs[r]!.length);
    if (b.length !== a.length) return `rank ${r} has ${b.length} elements, rank 0 ${a.length}`;
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return `rank ${r} element ${i}: ${outs[r]![i]} vs ${outs[0]![i]}`;
  }
  return '';
}

/** Relative disagreement, 0 when both are 0. */
const relErr = (sim: number, formula: number) => (sim === 0 && formula === 0 ? 0 : Math.abs(sim - formula) / Math.max(sim, formula));

describe('registry', () => {
  it('registers every allreduce algorithm once, with a formula', () => {
    // torus runs only on torus topologies (tested in test/topology.test.ts), not in the flat matrix here
    expect(ALLREDUCE_ALGOS.map((a) => a.name).sort()).toEqual([...NAMES, 'torus'].sort());
    for (const a of ALLREDUCE_ALGOS) {
      expect(a.coll).toBe('allreduce');
      expect(a.formula.length).toBeGreaterThan(10);
    }
  });
});

describe('allreduce results match the float64 reference', () => {
  for (const name of NAMES) {
    for (const p of RANKS) {
      // 0, 1, a count not divisible by p (p*37+1), and a prime "large" count (4099) for the full matrix
      for (const count of [0, 1, p * 37 + 1, 4099]) {
        it(`${name} p=${p} count=${count}: all ops, in- and out-of-place`, () => {
          const a = algo(name);
          const topo = flat(p);
          for (const op of REDUCE_OPS) {
            for (const inPlace of [false, true]) {
              const s = spec(p, count, op, inPlace);
              const res = simulateCollective(a, s, topo, randomInputs(s, 11 + p));
              expect(res.wrong, `${op} inPlace=${inPlace}: ${res.wrong} wrong (max abs err ${res.maxAbsErr})`).toBe(0);
              expect(res.outputs.every((o) => o!.length === count)).toBe(true);
              // every rank holds the same bits (direct: every rank reduces in the same canonical order)
              expect(firstDifference(res.outputs as Float32Array[]), `${op} inPlace=${inPlace}`).toBe('');
            }
          }
        });
      }
    }
  }

  // 100003 (prime: not divisible by any p > 1; tree pipelines 2 chunks per half)
  for (const name of NAMES) {
    for (const p of [3, 7, 16]) {
      it(`${name} p=${p} count=100003`, () => {
        const a = algo(name);
        const topo = flat(p);
        for (const [op, inPlace] of [['sum', false], ['avg', true], ['max', p < 16]] as const) {
          const s = spec(p, 100003, op, inPlace);
          const res = simulateCollective(a, s, topo, randomInputs(s, 5));
          expect(res.wrong, `${op} inPlace=${inPlace}`).toBe(0);
        }
      });
    }
  }

  // 1<<20: tree pipelines 16 chunks per half; p = 7 has tree B's double leaf
  for (const [name, p, op, inPlace] of [
    ['tree', 4, 'avg', true], ['tree', 7, 'sum', false], ['rhd', 5, 'avg', false], ['ring', 3, 'prod', true],
    ['hierarchical', 4, 'min', false], ['direct', 3, 'sum', true],
  ] as const) {
    it(`${name} p=${p} count=1<<20 ${op} inPlace=${inPlace}`, () => {
      const s = spec(p, 1 << 20, op, inPlace);
      const res = simulateCollective(algo(name), s, flat(p), randomInputs(s, 3));
      expect(res.wrong).toBe(0);
    });
  }

  it('hierarchical and ring on 2 hgx-h100 nodes (16 ranks)', () => {
    const topo = makeTopology('hgx-h100', { nodes: 2 });
    for (const name of ['hierarchical', 'ring', 'tree', 'rhd', 'direct']) {
      for (const [count, op, inPlace] of [[1, 'sum', false], [16 * 37 + 1, 'avg', true], [4099, 'prod', false], [4099, 'max', true]] as const) {
        const s = spec(16, count, op, inPlace);
        const res = simulateCollective(algo(name), s, topo, randomInputs(s, 9));
        expect(res.wrong, `${name} count=${count} ${op} inPlace=${inPlace}`).toBe(0);
        expect(firstDifference(res.outputs as Float32Array[]), `${name} count=${count} ${op} inPlace=${inPlace}`).toBe('');
      }
    }
  });

  it('direct: every rank holds the bits of the canonical-order chain ((x0 + x1) + x2) + ...', () => {
    const chain = (inputs: Float32Array[], p: number, count: number, order: number[]): Float32Array => {
      const acc = Float32Array.from(inputs[order[0]!]!.subarray(0, count));
      for (const q of order.slice(1)) for (let i = 0; i < count; i++) acc[i] = acc[i]! + inputs[q]![i]!;
      return acc;
    };
    for (const p of [2, 3, 5, 8, 16]) {
      for (const inPlace of [false, true]) {
        const count = 1009;
        const s = spec(p, count, 'sum', inPlace);
        const inputs = randomInputs(s, 21 + p);
        const canonical = chain(inputs, p, count, [...Array(p).keys()]);
        for (const topo of p === 16 ? [flat(p), makeTopology('hgx-h100', { nodes: 2 })] : [flat(p)]) {
          const res = simulateCollective(algo('direct'), s, topo, inputs);
          expect(res.wrong).toBe(0);
          const outs = res.outputs as Float32Array[];
          expect(firstDifference([canonical, ...outs]), `p=${p} inPlace=${inPlace} ${topo.name}`).toBe('');
        }
        // the check is sensitive: for p >= 3 a rank-dependent order (as rank p-1 reducing p-1, p-2, ...) gives other bits
        if (p >= 3) {
          const reversed = chain(inputs, p, count, [...Array(p).keys()].reverse());
          expect(firstDifference([canonical, reversed]), `p=${p}`).not.toBe('');
        }
      }
    }
  });

  it('results are deterministic (same bits and time on a second run)', () => {
    for (const name of NAMES) {
      const s = spec(5, 1003, 'sum', false);
      const inputs = randomInputs(s, 2);
      const a = simulateCollective(algo(name), s, flat(5), inputs);
      const b = simulateCollective(algo(name), s, flat(5), inputs);
      expect(b.time).toBe(a.time);
      for (let r = 0; r < 5; r++) expect(firstDifference([a.outputs[r]!, b.outputs[r]!]), name).toBe('');
    }
  });

  it('the checker catches a broken program (the matrix above can fail)', () => {
    for (const name of NAMES) {
      const a = algo(name);
      // drop rank 0's scale op: its share of the avg result is then p times too large
      const broken: Algorithm = {
        ...a,
        build(s, topo) {
          const progs = a.build(s, topo);
          const prog = progs[0]!;
          for (let i = prog.length - 1; i >= 0; i--) {
            const o = prog[i]!;
            if (o.k === 'scale') { prog.splice(i, 1); break; }
          }
          return progs;
        },
      };
      const s = spec(4, 64, 'avg', false);
      expect(simulateCollective(broken, s, flat(4), randomInputs(s, 4)).wrong, name).toBeGreaterThan(0);
    }
  });
});

describe('cost formulas match simulated virtual time within 1%', () => {
  for (const name of NAMES) {
    const ranks = name === 'rhd' ? [...RANKS, 6, 12, 32] : RANKS;
    for (const p of ranks) {
      for (const reduceBw of [undefined, 1000]) {
        it(`${name} p=${p} flat${reduceBw ? ` reduceBw=${reduceBw}` : ''}`, () => {
          const a = algo(name);
          const topo = flat(p, reduceBw);
          for (const count of [0, 1, 7, p * 1000 + 3, 1 << 20]) {
            for (const op of ['sum', 'avg'] as const) {
              for (const inPlace of [false, true]) {
                const { sim, formula } = times(a, spec(p, count, op, inPlace), topo);
                expect(Number.isFinite(formula)).toBe(true);
                expect(relErr(sim, formula), `count=${count} ${op} inPlace=${inPlace}: sim ${sim * 1e6} us, formula ${formula * 1e6} us`).toBeLessThanOrEqual(0.01);
              }
            }
          }
        });
      }
    }
  }

  for (const name of ['hierarchical', 'ring', 'direct']) {
    for (const nodes of [2, 4]) {
      it(`${name} on hgx-h100 --nodes ${nodes}`, () => {
        const a = algo(name);
        for (const reduceBw of [undefined, 1000]) {
          const topo = makeTopology('hgx-h100', { nodes, reduceBw });
          const p = topo.p;
          for (const count of [0, 1, 7, p * 1000 + 3, 100003, 1 << 20, 1 << 24]) {
            for (const op of ['sum', 'avg'] as const) {
              for (const inPlace of [false, true]) {
                const { sim, formula } = times(a, spec(p, count, op, inPlace), topo);
                expect(relErr(sim, formula), `reduceBw=${reduceBw} count=${count} ${op} inPlace=${inPlace}: sim ${sim * 1e6} us, formula ${formula * 1e6} us`).toBeLessThanOrEqual(0.01);
              }
            }
          }
        }
      });
    }
  }

  it('direct on dgx-a100 and on other node shapes (partial last node, 1, 2, 4 GPUs per node)', () => {
    const a = algo('direct');
    const topos: Topology[] = [];
    for (const reduceBw of [undefined, 1000]) {
      for (const nodes of [2, 3]) topos.push(makeTopology('dgx-a100', { nodes, reduceBw }));
      const base = makeTopology('hgx-h100', { nodes: 2, reduceBw });
      topos.push(new Topology({ ...base.data, p: 12 }));
      for (const gpusPerNode of [1, 2, 4]) topos.push(new Topology({ ...base.data, gpusPerNode }));
      topos.push(makeTopology('hgx-h100', { ranks: 5, reduceBw }));
    }
    for (const topo of topos) {
      const p = topo.p;
      for (const count of [0, 1, 7, p * 1000 + 3, 100003, 1 << 20]) {
        for (const op of ['sum', 'avg'] as const) {
          for (const inPlace of [false, true]) {
            const { sim, formula } = times(a, spec(p, count, op, inPlace), topo);
            expect(relErr(sim, formula), `${topo.describe()} count=${count} ${op} inPlace=${inPlace}: sim ${sim * 1e6} us, formula ${formula * 1e6} us`).toBeLessThanOrEqual(0.01);
          }
        }
      }
    }
  });

  it('ring on multi-node is bandwidth-bound by the inter-node port, not the flat formula', () => {
    // 1 GiB-ish vector on 2 hgx nodes: the slow port serializes 2(p-1) blocks; the flat formula
    // 2(p-1)(alpha + b beta) with the slow link would be ~2x too high (it charges every hop at IB speed)
    const topo = makeTopology('hgx-h100', { nodes: 2 });
    const s = spec(16, 1 << 24, 'sum', false);
    const { sim, formula } = times(algo('ring'), s, topo);
    const b = (1 << 24) / 16 * 4;
    const bw = 2 * 15 * b / 50e9 + 5e-6;
    expect(relErr(sim, bw)).toBeLessThan(0.01);
    expect(relErr(sim, formula)).toBeLessThan(0.01);
  });

  it('formulas are closed forms: cheap for 65536 ranks and 2^28 elements', () => {
    const topo = makeTopology('flat', { ranks: 65536, reduceBw: 1000 });
    const t0 = performance.now();
    for (const name of NAMES) {
      const t = algo(name).cost(spec(65536, 1 << 28, 'avg', false), topo);
      expect(Number.isFinite(t) && t > 0, name).toBe(true);
    }
    expect(performance.now() - t0).toBeLessThan(200);
  });

  it('the formulas are sensitive (a wrong latency count would fail)', () => {
    // tree on 16 ranks, tiny message: 2 H alpha with H = 4 (up and down the tree)
    const topo = flat(16);
    const { sim, formula } = times(algo('tree'), spec(16, 1, 'sum', false), topo);
    expect(sim).toBeGreaterThan(8e-6 * 0.99);
    expect(sim).toBeLessThan(8e-6 * 1.01);
    expect(relErr(sim, formula)).toBeLessThan(0.01);
    // direct on 8 ranks, big message: 7 full messages through one port
    const d = times(algo('direct'), spec(8, 1 << 20, 'sum', false), flat(8));
    expect(relErr(d.sim, 1e-6 + 7 * 4 * (1 << 20) / 450e9)).toBeLessThan(0.001);
    // ... and with reductions, all 7 of them after x0 reaches rank 7 (canonical order): a sum, not a max
    const g = times(algo('direct'), spec(8, 1 << 20, 'sum', false), flat(8, 1000));
    expect(relErr(g.sim, 1e-6 + 7 * 4 * (1 << 20) / 450e9 + 7 * 4 * (1 << 20) / 1000e9)).toBeLessThan(0.001);
    expect(relErr(g.sim, g.formula)).toBeLessThan(0.001);
    // 2 hgx-h100 nodes, 1 KiB: x0 reaches rank 15 as rank 0's 8th network message
    const h = times(algo('direct'), spec(16, 256, 'sum', false), makeTopology('hgx-h100', { nodes: 2, reduceBw: 0 }));
    expect(relErr(h.sim, 5e-6 + 8 * 1024 / 50e9)).toBeLessThan(0.001);
  });
});

describe('algorithm structure', () => {
  it('double binary tree: two spanning binary trees of height floor(lg p), interior in at most one', () => {
    for (let p = 2; p <= 70; p++) {
      const trees = doubleTree(p);
      const H = Math.floor(Math.log2(p));
      for (const roles of trees) {
        const roots = roles.filter((x) => x.parent < 0);
        expect(roots.length).toBe(1);
        let height = 0;
        const problems: string[] = [];
        for (let r = 0; r < p; r++) {
          if (roles[r]!.children.length > 2) problems.push(`rank ${r} has ${roles[r]!.children.length} children`);
          for (const c of roles[r]!.children) if (roles[c]!.parent !== r) problems.push(`child ${c} of ${r} has parent ${roles[c]!.parent}`);
          let d = 0;
          for (let x = r; roles[x]!.parent >= 0 && d < p; x = roles[x]!.parent) d++;
          if (d >= p) problems.push(`rank ${r} does not reach the root`);
          height = Math.max(height, d);
        }
        expect(problems, `p=${p}`).toEqual([]);
        expect(height, `p=${p}`).toBe(H);
      }
      let both = 0, neither = 0;
      for (let r = 0; r < p; r++) {
        const interior = trees.filter((t) => t[r]!.children.length > 0).length;
        if (interior === 2) both++;
        if (interior === 0) neither++;
      }
      expect(both, `p=${p}`).toBe(0);
      expect(neither, `p=${p}`).toBe(p % 2); // odd p: exactly one rank is a leaf in both trees
    }
  });

  it('tree chunking: one chunk for small messages, 128 KiB chunks for large ones', () => {
    expect(treeChunks(0)).toBe(1);
    expect(treeChunks(1000)).toBe(1);
    expect(treeChunks(1 << 20)).toBe(((1 << 20) * 2) / TREE_CHUNK_BYTES);
  });

  it('direct uses tmp only in place; the others need no scratch', () => {
    for (const name of NAMES) {
      const a = algo(name);
      for (const inPlace of [false, true]) {
        const t = a.tmpElems ? a.tmpElems(spec(4, 100, 'sum', inPlace), flat(4)) : 0;
        expect(t).toBe(name === 'direct' && inPlace ? 100 : 0);
      }
    }
  });

  it('hierarchical is unsupported when p is not a multiple of the GPUs per node', () => {
    const h = algo('hierarchical');
    const base = makeTopology('hgx-h100', { nodes: 2 });
    const odd = new Topology({ ...base.data, p: 12 });
    expect(h.unsupported!(spec(12, 10, 'sum', false), odd)).toMatch(/multiple/);
    expect(h.unsupported!(spec(16, 10, 'sum', false), base)).toBeUndefined();
    expect(h.unsupported!(spec(5, 10, 'sum', false), makeTopology('hgx-h100', { ranks: 5 }))).toBeUndefined();
    // a single node is the ring
    const topo = flat(7);
    const s = spec(7, 7003, 'sum', false);
    expect(times(h, s, topo).sim).toBe(times(algo('ring'), s, topo).sim);
  });
});
