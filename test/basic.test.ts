/**
 * collectives/basic: every algorithm, run with real data through `simulate` against the float64
 * reference (zero wrong), and its closed-form cost against the simulated virtual time (within 1%
 * on `flat`, with and without --reduce-bw so gamma/delta are nonzero).
 */
import { describe, expect, it } from 'vitest';
import { BASIC_ALGOS } from '../collectives/basic/index.js';
import { simulateCollective } from '../collectives/harness.js';
import { randomInputs } from '../collectives/reference.js';
import { algorithmsFor, getAlgorithm } from '../collectives/registry.js';
import { bufferSizes, isReducing, isRooted, type Algorithm, type CollSpec, type Collective } from '../collectives/types.js';
import { REDUCE_OPS, validatePrograms, type Op, type ReduceOp } from '../runtime/ir.js';
import { simulate } from '../runtime/simulate.js';
import { makeTopology, type Topology } from '../runtime/topology.js';

const RANKS = [1, 2, 3, 4, 5, 7, 8, 16];
/** 13 and 20011 are divisible by none of RANKS (except 1) */
const DATA_COUNTS = [0, 1, 13, 20011];
const flat = (p: number, reduceBw?: number): Topology =>
  makeTopology('flat', { ranks: p, linkBw: 450, linkLatency: 1, ...(reduceBw ? { reduceBw } : {}) });
const rootsFor = (coll: Collective, p: number): number[] => (isRooted(coll) ? [...new Set([0, p - 1, Math.floor(p / 2)])] : [0]);
const opsFor = (coll: Collective): readonly ReduceOp[] => (isReducing(coll) ? REDUCE_OPS : ['sum']);
const label = (a: Algorithm, s: CollSpec) =>
  `${a.coll}/${a.name} p=${s.p} count=${s.count} ${s.inPlace ? 'in-place' : 'out-of-place'}${isReducing(s.coll) ? ` op=${s.op}` : ''}${isRooted(s.coll) ? ` root=${s.root}` : ''}`;

/**
 * randomInputs depends on the spec only through the input size and whether op is 'prod'; large
 * inputs (p=16 reducescatter: 16 x 320k values) are costly to generate, so reuse the last few.
 */
const inputCache = new Map<string, Float32Array[]>();
function inputsFor(spec: CollSpec): Float32Array[] {
  const key = `${spec.coll} ${spec.p} ${spec.count} ${spec.op === 'prod'}`;
  let v = inputCache.get(key);
  if (!v) {
    v = randomInputs(spec, 17 + spec.count + spec.p);
    if (inputCache.size >= 4) inputCache.delete(inputCache.keys().next().value!);
    inputCache.set(key, v);
  }
  return v;
}

/** Data check of one algorithm for one rank count over counts x ops x in/out-of-place x roots; returns failures. */
function dataFailures(algo: Algorithm, p: number, counts = DATA_COUNTS, topo = flat(p)): string[] {
  const fails: string[] = [];
  for (const count of counts) for (const inPlace of [false, true]) for (const op of opsFor(algo.coll)) for (const root of rootsFor(algo.coll, p)) {
    const spec: CollSpec = { coll: algo.coll, p, count, op, inPlace, root };
    try {
      const res = simulateCollective(algo, spec, topo, inputsFor(spec));
      if (res.wrong !== 0) fails.push(`${label(algo, spec)}: ${res.wrong} wrong (max abs err ${res.maxAbsErr})`);
    } catch (e) {
      fails.push(`${label(algo, spec)}: ${(e as Error).name}: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  return fails;
}

/** Formula vs simulated virtual time (no data) for one rank count; returns failures. */
function costFailures(algo: Algorithm, p: number, tol = 0.01): string[] {
  const fails: string[] = [];
  for (const reduceBw of [undefined, 1000]) {
    const topo = flat(p, reduceBw);
    for (const count of [0, 1, 7, p * 1000 + 3, 1 << 18]) for (const inPlace of [false, true]) for (const op of isReducing(algo.coll) ? (['sum', 'avg'] as const) : (['sum'] as const)) for (const root of rootsFor(algo.coll, p)) {
      const spec: CollSpec = { coll: algo.coll, p, count, op, inPlace, root };
      const programs = algo.build(spec, topo);
      validatePrograms(programs, bufferSizes(spec, algo, topo));
      const sim = simulate({ topo, programs }).time;
      const f = algo.cost(spec, topo);
      if (!(Math.abs(sim - f) <= tol * f + 1e-15)) {
        fails.push(`${label(algo, spec)} reduceBw=${reduceBw ?? 'free'}: simulated ${(sim * 1e6).toFixed(4)} us, formula ${(f * 1e6).toFixed(4)} us`);
      }
    }
  }
  return fails;
}

describe('basic algorithm registry', () => {
  it('has every requested algorithm under its --algo name, reachable through the registry', () => {
    const want: [Collective, string][] = [
      ['allgather', 'ring'], ['allgather', 'rd'], ['allgather', 'bruck'],
      ['reducescatter', 'ring'], ['reducescatter', 'rh'],
      ['broadcast', 'binomial'], ['broadcast', 'chain'],
      ['reduce', 'binomial'], ['reduce', 'ring'],
      ['alltoall', 'pairwise'], ['sendrecv', 'ring'], ['barrier', 'dissemination'],
      // rail-optimized, for multi-node topologies (one node: the ring)
      ['reducescatter', 'hierarchical'], ['allgather', 'hierarchical'],
    ];
    expect(BASIC_ALGOS.map((a) => [a.coll, a.name]).sort()).toEqual([...want].sort());
    for (const [coll, name] of want) {
      const a = getAlgorithm(coll, name);
      expect(a.coll).toBe(coll);
      expect(a.formula.length).toBeGreaterThan(5);
      expect(algorithmsFor(coll)).toContain(a);
    }
  });
});

for (const algo of BASIC_ALGOS) {
  describe(`${algo.coll}/${algo.name}`, () => {
    for (const p of RANKS) {
      it(`p=${p}: results match the float64 reference`, () => {
        expect(dataFailures(algo, p)).toEqual([]);
      });
      it(`p=${p}: simulated time equals the cost formula within 1%`, () => {
        expect(costFailures(algo, p)).toEqual([]);
      });
    }
  });
}

describe('basic algorithms on a two-level topology', () => {
  it('hgx-h100, 16 ranks on 2 nodes: results still match the reference', () => {
    const topo = makeTopology('hgx-h100', { ranks: 16 });
    const fails = BASIC_ALGOS.flatMap((a) => dataFailures(a, 16, [5, 4099], topo));
    expect(fails).toEqual([]);
  });
});

describe('the checks can fail', () => {
  const ring = getAlgorithm('allgather', 'ring');
  it('a wrong schedule is caught by the data check', () => {
    // deliver every block one slot off
    const broken: Algorithm = {
      ...ring,
      build: (spec, topo) => ring.build(spec, topo).map((prog) => prog.map((o) => (o.k === 'recv' && o.dst.len > 0 ? { ...o, dst: { ...o.dst, off: (o.dst.off + spec.count) % (spec.p * spec.count) } } : o))),
    };
    expect(dataFailures(broken, 4, [3]).length).toBeGreaterThan(0);
  });
  it('an avg that scales twice is caught', () => {
    const rs = getAlgorithm('reducescatter', 'ring');
    const twice: Algorithm = { ...rs, build: (spec, topo) => rs.build(spec, topo).map((prog) => prog.flatMap((o): Op[] => (o.k === 'scale' ? [o, o] : [o]))) };
    expect(dataFailures(twice, 3, [4]).some((f) => f.includes('op=avg'))).toBe(true);
  });
  it('an in-place ring shift without tmp deadlocks, and the check reports it', () => {
    const naive: Algorithm = {
      ...getAlgorithm('sendrecv', 'ring'),
      tmpElems: () => 0,
      build: (spec) => Array.from({ length: spec.p }, (_, r) => [
        { k: 'send' as const, peer: (r + 1) % spec.p, src: { buf: 'out' as const, off: 0, len: spec.count } },
        { k: 'recv' as const, peer: (r + spec.p - 1) % spec.p, dst: { buf: 'out' as const, off: 0, len: spec.count } },
      ]),
    };
    const spec: CollSpec = { coll: 'sendrecv', p: 3, count: 4, op: 'sum', inPlace: true, root: 0 };
    expect(() => simulateCollective(naive, spec, flat(3), randomInputs(spec))).toThrow(/deadlock/);
  });
  it('a formula that is 2% off is caught by the timing check', () => {
    const off: Algorithm = { ...ring, cost: (spec, topo) => ring.cost(spec, topo) * 1.02 };
    expect(costFailures(off, 4).length).toBeGreaterThan(0);
  });
});
