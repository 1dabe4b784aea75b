/**
 * The simulator at scale: lazy per-rank op streams (Algorithm.rankProgram) are exactly build()'s
 * programs, run through simulate() to the same virtual times bit for bit as the arrays, keep one op
 * of lookahead, and let thousands of ranks run against the closed-form costs.
 * Host speed is measured by bench/simulate.ts, not here.
 */
import { describe, expect, it } from 'vitest';
import { ALLREDUCE_ALGOS } from '../collectives/allreduce/index.js';
import { hierarchicalAllreduce } from '../collectives/allreduce/hierarchical.js';
import { ringAllreduce } from '../collectives/allreduce/ring.js';
import { makeBuffers } from '../collectives/harness.js';
import { checkOutputs, randomInputs } from '../collectives/reference.js';
import { outputRegion, type Algorithm, type CollSpec } from '../collectives/types.js';
import type { Op, Program, ReduceOp } from '../runtime/ir.js';
import { DeadlockError, simulate, type OpCursor } from '../runtime/simulate.js';
import { makeTopology, topologyFromJson, type Topology } from '../runtime/topology.js';

const spec = (p: number, count: number, op: ReduceOp, inPlace: boolean): CollSpec => ({ coll: 'allreduce', p, count, op, inPlace, root: 0 });
const flat = (p: number, reduceBw?: number) => makeTopology('flat', { ranks: p, linkBw: 450, linkLatency: 1, reduceBw });
const hgx = (nodes: number) => makeTopology('hgx-h100', { nodes });
const lazy = (a: Algorithm, s: CollSpec, topo: Topology) => (r: number) => a.rankProgram!(s, topo, r);
const relErr = (x: number, y: number) => (x === 0 && y === 0 ? 0 : Math.abs(x - y) / Math.max(Math.abs(x), Math.abs(y)));

const STREAMING = ALLREDUCE_ALGOS.filter((a) => a.rankProgram);

/** The same stream without its OpCursor (nextOp): simulate() then pulls it through next(). */
const plainIterable = (stream: Iterable<Op>): Iterable<Op> => ({
  [Symbol.iterator]: () => {
    const it = stream[Symbol.iterator]();
    return { next: () => it.next() };
  },
});
/** An op's fields (a reused cursor op has the fields its kind lacks set to undefined) */
const fields = (o: Op | undefined) => {
  if (!o) return undefined;
  const x = o as Partial<{ k: string; peer: number; src: unknown; dst: unknown; op: unknown; acc: unknown; s: unknown; mc: unknown; net: unknown; factor: unknown }>;
  return { k: x.k, peer: x.peer, src: x.src, dst: x.dst, op: x.op, acc: x.acc, s: x.s, mc: x.mc, net: x.net, factor: x.factor };
};

describe('rankProgram is build() one rank at a time', () => {
  it('is implemented by ring, hierarchical, rhd and direct', () => {
    for (const name of ['ring', 'hierarchical', 'rhd', 'direct']) expect(STREAMING.map((a) => a.name)).toContain(name);
  });

  // every rank's stream, read twice (a stream is re-iterable), against build()'s array: the same
  // ops with the same fields in the same order (JSON text)
  const topos: [string, (p: number) => Topology | undefined][] = [
    ['flat', (p) => flat(p)],
    ['hgx-h100', (p) => (p <= 8 || p % 8 === 0 ? makeTopology('hgx-h100', { ranks: p }) : undefined)],
  ];
  for (const a of STREAMING) {
    for (const [tname, mk] of topos) {
      it(`${a.name} on ${tname}: same ops for p = 1..5, 7, 8, 9, 16, 24, 64, every count shape, op, in/out of place`, () => {
        let checked = 0;
        for (const p of [1, 2, 3, 4, 5, 7, 8, 9, 16, 24, 64]) {
          const topo = mk(p);
          if (!topo) continue;
          for (const count of [0, 1, 5, p * 37 + 1, 4099]) {
            for (const op of ['sum', 'avg', 'max'] as const) {
              for (const inPlace of [false, true]) {
                const s = spec(p, count, op, inPlace);
                if (a.unsupported?.(s, topo)) continue;
                const progs = a.build(s, topo);
                for (let r = 0; r < p; r++) {
                  const stream = a.rankProgram!(s, topo, r);
                  const want = JSON.stringify(progs[r]);
                  expect(JSON.stringify([...stream]), `${a.name} ${tname} p=${p} count=${count} ${op} inPlace=${inPlace} rank ${r}`).toBe(want);
                  expect(JSON.stringify(Array.from(stream))).toBe(want);
                }
                checked++;
              }
            }
          }
        }
        expect(checked).toBeGreaterThan(50);
      });
    }
  }

  it('hierarchical on hgx-h100 with 2, 3, 5 and 16 nodes, and with 1 GPU per node', () => {
    // one GPU per node: only the inter-node ring runs, reducing from 'in'
    const one = topologyFromJson({ name: 'g1', gpusPerNode: 1, nodes: 6, links: { ib: { latency_us: 5, bandwidth_GBps: 50 } } });
    const cases: [Topology, number][] = [[hgx(2), 16], [hgx(3), 24], [hgx(5), 40], [hgx(16), 128], [one, 6]];
    for (const [topo, p] of cases) {
      for (const count of [3, 1000, 128 * 9 + 5]) {
        for (const op of ['sum', 'avg'] as const) {
          for (const inPlace of [false, true]) {
            const s = spec(p, count, op, inPlace);
            const progs = hierarchicalAllreduce.build(s, topo);
            for (let r = 0; r < p; r++) expect(JSON.stringify([...hierarchicalAllreduce.rankProgram!(s, topo, r)])).toBe(JSON.stringify(progs[r]));
          }
        }
      }
    }
  });
});

describe('simulate() with lazy streams', () => {
  // same virtual time, per-rank times, message and op counts, bit for bit
  const same = (a: Algorithm, s: CollSpec, topo: Topology) => {
    const arrays = simulate({ topo, programs: a.build(s, topo) });
    const streams = simulate({ topo, programs: lazy(a, s, topo) });
    const label = `${a.name} ${topo.name} p=${s.p} count=${s.count} ${s.op} inPlace=${s.inPlace}`;
    expect(streams.time, label).toBe(arrays.time);
    expect(Array.from(streams.rankTimes), label).toEqual(Array.from(arrays.rankTimes));
    expect(streams.messages, label).toBe(arrays.messages);
    expect(streams.ops, label).toBe(arrays.ops);
    expect(streams.ops, label).toBe(a.build(s, topo).reduce((n, pr) => n + pr.length, 0));
  };

  for (const a of [ringAllreduce, hierarchicalAllreduce]) {
    it(`${a.name}: the same times as build() arrays on flat and on hgx-h100 with 1, 2, 4, 16 nodes`, () => {
      for (const [topo, p] of [[flat(8), 8], [flat(13, 200), 13], [flat(64), 64], [hgx(1), 8], [hgx(2), 16], [hgx(4), 32], [hgx(16), 128]] as [Topology, number][]) {
        for (const count of [1, 1000, 262_147, 4 << 20]) {
          for (const op of ['sum', 'avg'] as const) same(a, spec(p, count, op, count === 1000), topo);
        }
      }
    });
  }

  it('rhd and direct: the same times as build() arrays', () => {
    for (const a of STREAMING.filter((x) => x.name === 'rhd' || x.name === 'direct')) {
      for (const [topo, p] of [[flat(7), 7], [flat(16), 16], [hgx(2), 16], [hgx(3), 24]] as [Topology, number][]) {
        for (const count of [1, 4099, 1 << 20]) for (const op of ['sum', 'avg'] as const) same(a, spec(p, count, op, false), topo);
      }
    }
  });

  it('moves real data from streams (data mode) and gets the reference result', () => {
    for (const a of STREAMING) {
      for (const [topo, p] of [[flat(7), 7], [hgx(2), 16]] as [Topology, number][]) {
        for (const inPlace of [false, true]) {
          const s = spec(p, 1003, 'avg', inPlace);
          const inputs = randomInputs(s, 11);
          const data = makeBuffers(s, a, topo, inputs);
          const res = simulate({ topo, programs: lazy(a, s, topo), data });
          const outputs = data.map((b, r) => {
            const O = outputRegion(s, r);
            return b[O.buf].slice(O.off, O.off + O.len);
          });
          expect(checkOutputs(s, inputs, outputs).wrong, `${a.name} ${topo.name} inPlace=${inPlace}`).toBe(0);
          expect(res.time).toBe(simulate({ topo, programs: a.build(s, topo) }).time);
        }
      }
    }
  });

  it('still takes (rank) => Program and records the same trace', () => {
    const topo = hgx(2);
    const s = spec(16, 5000, 'sum', false);
    const progs = ringAllreduce.build(s, topo);
    const a = simulate({ topo, programs: progs, trace: true });
    const b = simulate({ topo, programs: (r) => progs[r]!, trace: true });
    const c = simulate({ topo, programs: lazy(ringAllreduce, s, topo), trace: true });
    expect(b.time).toBe(a.time);
    expect(c.time).toBe(a.time);
    const key = (e: { rank: number; kind: string; peer: number; msg: number; vStart: number; vEnd: number }) => `${e.rank} ${e.kind} ${e.peer} ${e.msg} ${e.vStart} ${e.vEnd}`;
    const sorted = (ev: typeof a.events) => ev!.map(key).sort();
    expect(sorted(b.events)).toEqual(sorted(a.events));
    expect(sorted(c.events)).toEqual(sorted(a.events));
    expect(a.events!.length).toBe(a.ops);
  });

  it('pulls one op ahead at most: a stream is never read past an op that blocks', () => {
    const topo = flat(3);
    function* rank0(): Generator<Op> {
      yield { k: 'recv', peer: 1, dst: { buf: 'out', off: 0, len: 1 } };
      throw new Error('read past a blocked recv');
    }
    function* idle(): Generator<Op> { /* no ops */ }
    expect(() => simulate({ topo, programs: (r) => (r === 0 ? rank0() : idle()) })).toThrow(DeadlockError);
  });

  it('reports a deadlock the same way for streams and arrays', () => {
    // rank 0 overwrites the region it sent to rank 1, which first waits for rank 2, which waits for rank 0
    const programs: Program[] = [
      [{ k: 'send', peer: 1, src: { buf: 'out', off: 0, len: 1 } }, { k: 'copy', src: { buf: 'out', off: 1, len: 1 }, dst: { buf: 'out', off: 0, len: 1 } }],
      [{ k: 'recv', peer: 2, dst: { buf: 'out', off: 1, len: 1 } }, { k: 'recv', peer: 0, dst: { buf: 'out', off: 2, len: 1 } }],
      [{ k: 'recv', peer: 0, dst: { buf: 'out', off: 0, len: 1 } }, { k: 'send', peer: 1, src: { buf: 'out', off: 0, len: 1 } }],
    ];
    const topo = flat(3);
    const fromArrays = (() => { try { simulate({ topo, programs }); } catch (e) { return e; } })() as DeadlockError;
    const fromStreams = (() => { try { simulate({ topo, programs: (r) => programs[r]!.values() }); } catch (e) { return e; } })() as DeadlockError;
    expect(fromArrays).toBeInstanceOf(DeadlockError);
    expect(fromStreams).toBeInstanceOf(DeadlockError);
    expect(fromStreams.pending).toEqual(fromArrays.pending);
    expect(fromArrays.pending.join('\n')).toMatch(/rank 0 at op 1 \(copy .*\): waits for rank 1 to receive a message it sent \(send buffer reuse\)/);
    expect(fromArrays.pending.join('\n')).toMatch(/rank 2 at op 0 .*waits for a message from rank 0/);
  });
});

describe('OpCursor streams (nextOp, reused op objects)', () => {
  const cursorAlgos = [ringAllreduce, hierarchicalAllreduce];

  it('ring and hierarchical streams are OpCursors whose nextOp() gives the ops of next()', () => {
    for (const a of cursorAlgos) {
      for (const [topo, p] of [[flat(5), 5], [hgx(1), 8], [hgx(3), 24]] as [Topology, number][]) {
        for (const op of ['sum', 'avg'] as const) {
          const s = spec(p, 1003, op, false);
          for (let r = 0; r < p; r++) {
            const want = [...a.rankProgram!(s, topo, r)];
            const cur = a.rankProgram!(s, topo, r)[Symbol.iterator]() as Iterator<Op> & Partial<OpCursor>;
            expect(typeof cur.nextOp, `${a.name} p=${p} ${op}`).toBe('function');
            const got: ReturnType<typeof fields>[] = [];
            for (let o = cur.nextOp!(); o !== undefined; o = cur.nextOp!()) got.push(fields(o));
            expect(got, `${a.name} p=${p} ${op} rank ${r}`).toEqual(want.map(fields));
            expect(cur.nextOp!()).toBeUndefined();
          }
        }
      }
    }
  });

  it('simulate() gives the same times, counts, trace and data through nextOp() as through next()', () => {
    for (const a of cursorAlgos) {
      for (const [topo, p] of [[flat(7), 7], [hgx(2), 16], [hgx(4), 32]] as [Topology, number][]) {
        for (const op of ['sum', 'avg'] as const) {
          const s = spec(p, 4099, op, false);
          const viaCursor = simulate({ topo, programs: lazy(a, s, topo), trace: true });
          const viaNext = simulate({ topo, programs: (r) => plainIterable(a.rankProgram!(s, topo, r)), trace: true });
          const label = `${a.name} ${topo.name} p=${p} ${op}`;
          expect(viaCursor.time, label).toBe(viaNext.time);
          expect(Array.from(viaCursor.rankTimes), label).toEqual(Array.from(viaNext.rankTimes));
          expect([viaCursor.messages, viaCursor.ops], label).toEqual([viaNext.messages, viaNext.ops]);
          const key = (e: { rank: number; kind: string; peer: number; msg: number; vStart: number; vEnd: number; bytes: number }) => `${e.rank} ${e.kind} ${e.peer} ${e.msg} ${e.vStart} ${e.vEnd} ${e.bytes}`;
          expect(viaCursor.events!.map(key).sort(), label).toEqual(viaNext.events!.map(key).sort());
          const inputs = randomInputs(s, 5);
          const d1 = makeBuffers(s, a, topo, inputs), d2 = makeBuffers(s, a, topo, inputs);
          simulate({ topo, programs: lazy(a, s, topo), data: d1 });
          simulate({ topo, programs: (r) => plainIterable(a.rankProgram!(s, topo, r)), data: d2 });
          const outs = (d: typeof d1) => d.map((b, r) => { const O = outputRegion(s, r); return b[O.buf].slice(O.off, O.off + O.len); });
          expect(checkOutputs(s, inputs, outs(d1)).wrong, label).toBe(0);
          expect(outs(d1), label).toEqual(outs(d2));
        }
      }
    }
  });

  it('reports a deadlock the same way for a cursor that reuses one op object', () => {
    // as 'reports a deadlock the same way for streams and arrays', through an OpCursor that copies
    // each op into one scratch object (the report describes each blocked rank's op)
    const programs: Program[] = [
      [{ k: 'send', peer: 1, src: { buf: 'out', off: 0, len: 1 } }, { k: 'copy', src: { buf: 'out', off: 1, len: 1 }, dst: { buf: 'out', off: 0, len: 1 } }],
      [{ k: 'recv', peer: 2, dst: { buf: 'out', off: 1, len: 1 } }, { k: 'recv', peer: 0, dst: { buf: 'out', off: 2, len: 1 } }],
      [{ k: 'recv', peer: 0, dst: { buf: 'out', off: 0, len: 1 } }, { k: 'send', peer: 1, src: { buf: 'out', off: 0, len: 1 } }],
    ];
    const cursor = (ops: Program): Iterable<Op> => ({
      [Symbol.iterator]: () => {
        let i = 0;
        const scratch: Record<string, unknown> = {};
        return {
          next: () => (i < ops.length ? { done: false, value: ops[i++]! } : { done: true, value: undefined }),
          nextOp: () => {
            if (i >= ops.length) return undefined;
            for (const key of Object.keys(scratch)) delete scratch[key];
            Object.assign(scratch, ops[i++]!);
            return scratch as unknown as Op;
          },
        } as Iterator<Op> & OpCursor;
      },
    });
    const topo = flat(3);
    const catchIt = (f: () => unknown) => { try { f(); } catch (e) { return e; } return undefined; };
    const fromArrays = catchIt(() => simulate({ topo, programs })) as DeadlockError;
    const fromCursors = catchIt(() => simulate({ topo, programs: (r) => cursor(programs[r]!) })) as DeadlockError;
    expect(fromCursors).toBeInstanceOf(DeadlockError);
    expect(fromCursors.pending).toEqual(fromArrays.pending);
  });
});

describe('thousands of ranks, streamed', () => {
  it('ring over 2,048 ranks on flat: the closed form exactly', () => {
    const topo = flat(2048);
    const s = spec(2048, 1 << 24, 'sum', false);
    const res = simulate({ topo, programs: lazy(ringAllreduce, s, topo) });
    expect(res.ops).toBe(2048 * 4 * 2047);
    expect(relErr(res.time, ringAllreduce.cost(s, topo))).toBeLessThan(1e-9);
  });

  it('hierarchical over 4,096 ranks (hgx-h100, 512 nodes): the closed form within 1%', () => {
    const topo = hgx(512);
    const s = spec(4096, 1 << 24, 'sum', false);
    const res = simulate({ topo, programs: lazy(hierarchicalAllreduce, s, topo) });
    expect(res.ops).toBe(4096 * (4 * 7 + 4 * 511));
    expect(relErr(res.time, hierarchicalAllreduce.cost(s, topo))).toBeLessThan(0.01);
  });
});
