/**
 * Receiver-side (ingress) contention (TopologyData.ingress, `--ingress`; runtime/timing.ts
 * ingressArrival) and the IR's switch operations (multicast `mc`, in-network reduction `net`) that
 * NVLS AllReduce is built from (collectives/protocols/nvls.ts):
 *  - ingress off by default (times unchanged); with it on, an incast of p-1 messages into one rank
 *    takes a + (p-1) w instead of a + w, in the receiver's program order;
 *  - emulator (worker threads, real data) == simulator, bit-identical, with ingress on;
 *  - which algorithms it changes (those with several senders into one receiver at once) and by how
 *    much, against their uncontended closed forms;
 *  - NVLS on real data in both executors, its exact closed form and the published busbw;
 *  - the switch-operation rules are validated (mc must follow a send of the same region, net on
 *    both sides, a rank sends to itself only through the switch).
 */
import { simulateCollective } from '../collectives/harness.js';
import { nvlsAllreduce, NVLS_LATENCY } from '../collectives/protocols/nvls.js';
import { randomInputs } from '../collectives/reference.js';
import { ALGORITHMS, algorithmsFor, autoSelect, getAlgorithm } from '../collectives/registry.js';
import { bufferSizes, busBwFactor, countForSize, type Algorithm, type CollSpec } from '../collectives/types.js';
import { Cluster } from '../runtime/cluster.js';
import { IRError, REDUCE_OPS, validatePrograms, type Program } from '../runtime/ir.js';
import { contendedTimes } from '../runtime/contention.js';
import { DeadlockError, simulate } from '../runtime/simulate.js';
import { makeTopology, topologyFromJson, TopologyError, type Topology, type TopologyOptions } from '../runtime/topology.js';
import { spawnSync } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';

const BIN = join(import.meta.dirname, '..', 'bin', 'collemu');
const runCli = (args: string[]) => {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
};

const GB = 1e9;
const specOf = (p: number, count: number, op: CollSpec['op'] = 'sum', inPlace = false): CollSpec => ({ coll: 'allreduce', p, count, op, inPlace, root: 0 });
const simTime = (a: Algorithm, s: CollSpec, topo: Topology) => simulate({ topo, programs: a.build(s, topo) }).time;
const flat = (p: number, ingress = false, reduceBw?: number) =>
  makeTopology('flat', { ranks: p, linkBw: 100, linkLatency: 2, ...(ingress ? { ingress } : {}), ...(reduceBw ? { reduceBw } : {}) });

/** ranks 1..p-1 each send `len` floats to rank 0, which receives them in rank order */
function incast(p: number, len: number, reduce = false): Program[] {
  const progs: Program[] = [[]];
  for (let r = 1; r < p; r++) {
    progs.push([{ k: 'send', peer: 0, src: { buf: 'in', off: 0, len } }]);
    progs[0]!.push(reduce
      ? { k: 'recv', peer: r, dst: { buf: 'out', off: 0, len }, op: 'sum', acc: { buf: 'out', off: 0, len } }
      : { k: 'recv', peer: r, dst: { buf: 'out', off: (r - 1) * len, len } });
  }
  return progs;
}

describe('ingress contention: the timing rule', () => {
  it('is off by default on every preset and JSON topology; --ingress / "ingress": true turns it on', () => {
    for (const name of ['flat', 'hgx-h100', 'dgx-a100', 'gb200-nvl72', 'tpu-v4', 'llama3']) {
      expect(makeTopology(name).data.ingress, name).toBeUndefined();
      expect(makeTopology(name, { ingress: true }).data.ingress, name).toBe(true);
      expect(makeTopology(name, { ingress: true }).describe()).toMatch(/ingress contention/);
    }
    const j = { gpusPerNode: 8, links: { nvlink: { latency_us: 1, bandwidth_GBps: 450 } }, intraNode: 'nvlink', interNode: 'nvlink' };
    expect(topologyFromJson(j).data.ingress).toBeUndefined();
    expect(topologyFromJson({ ...j, ingress: true }).data.ingress).toBe(true);
    expect(topologyFromJson({ ...j, ingress: true }, 'f', { ingress: false }).data.ingress).toBeUndefined();
    expect(() => topologyFromJson({ ...j, ingress: 'yes' })).toThrow(TopologyError);
  });

  it('an incast of p-1 messages into one rank: a + w without ingress, a + (p-1) w with it', () => {
    const len = 250_000; // 1 MB: w = 10 us at 100 GB/s
    const w = (len * 4) / 100e9, a = 2e-6;
    for (const p of [2, 3, 8, 17]) {
      const off = simulate({ topo: flat(p), programs: incast(p, len) });
      const on = simulate({ topo: flat(p, true), programs: incast(p, len) });
      expect(off.rankTimes[0]).toBeCloseTo(a + w, 15);
      expect(on.rankTimes[0]).toBeCloseTo(a + (p - 1) * w, 15);
      // senders are not held back (no backpressure: the switch buffers)
      for (let r = 1; r < p; r++) expect(on.rankTimes[r]).toBe(off.rankTimes[r]);
    }
  });

  it('messages queue in the receiver\'s program order, not in arrival order', () => {
    // rank 1 sends late (after a 20 us compute), rank 2 at once; rank 0 receives rank 1's first
    const len = 250_000, w = 10e-6, a = 2e-6;
    const progs: Program[] = [
      [{ k: 'recv', peer: 1, dst: { buf: 'out', off: 0, len } }, { k: 'recv', peer: 2, dst: { buf: 'out', off: len, len } }],
      [{ k: 'compute', flops: 0, bytes: 0, label: 'wait' }, { k: 'send', peer: 0, src: { buf: 'in', off: 0, len } }],
      [{ k: 'send', peer: 0, src: { buf: 'in', off: 0, len } }],
    ];
    const t = simulate({ topo: flat(3, true), programs: progs }).rankTimes[0]!;
    // rank 1's message arrives at a + w; rank 2's arrived at a + w too but queues behind it
    expect(t).toBeCloseTo(a + 2 * w, 15);
    // swapping the receive order gives the same total here (symmetric), and is deterministic
    expect(simulate({ topo: flat(3, true), programs: progs }).rankTimes[0]).toBe(t);
  });

  it('an in-network (net) reduction folds into the switch result stream: no ingress time of its own', () => {
    const len = 250_000, w = 10e-6, a = 2e-6, p = 4;
    const progs: Program[] = [[]];
    for (let r = 1; r < p; r++) {
      progs.push([{ k: 'send', peer: 0, src: { buf: 'in', off: 0, len }, net: true }]);
      progs[0]!.push(r === 1
        ? { k: 'recv', peer: r, dst: { buf: 'out', off: 0, len }, net: true }
        : { k: 'recv', peer: r, dst: { buf: 'out', off: 0, len }, net: true, op: 'sum', acc: { buf: 'out', off: 0, len } });
    }
    const topo = flat(p, true, 1000);
    expect(simulate({ topo, programs: progs }).rankTimes[0]).toBeCloseTo(a + w, 15);
    // the same receives reduced by the GPU queue up on the ingress port and pay gamma for each
    const g = len * 4 * topo.data.gamma;
    expect(g).toBeGreaterThan(0);
    expect(simulate({ topo, programs: incast(p, len, true) }).rankTimes[0]).toBeCloseTo(a + (p - 1) * w + g, 15);
  });

  it('torus: a message arrives on the ingress port of its last hop\'s direction', () => {
    // 4x4x4, rank = 16 a0 + 4 a1 + a2; dimension-order routing corrects axis 0 first, so the last
    // hop runs along the highest differing axis; a hop going + arrives on port 2 axis + 1
    const t = makeTopology('tpu-v4', { ingress: true });
    expect(t.ingressPort(0, 1)).toBe(5); // + along axis 2
    expect(t.ingressPort(1, 0)).toBe(4); // - along axis 2
    expect(t.ingressPort(0, 3)).toBe(4); // wraparound: 0 -> 3 is one hop going - along axis 2
    expect(t.ingressPort(0, 4)).toBe(3); // + along axis 1
    expect(t.ingressPort(0, 16)).toBe(1); // + along axis 0
    expect(t.ingressPort(0, 16 + 4 + 1)).toBe(5); // axis 0, then 1, then 2 last
  });
});

describe('ingress contention: which algorithms it changes', () => {
  const topo = makeTopology('hgx-h100', { ingress: true });
  const plain = makeTopology('hgx-h100');
  const bytes = 256 << 20;
  const s = specOf(8, countForSize('allreduce', 8, bytes));
  it('one receiver per step (ring, rhd, the protocol rings): unchanged, still equal to the closed form', () => {
    for (const name of ['ring', 'rhd', 'ring-simple', 'ring-ll128']) {
      const a = getAlgorithm('allreduce', name);
      expect(simTime(a, s, topo), name).toBe(simTime(a, s, plain));
      expect(Math.abs(simTime(a, s, topo) / a.cost(s, plain) - 1), name).toBeLessThan(0.01);
    }
  });
  it('several senders into one receiver (direct, tree, nvls) slow down; the closed forms stay uncontended', () => {
    const slowdown: Record<string, number> = {};
    for (const name of ['direct', 'tree', 'nvls']) {
      const a = getAlgorithm('allreduce', name);
      slowdown[name] = simTime(a, s, topo) / simTime(a, s, plain);
      expect(slowdown[name], name).toBeGreaterThan(1.1);
      expect(a.cost(s, topo)).toBe(a.cost(s, plain));
    }
    // direct: every rank receives p-1 blocks at once (measured x1.41 at 256 MB); the double binary
    // tree: two children into one parent (x1.50); nvls: p multicasts arriving together, queued in
    // program order (x1.19: the hardware interleaves them, so this over-penalizes NVLS)
    expect(slowdown.direct).toBeLessThan(1.5);
    expect(slowdown.tree).toBeLessThan(1.6);
    expect(slowdown.nvls).toBeLessThan(1.3);
  });
});

describe('emulator == simulator with ingress contention (worker threads, real data)', () => {
  const clusters: Cluster[] = [];
  afterAll(async () => { await Promise.all(clusters.map((c) => c.close())); });
  it('every allreduce and alltoall algorithm on 8 x H100, and hierarchical / rings on 2 nodes: identical times, exact data', async () => {
    for (const [topo, colls] of [
      [makeTopology('hgx-h100', { ingress: true }), ['allreduce', 'alltoall']],
      [makeTopology('hgx-h100', { nodes: 2, ingress: true }), ['allreduce', 'reducescatter', 'allgather']],
    ] as const) {
      const c = await Cluster.start(topo);
      clusters.push(c);
      let runs = 0;
      for (const coll of colls) {
        for (const a of algorithmsFor(coll)) {
          const spec: CollSpec = { coll, p: topo.p, count: countForSize(coll, topo.p, 1 << 20) + 3, op: 'sum', inPlace: false, root: 0 };
          if (a.unsupported?.(spec, topo)) continue;
          const programs = a.build(spec, topo);
          const emu = await c.run({ programs, sizes: bufferSizes(spec, a, topo), pattern: spec, check: true });
          expect(emu.wrong, `${coll}/${a.name}`).toBe(0);
          expect(emu.rankTimes, `${coll}/${a.name}`).toEqual(Array.from(simulate({ topo, programs }).rankTimes));
          runs++;
        }
      }
      expect(runs).toBeGreaterThanOrEqual(4);
    }
  }, 120_000);
});

describe('NVLS AllReduce (switch multicast and in-network reduction)', () => {
  const topo = makeTopology('hgx-h100');
  it('real data on p = 2..8: exact against the float64 reference, every op, in and out of place, odd counts', () => {
    for (let p = 2; p <= 8; p++) {
      const t = makeTopology('hgx-h100', { ranks: p });
      for (const count of [1, 7, 1000 * p + 3, 300_001]) for (const op of REDUCE_OPS) for (const inPlace of [false, true]) {
        const spec = specOf(p, count, op, inPlace);
        const res = simulateCollective(nvlsAllreduce, spec, t, randomInputs(spec, 5 + p));
        expect(res.wrong, `p=${p} count=${count} ${op} ${inPlace}`).toBe(0);
      }
    }
  });

  it('every rank holds the same bits (each slice reduced once, in canonical rank order, and multicast)', async () => {
    const c = await Cluster.start(topo);
    try {
      const spec = specOf(8, 100_003);
      const programs = nvlsAllreduce.build(spec, topo);
      const emu = await c.run({ programs, sizes: bufferSizes(spec, nvlsAllreduce, topo), pattern: spec, check: true });
      expect(emu.wrong).toBe(0);
      expect(emu.rankTimes).toEqual(Array.from(simulate({ topo, programs }).rankTimes));
    } finally {
      await c.close();
    }
  }, 60_000);

  it('the closed form is the program\'s exact time; ~480 GB/s busbw and ~275 GB/s algbw at 1-8 GB (nccl-tests #212)', () => {
    for (const bytes of [1024, 1 << 20, 64 << 20, 1 << 30]) {
      const s = specOf(8, countForSize('allreduce', 8, bytes));
      expect(Math.abs(nvlsAllreduce.cost(s, topo) / simTime(nvlsAllreduce, s, topo) - 1), `${bytes} B`).toBeLessThan(1e-12);
    }
    for (const bytes of [2 ** 30, 8 * 2 ** 30]) {
      const s = specOf(8, countForSize('allreduce', 8, bytes));
      const t = nvlsAllreduce.cost(s, topo);
      const algbw = bytes / t / GB, busbw = algbw * busBwFactor('allreduce', 8);
      expect(Math.abs(busbw / 480 - 1), `busbw ${busbw}`).toBeLessThan(0.05);
      expect(Math.abs(algbw / 275 - 1), `algbw ${algbw}`).toBeLessThan(0.05);
      // and above the 450 GB/s port line rate, which no point-to-point algorithm can pass
      expect(busbw).toBeGreaterThan(450);
    }
    // small messages: NCCL's NVLS latency
    const small = nvlsAllreduce.cost(specOf(8, 256), topo);
    expect(small).toBeGreaterThanOrEqual(NVLS_LATENCY);
    expect(small).toBeLessThan(NVLS_LATENCY * 1.01);
    // the trend over p on one node (nccl #1455: algbw ~258, 265, 270, 273 GB/s for p = 5..8)
    const measured = [258, 265, 270, 273];
    for (let p = 5; p <= 8; p++) {
      const t = nvlsAllreduce.cost(specOf(p, 1 << 28), makeTopology('hgx-h100', { ranks: p }));
      expect(Math.abs((1 << 30) / t / GB / measured[p - 5]! - 1), `p=${p}`).toBeLessThan(0.05);
    }
  });

  it('auto picks it for large AllReduces on one H100 node, not for small ones, never where NVLS does not exist', () => {
    expect(autoSelect(specOf(8, 1 << 26), topo).name).toBe('nvls');
    expect(autoSelect(specOf(8, 256), topo).name).not.toBe('nvls');
    expect(nvlsAllreduce.unsupported!(specOf(8, 1024), makeTopology('dgx-a100'))).toMatch(/Hopper\/Blackwell/);
    expect(nvlsAllreduce.unsupported!(specOf(16, 1024), makeTopology('hgx-h100', { nodes: 2 }))).toMatch(/multi-node NVLS is not modeled/);
    expect(nvlsAllreduce.unsupported!(specOf(8, 1024), flat(8))).toMatch(/NVSwitch/);
    expect(nvlsAllreduce.cost(specOf(8, 1024), makeTopology('dgx-a100'))).toBe(Infinity);
  });
});

describe('switch operations are validated', () => {
  const sizes = { in: 8, out: 8, tmp: 0 };
  const send = (peer: number, off = 0, extra: object = {}) => ({ k: 'send' as const, peer, src: { buf: 'in' as const, off, len: 4 }, ...extra });
  const recv = (peer: number, extra: object = {}) => ({ k: 'recv' as const, peer, dst: { buf: 'out' as const, off: 0, len: 4 }, ...extra });
  it('a multicast copy must follow a send of the same region, to a new peer', () => {
    expect(() => validatePrograms([[send(1, 0, { mc: true })], [recv(0)]], sizes)).toThrow(/does not follow a send/);
    expect(() => validatePrograms([[send(1), send(2, 4, { mc: true })], [recv(0)], [recv(0)]], sizes)).toThrow(/previous send/);
    expect(() => validatePrograms([[send(1), send(1, 0, { mc: true })], [recv(0), recv(0)]], sizes)).toThrow(/twice/);
    expect(() => validatePrograms([[send(1), send(2, 0, { mc: true })], [recv(0)], [recv(0)]], sizes)).not.toThrow();
  });
  it('net on both sides of a message; a rank sends to itself only through the switch', () => {
    expect(() => validatePrograms([[send(1, 0, { net: true })], [recv(0)]], sizes)).toThrow(/net/);
    expect(() => validatePrograms([[send(0), recv(0)]], sizes)).toThrow(/itself/);
    expect(() => validatePrograms([[send(0, 0, { net: true }), recv(0, { net: true })]], sizes)).not.toThrow();
    expect(() => validatePrograms([[send(0, 0, { net: true, mc: true })]], sizes)).toThrow(IRError);
  });
  it('a rank waiting for its own switch message is reported as such', () => {
    expect(() => simulate({ topo: flat(1), programs: [[recv(0, { net: true }), send(0, 0, { net: true })]] })).toThrow(DeadlockError);
    try {
      simulate({ topo: flat(1), programs: [[recv(0, { net: true }), send(0, 0, { net: true })]] });
    } catch (e) {
      expect((e as Error).message).toMatch(/itself \(through the switch\)/);
    }
  });
});

describe('CLI', () => {
  it('bench/simulate --ingress: the topology line says so, and a direct AllReduce slows down', () => {
    const args = ['simulate', 'allreduce', '--algo', 'direct', '--ranks', '8', '-b', '16M', '-e', '16M', '--no-in-place', '--json', '-'];
    const off = JSON.parse(runCli(args).stdout) as { time: number }[];
    const r = runCli([...args, '--ingress']);
    expect(r.code).toBe(0);
    const on = JSON.parse(r.stdout) as { time: number }[];
    expect(on[0]!.time).toBeGreaterThan(off[0]!.time * 1.2);
    const t = runCli(['topology', '--topology', 'hgx-h100', '--ingress']);
    expect(t.stdout).toMatch(/ingress contention/);
  });
});

// ---------------------------------------------------------------------------------------------
// Shared resources timed in start-time order (--contention, runtime/contention.ts)

describe('shared-resource contention (--contention)', () => {
  const GBps = 1e9;
  it('uncontended programs: the contention pass gives bit for bit the executors\' times (every algorithm)', () => {
    for (const topo of [makeTopology('hgx-h100', { nodes: 2, contention: true }), makeTopology('flat', { ranks: 5, reduceBw: 1000, ingress: true, contention: true })]) {
      let n = 0;
      for (const a of ALGORITHMS) for (const bytes of [4, 1 << 20]) {
        const s: CollSpec = { coll: a.coll, p: topo.p, count: countForSize(a.coll, topo.p, bytes), op: 'sum', inPlace: false, root: 1 };
        if (a.unsupported?.(s, topo)) continue;
        const progs = a.build(s, topo);
        expect(Array.from(contendedTimes(progs, topo).rankTimes), `${topo.name} ${a.coll}/${a.name} ${bytes}`).toEqual(Array.from(simulate({ topo, programs: progs }).rankTimes));
        n++;
      }
      expect(n).toBeGreaterThan(40);
    }
    // a torus with routes: neighbour-only programs share no link
    const t = makeTopology('tpu-v4', { contention: true });
    for (const name of ['torus', 'ring']) {
      const a = getAlgorithm('allreduce', name);
      const s = specOf(64, 1 << 18);
      const progs = a.build(s, t);
      expect(contendedTimes(progs, t).time, name).toBe(simulate({ topo: t, programs: progs }).time);
    }
  });

  it('a NIC shared by the 8 GPUs of a node (--nics-per-node 1): 8 rail flows leave one after another; one per GPU: together', () => {
    const b = 250_000 * 4, w = b / (50 * GBps), a = 5e-6;
    const progs = (p: number): Program[] => Array.from({ length: p }, (_, r) => (r < 8
      ? [{ k: 'send' as const, peer: r + 8, src: { buf: 'in' as const, off: 0, len: b / 4 } }]
      : [{ k: 'recv' as const, peer: r - 8, dst: { buf: 'out' as const, off: 0, len: b / 4 } }]));
    const shared = contendedTimes(progs(16), makeTopology('hgx-h100', { nodes: 2, nicsPerNode: 1, contention: true }));
    const rail = contendedTimes(progs(16), makeTopology('hgx-h100', { nodes: 2, contention: true }));
    expect(rail.time).toBeCloseTo(w + a, 15);
    expect(shared.time).toBeCloseTo(8 * w + a, 14);
    // receivers get their messages 1 w apart, in the senders' (start time, rank) order
    const got = Array.from(shared.rankTimes.slice(8)).map((t) => Math.round((t - a) / w));
    expect(got).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    // the shared NICs are reported with what they carried and how long they were busy
    const up = shared.resources.find((r) => r.name.includes('0 up'))!;
    expect(up.bytes).toBe(8 * b);
    expect(up.busy_s).toBeCloseTo(8 * w, 15);
  });

  it('an oversubscribed spine: flows leaving a scalable unit share 1/s of its NIC bandwidth (fluid: spare capacity costs nothing)', () => {
    // 4 nodes, scalable units of 16 GPUs (2 nodes), spine 1:4: uplink 16 x 50 / 4 = 200 GB/s
    const topo = makeTopology('hgx-h100', { nodes: 4, spineOversubscription: 4, podSize: 16, contention: true });
    const b = 1 << 22, w = b / (50 * GBps), a = 5e-6;
    const flows = (n: number): Program[] => Array.from({ length: 32 }, (_, r) => {
      if (r < n) return [{ k: 'send' as const, peer: r + 16, src: { buf: 'in' as const, off: 0, len: b / 4 } }];
      if (r >= 16 && r < 16 + n) return [{ k: 'recv' as const, peer: r - 16, dst: { buf: 'out' as const, off: 0, len: b / 4 } }];
      return [];
    });
    // 4 flows need exactly the uplink's 200 GB/s: no delay
    expect(contendedTimes(flows(4), topo).time).toBeCloseTo(w + a, 14);
    // 16 flows need 800 GB/s: the last leaves after 16 b / 200 GB/s = 4 w
    expect(contendedTimes(flows(16), topo).time).toBeCloseTo(4 * w + a, 14);
    // the static share (no --contention) charges every flow 1/4 of its NIC, even when alone
    const stat = makeTopology('hgx-h100', { nodes: 4, spineOversubscription: 4 });
    expect(simulate({ topo: stat, programs: flows(1) }).time).toBeCloseTo(4 * w + a, 14);
    expect(contendedTimes(flows(1), topo).time).toBeCloseTo(w + a, 14);
  });

  it('torus: a route through a chip shares that chip\'s link with its own sends', () => {
    // 4x4x4 tpu-v4, axis 2 (stride 1): chip 0 -> 2 routes 0 -> 1 -> 2; chip 1 -> 2 uses the same link 1 -> 2
    const topo = makeTopology('tpu-v4', { contention: true });
    const len = 1 << 20, b = len * 4, w = b / 45e9;
    const progs: Program[] = Array.from({ length: 64 }, () => []);
    progs[0] = [{ k: 'send', peer: 2, src: { buf: 'in', off: 0, len } }];
    progs[1] = [{ k: 'send', peer: 2, src: { buf: 'in', off: 0, len } }];
    progs[2] = [{ k: 'recv', peer: 0, dst: { buf: 'out', off: 0, len } }, { k: 'recv', peer: 1, dst: { buf: 'out', off: len, len } }];
    const ct = contendedTimes(progs, topo);
    expect(topo.route(0, 2)).toEqual([{ chip: 0, port: 4 }, { chip: 1, port: 4 }]);
    // rank 0's message (ties broken by rank) takes link 1 -> 2 first, rank 1's follows
    expect(ct.rankTimes[2]).toBeCloseTo(2 * w + 1e-6, 14);
    expect(simulate({ topo: makeTopology('tpu-v4'), programs: progs }).rankTimes[2]).toBeCloseTo(w + 2e-6, 14);
  });

  it('where contention diverges from the static model and from the closed forms (measured, 64 MB)', () => {
    const run = (o: TopologyOptions, coll: CollSpec['coll'], algo: string) => {
      const t = makeTopology('hgx-h100', o);
      const a = getAlgorithm(coll, algo);
      const s: CollSpec = { coll, p: t.p, count: countForSize(coll, t.p, 64 << 20), op: 'sum', inPlace: false, root: 0 };
      return o.contention ? contendedTimes(a.build(s, t), t).time : simulate({ topo: t, programs: a.build(s, t) }).time;
    };
    // one NIC per node: a flat ring crosses each node boundary with ONE flow, which gets the whole
    // NIC: the static 1/8 share makes it 8x slower than it is
    const fullRing = run({ nodes: 4 }, 'allreduce', 'ring');
    expect(run({ nodes: 4, nicsPerNode: 1, contention: true }, 'allreduce', 'ring')).toBeCloseTo(fullRing, 12);
    expect(run({ nodes: 4, nicsPerNode: 1 }, 'allreduce', 'ring') / fullRing).toBeGreaterThan(7);
    // the rail-optimized hierarchical algorithm loads all 8 rails at once: there the static share is right
    const h = run({ nodes: 4, nicsPerNode: 1, contention: true }, 'reducescatter', 'hierarchical');
    expect(Math.abs(h / run({ nodes: 4, nicsPerNode: 1 }, 'reducescatter', 'hierarchical') - 1)).toBeLessThan(0.02);
    // on a torus the recursive algorithms' multi-hop exchanges collide: rd AllGather x2.99 on 4x4x4
    const t = makeTopology('tpu-v4', { contention: true });
    const rd = getAlgorithm('allgather', 'rd');
    const s: CollSpec = { coll: 'allgather', p: 64, count: countForSize('allgather', 64, 64 << 20), op: 'sum', inPlace: false, root: 0 };
    const ratio = contendedTimes(rd.build(s, t), t).time / rd.cost(s, makeTopology('tpu-v4'));
    expect(ratio).toBeGreaterThan(2);
  });

  it('is deterministic: arrays or streamed programs, run after run', () => {
    const topo = makeTopology('hgx-h100', { nodes: 8, spineOversubscription: 2, podSize: 16, contention: true });
    const a = getAlgorithm('alltoall', 'pairwise');
    const s: CollSpec = { coll: 'alltoall', p: 64, count: 1000, op: 'sum', inPlace: false, root: 0 };
    const x = contendedTimes(a.build(s, topo), topo).rankTimes;
    const y = contendedTimes((r) => a.build(s, topo)[r]!, topo).rankTimes;
    expect(Array.from(y)).toEqual(Array.from(x));
  });

  it('bad options are one-line errors', () => {
    expect(() => makeTopology('hgx-h100', { nicsPerNode: 3 })).toThrow(/--nics-per-node must be 1, 2, 4 or 8/);
    expect(() => makeTopology('hgx-h100', { podSize: 16 })).toThrow(/--pod-size applies to llama3/);
    expect(() => makeTopology('tpu-v4', { nicsPerNode: 1 })).toThrow(/--nics-per-node applies to hgx-h100/);
    const r = runCli(['bench', 'allreduce', '--contention', '--nodes', '2', '--pace', '1', '-b', '1K', '-e', '1K']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--pace cannot be combined with --contention/);
  });
});

describe('--contention in both executors', () => {
  it('the simulator and the emulator (worker threads, real data) report the contention pass\'s times', async () => {
    const topo = makeTopology('hgx-h100', { nodes: 2, nicsPerNode: 1, contention: true });
    const c = await Cluster.start(topo);
    try {
      for (const [coll, name] of [['allreduce', 'tree'], ['alltoall', 'pairwise'], ['reducescatter', 'hierarchical']] as const) {
        const a = getAlgorithm(coll, name);
        const spec: CollSpec = { coll, p: 16, count: countForSize(coll, 16, 1 << 20) + 3, op: 'sum', inPlace: false, root: 0 };
        const programs = a.build(spec, topo);
        const ct = contendedTimes(programs, topo);
        const sim = simulate({ topo, programs });
        expect(Array.from(sim.rankTimes), name).toEqual(Array.from(ct.rankTimes));
        const emu = await c.run({ programs, sizes: bufferSizes(spec, a, topo), pattern: spec, check: true, trace: true });
        expect(emu.wrong, name).toBe(0);
        expect(emu.rankTimes, name).toEqual(Array.from(ct.rankTimes));
        // the trace's virtual times are the contended ones too
        const last = Math.max(...emu.events!.map((e) => e.vEnd));
        expect(last).toBeCloseTo(ct.time, 12);
      }
    } finally {
      await c.close();
    }
  }, 120_000);

  it('collemu simulate --contention: the table shows the contended time', () => {
    const base = ['simulate', 'allreduce', '--algo', 'tree', '--nodes', '4', '--nics-per-node', '1', '-b', '64M', '-e', '64M', '--no-in-place', '--json', '-'];
    const stat = JSON.parse(runCli(base).stdout) as { time: number }[];
    const dyn = JSON.parse(runCli([...base, '--contention']).stdout) as { time: number }[];
    expect(stat[0]!.time / dyn[0]!.time).toBeGreaterThan(3);
  });
});
