import { describe, expect, it } from 'vitest';
import { simulateCollective } from '../collectives/harness.js';
import { randomInputs } from '../collectives/reference.js';
import { ringAllreduce } from '../collectives/allreduce/ring.js';
import { makeTopology } from '../runtime/topology.js';
import type { CollSpec } from '../collectives/types.js';

describe('ring allreduce via simulate', () => {
  for (const p of [1, 2, 3, 8]) for (const count of [0, 1, 13, 1000]) for (const inPlace of [false, true]) for (const op of ['sum', 'avg', 'max', 'prod'] as const) {
    it(`p=${p} count=${count} ${op} inPlace=${inPlace}`, () => {
      const topo = makeTopology('flat', { ranks: p, linkBw: 450, linkLatency: 1 });
      const spec: CollSpec = { coll: 'allreduce', p, count, op, inPlace, root: 0 };
      const res = simulateCollective(ringAllreduce, spec, topo, randomInputs(spec, 7));
      expect(res.wrong).toBe(0);
      const f = ringAllreduce.cost(spec, topo);
      expect(Math.abs(res.time - f)).toBeLessThanOrEqual(f * 0.01 + 1e-15);
    });
  }
});
