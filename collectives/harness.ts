/**
 * Run a collective algorithm with the one-thread `simulate` executor, with real data: the fast
 * reference path for tests (the worker emulator runs the very same programs).
 */
import { validatePrograms } from '../runtime/ir.js';
import { simulate, type RankBuffers } from '../runtime/simulate.js';
import type { Topology } from '../runtime/topology.js';
import { checkOutputs, type CheckResult } from './reference.js';
import { bufferSizes, inputRegion, isRooted, outputRegion, type Algorithm, type CollSpec } from './types.js';

export interface SimCollectiveResult extends CheckResult {
  time: number;
  outputs: (Float32Array | null)[];
}

/** Lay inputs into fresh per-rank buffers (NaN elsewhere, so unwritten outputs show up). */
export function makeBuffers(spec: CollSpec, algo: Algorithm, topo: Topology, inputs: Float32Array[]): RankBuffers[] {
  const sz = bufferSizes(spec, algo, topo);
  const bufs: RankBuffers[] = [];
  for (let r = 0; r < spec.p; r++) {
    const b: RankBuffers = { in: new Float32Array(sz.in).fill(NaN), out: new Float32Array(sz.out).fill(NaN), tmp: new Float32Array(sz.tmp).fill(NaN) };
    const I = inputRegion(spec, r);
    const hasInput = !isRooted(spec.coll) || spec.coll === 'reduce' || r === spec.root;
    if (hasInput && spec.coll !== 'barrier') b[I.buf].set(inputs[r]!.subarray(0, I.len), I.off);
    bufs.push(b);
  }
  return bufs;
}

export function simulateCollective(algo: Algorithm, spec: CollSpec, topo: Topology, inputs: Float32Array[]): SimCollectiveResult {
  const why = algo.unsupported?.(spec, topo);
  if (why) throw new Error(`${spec.coll} ${algo.name}: ${why}`);
  const programs = algo.build(spec, topo);
  const sizes = bufferSizes(spec, algo, topo);
  validatePrograms(programs, sizes);
  const data = makeBuffers(spec, algo, topo, inputs);
  const res = simulate({ topo, programs, data });
  const outputs = data.map((b, r) => {
    const O = outputRegion(spec, r);
    return b[O.buf].slice(O.off, O.off + O.len);
  });
  const chk = checkOutputs(spec, inputs, outputs);
  return { time: res.time, outputs, ...chk };
}
