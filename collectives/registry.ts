/**
 * Every algorithm by collective and name, and `auto` selection from the cost formulas (as NCCL's
 * tuner picks algorithm/protocol from its latency/bandwidth model).
 */
import type { Topology } from '../runtime/topology.js';
import { ALLREDUCE_ALGOS } from './allreduce/index.js';
import { BASIC_ALGOS } from './basic/index.js';
import { PROTOCOL_ALGOS } from './protocols/index.js';
import { COLLECTIVES, type Algorithm, type CollSpec, type Collective } from './types.js';

/** Every algorithm; the NCCL protocol variants last, so a tie in auto-selection keeps the older ones. */
export const ALGORITHMS: Algorithm[] = [...ALLREDUCE_ALGOS, ...BASIC_ALGOS, ...PROTOCOL_ALGOS];

export class AlgorithmError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AlgorithmError';
  }
}

export function algorithmsFor(coll: Collective): Algorithm[] {
  return ALGORITHMS.filter((a) => a.coll === coll);
}

export function getAlgorithm(coll: Collective, name: string): Algorithm {
  if (!COLLECTIVES.includes(coll)) throw new AlgorithmError(`unknown collective '${coll}' (known: ${COLLECTIVES.join(', ')})`);
  const a = ALGORITHMS.find((x) => x.coll === coll && x.name === name);
  if (!a) {
    const names = algorithmsFor(coll).map((x) => x.name);
    throw new AlgorithmError(`unknown ${coll} algorithm '${name}' (known: ${names.join(', ') || 'none'}, auto)`);
  }
  return a;
}

/** The supported algorithm with the lowest modeled time for this spec on this topology. */
export function autoSelect(spec: CollSpec, topo: Topology): Algorithm {
  let best: Algorithm | undefined;
  let bestT = Infinity;
  for (const a of algorithmsFor(spec.coll)) {
    if (a.unsupported?.(spec, topo)) continue;
    const t = a.cost(spec, topo);
    if (t < bestT) { bestT = t; best = a; }
  }
  if (!best) throw new AlgorithmError(`no ${spec.coll} algorithm supports ${spec.p} ranks on ${topo.name}`);
  return best;
}

/** Resolve an --algo value ('auto' or a name) for a spec. */
export function resolveAlgorithm(spec: CollSpec, topo: Topology, name: string): Algorithm {
  if (name === 'auto') return autoSelect(spec, topo);
  const a = getAlgorithm(spec.coll, name);
  const why = a.unsupported?.(spec, topo);
  if (why) throw new AlgorithmError(`${spec.coll} algorithm '${name}' cannot run here: ${why}`);
  return a;
}
