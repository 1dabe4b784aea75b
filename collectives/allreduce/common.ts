/**
 * Small helpers shared by the AllReduce algorithms.
 */
import type { Op, Program } from '../../runtime/ir.js';
import type { Topology } from '../../runtime/topology.js';
import { inputRegion, outputRegion, type CollSpec } from '../types.js';

/**
 * p = 1: the result is the input, copied when out-of-place (as ring.ts). For 'avg' the factor 1/p
 * is 1, so no scale op is emitted.
 */
export function singleRankProgram(spec: CollSpec): Program[] {
  const I = inputRegion(spec, 0), O = outputRegion(spec, 0);
  const ops: Op[] = [];
  if (!spec.inPlace && spec.count > 0) ops.push({ k: 'copy', src: I, dst: O });
  return [ops];
}

/** Cost of singleRankProgram: n delta for the copy when out-of-place. */
export function singleRankCost(spec: CollSpec, topo: Topology): number {
  return spec.inPlace ? 0 : spec.count * 4 * topo.data.delta;
}

/** floor(log2 x) for x >= 1 (the shared bit helper). */
export { msb as log2floor } from '../basic/common.js';
