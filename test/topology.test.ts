/**
 * Cluster topologies: the TPU torus presets (tpu-v4, tpu-v5p, tpu-v5e, tpu-v6e) and gb200-nvl72,
 * the unchanged flat / hgx-h100 / dgx-a100 / JSON topologies, Topology.linkClassesOf, multi-hop
 * pricing on a torus, and the torus AllReduce: correctness on several shapes and ops, its formula
 * against the simulator, other algorithms on a torus, and the worker emulator on a 2x2x2 torus.
 * (The emulator test loads dist/: run `npx tsc -p .` first.)
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ALLREDUCE_ALGOS } from '../collectives/allreduce/index.js';
import { torusAllreduce } from '../collectives/allreduce/torus.js';
import { makeBuffers, simulateCollective } from '../collectives/harness.js';
import { checkOutputs, randomInputs } from '../collectives/reference.js';
import { autoSelect } from '../collectives/registry.js';
import { bufferSizes, outputRegion, type CollSpec } from '../collectives/types.js';
import { Cluster } from '../runtime/cluster.js';
import { HARDWARE } from '../runtime/hardware.js';
import { REDUCE_OPS, type Program, type ReduceOp } from '../runtime/ir.js';
import { simulate } from '../runtime/simulate.js';
import { makeTopology, Topology, TOPOLOGY_PRESETS, TopologyError } from '../runtime/topology.js';

const spec = (p: number, count: number, op: ReduceOp = 'sum', inPlace = false): CollSpec => ({ coll: 'allreduce', p, count, op, inPlace, root: 0 });
const relErr = (a: number, b: number) => (a === 0 && b === 0 ? 0 : Math.abs(a - b) / Math.max(a, b));
const GiB = 2 ** 30;

describe('TPU and GB200 presets', () => {
  it('are listed for the CLI', () => {
    expect([...TOPOLOGY_PRESETS]).toEqual(['flat', 'hgx-h100', 'dgx-a100', 'gb200-nvl72', 'tpu-v4', 'tpu-v5p', 'tpu-v5e', 'tpu-v6e', 'llama3']);
  });

  it('tpu-v4: 4x4x4 torus of 64 chips, 45 GB/s ICI links, 6 ports, one link class per hop count', () => {
    const t = makeTopology('tpu-v4');
    expect(t.p).toBe(64);
    expect(t.torus).toEqual({ dims: [4, 4, 4], wrap: [true, true, true] });
    expect(t.nPorts).toBe(6);
    expect(t.portNames()).toEqual(['+x', '-x', '+y', '-y', '+z', '-z']);
    expect(t.data.links.map((l) => [l.name, l.bw, l.alpha])).toEqual([1, 2, 3, 4, 5, 6].map((h) => [h === 1 ? 'ici' : `ici x${h}`, 45e9, h * 1e-6]));
    expect(t.describe()).toBe('tpu-v4: 64 chips, 4x4x4 torus; ici 45 GB/s per link per direction, 1 us per hop, 6 ports per chip; TPU v4 32GiB');
    expect(t.hw.peakFlops.bf16).toBe(275e12);
    expect(t.hw.hbmBytes).toBe(32 * GiB);
    expect(t.hw.hbmBandwidth).toBe(1.2e12);
    expect(t.data.memCapacity).toBe(32 * GiB);
    expect(t.gamma).toBeCloseTo(3 / 1.2e12, 20);
  });

  it('tpu-v4 slices: --torus AxBxC, --ranks k^3, wraparound on slices of whole 4x4x4 cubes', () => {
    const t = makeTopology('tpu-v4', { torus: '4x4x8' });
    expect(t.p).toBe(128);
    expect(t.torus!.wrap).toEqual([true, true, true]);
    expect(t.data.links.length).toBe(8); // diameter 2 + 2 + 4
    const c = makeTopology('tpu-v4', { ranks: 8 });
    expect(c.torus!.dims).toEqual([2, 2, 2]);
    expect(c.nPorts).toBe(6);
    expect(makeTopology('tpu-v4', { torus: '2x2x4' }).torus!.wrap).toEqual([false, false, false]);
    expect(makeTopology('tpu-v4', { torus: '4x4x6' }).describe()).toContain('4x4x6 mesh (no wraparound)');
    const m = makeTopology('tpu-v4', { torus: '4wx4wx6' });
    expect(m.torus!.wrap).toEqual([true, true, false]);
    expect(m.describe()).toContain('4x4x6 (wraparound on x, y)');
    expect(makeTopology('tpu-v4', { torus: '4mx4x4w' }).torus!.wrap).toEqual([false, true, true]);
    expect(makeTopology('tpu-v4', { torus: '4x4x4', ranks: 64 }).p).toBe(64);
  });

  it('tpu-v5p, tpu-v5e, tpu-v6e: figures from hardware.md', () => {
    const v5p = makeTopology('tpu-v5p');
    expect([v5p.p, v5p.nPorts, v5p.data.links[0]!.bw, v5p.hw.peakFlops.bf16, v5p.hw.hbmBytes, v5p.hw.hbmBandwidth]).toEqual([64, 6, 90e9, 459e12, 95e9, 2.77e12]);
    const v5e = makeTopology('tpu-v5e');
    expect(v5e.torus).toEqual({ dims: [16, 16], wrap: [true, true] });
    expect([v5e.p, v5e.nPorts, v5e.data.links.length, v5e.data.links[0]!.bw, v5e.hw.peakFlops.bf16, v5e.hw.hbmBytes, v5e.hw.hbmBandwidth]).toEqual([256, 4, 16, 50e9, 197e12, 16e9, 819e9]);
    const v6e = makeTopology('tpu-v6e');
    expect([v6e.p, v6e.nPorts, v6e.data.links[0]!.bw, v6e.hw.peakFlops.bf16, v6e.hw.hbmBytes, v6e.hw.hbmBandwidth]).toEqual([256, 4, 100e9, 918e12, 32e9, 1.64e12]);
    // inference chips: wraparound only on a full axis of 16
    const s = makeTopology('tpu-v5e', { torus: '4x4' });
    expect(s.torus!.wrap).toEqual([false, false]);
    expect(s.describe()).toContain('4x4 mesh (no wraparound)');
    expect(makeTopology('tpu-v6e', { torus: '4wx4w' }).torus!.wrap).toEqual([true, true]);
    expect(makeTopology('tpu-v5e', { torus: '8x16' }).torus!.wrap).toEqual([false, true]);
    expect(makeTopology('tpu-v5e', { ranks: 64 }).torus!.dims).toEqual([8, 8]);
  });

  it('gb200-nvl72: 72 GPUs per NVLink domain, 800G NIC between racks, B200 profile', () => {
    const t = makeTopology('gb200-nvl72');
    expect(t.p).toBe(72);
    expect(t.describe()).toBe('gb200-nvl72: 72 ranks, 1 node(s) x 72 GPU(s); nvlink5 900 GB/s 1 us, nic-800g 100 GB/s 5 us; B200 (GB200) 186GB');
    const t2 = makeTopology('gb200-nvl72', { nodes: 2 });
    expect([t2.p, t2.nPorts, t2.classOf(0, 71), t2.classOf(0, 72), t2.port(71, 72)]).toEqual([144, 2, 0, 1, 1]);
    expect([t.hw.peakFlops.bf16, t.hw.hbmBytes, t.hw.hbmBandwidth, t.hw.scaleUpBandwidth]).toEqual([2.5e15, 186e9, 8e12, 900e9]);
    expect(makeTopology('gb200-nvl72', { ranks: 36 }).p).toBe(36);
  });

  it('rejects impossible options with one clear line', () => {
    const bad: [string, object, RegExp][] = [
      ['tpu-v4', { ranks: 16 }, /--ranks 16 must be 64 or a cube k\^3 <= 64.*--torus/],
      ['tpu-v4', { nodes: 2 }, /--nodes applies to .* not to tpu-v4/],
      ['tpu-v4', { torus: '4x4' }, /3D torus: --torus needs 3 axis lengths/],
      ['tpu-v4', { torus: '4x4x4', ranks: 8 }, /has 64 chips, but --ranks is 8/],
      ['tpu-v4', { torus: '4x0x4' }, /--torus must look like 4x4x8/],
      ['tpu-v4', { torus: '16x16x32' }, /at most 4096 chips/],
      ['tpu-v5e', { torus: '32x8' }, /16 per axis/],
      ['tpu-v6e', { linkBw: 10 }, /--link-bw/],
      ['flat', { torus: '2x2' }, /--torus applies to the TPU presets/],
      ['hgx-h100', { torus: '2x2' }, /--torus applies to the TPU presets/],
      ['gb200-nvl72', { ranks: 100 }, /72 GPUs per node/],
    ];
    for (const [name, o, re] of bad) expect(() => makeTopology(name, o), `${name} ${JSON.stringify(o)}`).toThrow(re);
    expect(() => makeTopology('tpu-v4', { ranks: 16 })).toThrow(TopologyError);
  });

  it('the existing hardware profiles are unchanged', () => {
    expect(HARDWARE.h100).toMatchObject({ name: 'H100 SXM 80GB', hbmBytes: 80e9, hbmBandwidth: 3.35e12, scaleUpBandwidth: 450e9 });
    expect(HARDWARE.h100!.peakFlops.bf16).toBe(989e12);
    expect(HARDWARE.a100).toMatchObject({ name: 'A100 SXM 80GB', hbmBytes: 80e9, hbmBandwidth: 2.0e12, scaleUpBandwidth: 300e9 });
    expect(HARDWARE.h200).toMatchObject({ name: 'H200 SXM 141GB', hbmBytes: 141e9, hbmBandwidth: 4.8e12 });
  });
});

describe('torus link classes and ports', () => {
  const t = makeTopology('tpu-v4'); // rank = 16 x + 4 y + z
  const r = (x: number, y: number, z: number) => 16 * x + 4 * y + z;

  it('row-major coordinates', () => {
    expect(t.coords(r(1, 2, 3))).toEqual([1, 2, 3]);
    expect(t.rankAt([1, 2, 3])).toBe(r(1, 2, 3));
    expect(t.along(r(3, 0, 0), 0, 1)).toBe(r(0, 0, 0));
    expect(t.along(r(0, 2, 0), 1, -1)).toBe(r(0, 1, 0));
  });

  it('neighbours (with wraparound) are 1 ICI hop on their direction port; others are multi-hop on the first hop\'s port', () => {
    expect([t.classOf(0, r(0, 0, 1)), t.port(0, r(0, 0, 1))]).toEqual([0, 4]); // +z
    expect([t.classOf(0, r(0, 0, 3)), t.port(0, r(0, 0, 3))]).toEqual([0, 5]); // -z over the wraparound
    expect([t.classOf(0, r(1, 0, 0)), t.port(0, r(1, 0, 0))]).toEqual([0, 0]); // +x
    expect([t.classOf(0, r(3, 0, 0)), t.port(0, r(3, 0, 0))]).toEqual([0, 1]); // -x
    expect([t.classOf(0, r(0, 1, 0)), t.port(0, r(0, 1, 0))]).toEqual([0, 2]); // +y
    expect([t.classOf(0, r(2, 0, 0)), t.port(0, r(2, 0, 0))]).toEqual([1, 0]); // 2 hops, tie -> +x
    expect([t.classOf(0, r(3, 3, 3)), t.port(0, r(3, 3, 3))]).toEqual([2, 1]); // 3 hops, first -x
    expect([t.classOf(0, r(2, 2, 2)), t.port(0, r(2, 2, 2))]).toEqual([5, 0]); // the diameter, 6 hops
    expect([t.classOf(r(0, 1, 1), r(0, 3, 2)), t.port(r(0, 1, 1), r(0, 3, 2))]).toEqual([2, 2]); // y first
    for (let a = 0; a < 64; a += 7) for (let b = 0; b < 64; b += 5) expect(t.classOf(a, b)).toBe(t.classOf(b, a));
    // a mesh axis has no wraparound: 0 -> 3 is 3 hops on +
    const m = makeTopology('tpu-v5e', { torus: '4x4' });
    expect([m.classOf(0, 3), m.port(0, 3), m.classOf(3, 0), m.port(3, 0), m.data.links.length]).toEqual([2, 2, 2, 3, 6]);
    // 2-chip axes: one link, + from coordinate 0, - from 1
    const c = makeTopology('tpu-v4', { torus: '2x2x2' });
    expect([c.port(0, 1), c.port(1, 0), c.port(0, 4), c.classOf(0, 7)]).toEqual([4, 5, 0, 2]);
  });

  it('TopologyData stays JSON-serializable: a rebuilt topology prices every pair the same', () => {
    for (const topo of [makeTopology('tpu-v4', { torus: '4wx4wx6' }), makeTopology('tpu-v5e', { torus: '4x4' })]) {
      const copy = new Topology(JSON.parse(JSON.stringify(topo.data)));
      expect(copy.nPorts).toBe(topo.nPorts);
      expect(copy.describe()).toBe(topo.describe());
      for (let a = 0; a < topo.p; a++) for (let b = 0; b < topo.p; b++) {
        expect(copy.classOf(a, b)).toBe(topo.classOf(a, b));
        expect(copy.port(a, b)).toBe(topo.port(a, b));
      }
    }
    expect(() => new Topology({ ...makeTopology('tpu-v4').data, p: 63 })).toThrow(/has 64 chips, but p is 63/);
  });

  it('the simulator charges alpha x hops, serializes one direction port and overlaps different ones', () => {
    const n = 1024, b = n * 4, B = 1 / 45e9, a = 1e-6;
    const send = (peer: number) => ({ k: 'send' as const, peer, src: { buf: 'out' as const, off: 0, len: n } });
    const recv = (peer: number) => ({ k: 'recv' as const, peer, dst: { buf: 'out' as const, off: 0, len: n } });
    const run = (pairs: [number, number][]) => {
      const progs: Program[] = Array.from({ length: 64 }, () => []);
      for (const [s, d] of pairs) { progs[s]!.push(send(d)); progs[d]!.push(recv(s)); }
      return simulate({ topo: t, programs: progs }).rankTimes;
    };
    expect(run([[0, r(3, 3, 3)]])[r(3, 3, 3)]).toBeCloseTo(3 * a + b * B, 15);
    // +z and -z at once: both arrive after one message time
    const both = run([[0, r(0, 0, 1)], [0, r(0, 0, 3)]]);
    expect(both[r(0, 0, 1)]).toBeCloseTo(a + b * B, 15);
    expect(both[r(0, 0, 3)]).toBeCloseTo(a + b * B, 15);
    // +z to a neighbour and a 2-hop route along z (tie: +z): they queue on one port
    const queued = run([[0, r(0, 0, 1)], [0, r(0, 0, 2)]]);
    expect(queued[r(0, 0, 2)]).toBeCloseTo(2 * a + 2 * b * B, 15);
    // a 2-hop route to (0, 1, 1) goes y first (dimension order): its own port, no queueing
    const yFirst = run([[0, r(0, 0, 1)], [0, r(0, 1, 1)]]);
    expect(yFirst[r(0, 1, 1)]).toBeCloseTo(2 * a + b * B, 15);
  });
});

describe('the existing topologies are unchanged', () => {
  it('flat, hgx-h100, dgx-a100: describe, ports, classOf', () => {
    const f = makeTopology('flat');
    expect(f.describe()).toBe('flat: 8 ranks, 1 node(s) x 8 GPU(s); link 450 GB/s 1 us; H100 SXM 80GB');
    expect([f.nPorts, f.classOf(0, 7), f.port(3, 5), f.isTorus, f.torus]).toEqual([1, 0, 0, false, undefined]);
    const h = makeTopology('hgx-h100', { nodes: 2 });
    expect(h.describe()).toBe('hgx-h100: 16 ranks, 2 node(s) x 8 GPU(s); nvlink4 450 GB/s 1 us, ib-ndr400 50 GB/s 5 us; H100 SXM 80GB');
    expect([h.nPorts, h.classOf(0, 7), h.classOf(7, 8), h.port(0, 7), h.port(7, 8), h.port(15, 0)]).toEqual([2, 0, 1, 0, 1, 1]);
    expect(makeTopology('hgx-h100').describe()).toBe('hgx-h100: 8 ranks, 1 node(s) x 8 GPU(s); nvlink4 450 GB/s 1 us, ib-ndr400 50 GB/s 5 us; H100 SXM 80GB');
    const d = makeTopology('dgx-a100', { nodes: 2 });
    expect(d.describe()).toBe('dgx-a100: 16 ranks, 2 node(s) x 8 GPU(s); nvlink3 300 GB/s 1 us, ib-hdr200 25 GB/s 5 us; A100 SXM 80GB');
    expect(() => makeTopology('flat', { nodes: 2 })).toThrow('--nodes applies to hgx-h100 / dgx-a100, not to flat');
    expect(() => makeTopology('nope')).toThrow(/unknown topology 'nope' \(presets: flat, hgx-h100, dgx-a100, gb200-nvl72, tpu-v4/);
  });

  it('a JSON topology file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'collemu-topo-'));
    const file = join(dir, 'my.json');
    writeFileSync(file, JSON.stringify({
      name: 'my-cluster', gpu: 'h100', gpusPerNode: 4, nodes: 2,
      links: { nvlink: { latency_us: 1, bandwidth_GBps: 450 }, ib: { latency_us: 5, bandwidth_GBps: 50 } },
      intraNode: 'nvlink', interNode: 'ib', reduceBandwidth_GBps: 1000, memoryCapacity_GB: 80,
    }));
    const t = makeTopology(file);
    expect(t.describe()).toBe('my-cluster: 8 ranks, 2 node(s) x 4 GPU(s); nvlink 450 GB/s 1 us, ib 50 GB/s 5 us; H100 SXM 80GB');
    expect([t.nPorts, t.classOf(0, 3), t.classOf(3, 4), t.port(3, 4), t.gamma, t.isTorus]).toEqual([2, 0, 1, 1, 1e-12, false]);
    expect(() => makeTopology(file, { torus: '2x2' })).toThrow(/--torus applies/);
  });
});

describe('llama3 and oversubscription presets', () => {
  it('llama3: H100 servers of 8 on NVLink 4, RoCE 400G per GPU, pods of 3,072, 1:7 between pods', () => {
    const t = makeTopology('llama3');
    expect(t.p).toBe(8);
    expect(t.describe()).toBe('llama3: 8 ranks, 1 node(s) x 8 GPU(s) in 1 pod(s) of 3072 GPUs; nvlink4 450 GB/s 1 us, roce-400g 50 GB/s 5 us, roce-xpod 1:7 7.143 GB/s 20 us; H100 SXM 80GB');
    expect(t.data.links.map((l) => [l.name, l.bw, l.alpha, l.kind])).toEqual([
      ['nvlink4', 450e9, 1e-6, 'nvlink'], ['roce-400g', 50e9, 5e-6, 'net'], ['roce-xpod 1:7', 50e9 / 7, 20e-6, 'net'],
    ]);
    expect(t.data.links[0]!.efficiency).toBeCloseTo(20.6 / 25, 15);
    expect(t.hw.name).toBe('H100 SXM 80GB');
    const big = makeTopology('llama3', { nodes: 3072 }); // all 8 pods, 24,576 GPUs
    expect([big.p, big.nodes, big.podOf(3071), big.podOf(3072), big.podOf(24575)]).toEqual([24576, 3072, 0, 1, 7]);
    // within a server, across servers of a pod, across pods
    expect([big.classOf(0, 7), big.classOf(0, 8), big.classOf(0, 3071), big.classOf(3071, 3072), big.classOf(100, 20000)]).toEqual([0, 1, 1, 2, 2]);
    // one NIC per GPU: both RoCE classes leave through port 1
    expect([big.nPorts, big.port(0, 7), big.port(0, 8), big.port(0, 3072)]).toEqual([2, 0, 1, 1]);
    expect(big.portNames()).toEqual(['nvlink4', 'roce-400g+roce-xpod 1:7']);
    expect(makeTopology('llama3', { ranks: 16 }).nodes).toBe(2);
  });

  it('llama3 options and errors', () => {
    const t = makeTopology('llama3', { nodes: 6, podSize: 16, spineOversubscription: 2 });
    expect([t.podOf(15), t.podOf(16), t.podOf(47), t.classOf(15, 16), t.data.links[2]!.bw]).toEqual([0, 1, 2, 2, 25e9]);
    const bad: [string, object, RegExp][] = [
      ['llama3', { nodes: 3073 }, /8 pods of 3072 GPUs \(24576 GPUs\)/],
      ['llama3', { podSize: 12 }, /--pod-size must be a multiple of the 8 GPUs/],
      ['llama3', { spineOversubscription: 0.5 }, /--oversubscription must be a number >= 1/],
      ['llama3', { linkBw: 100 }, /apply to the flat topology/],
      ['hgx-h100', { podSize: 16 }, /--pod-size applies to llama3 .*not to hgx-h100/],
      ['flat', { spineOversubscription: 2 }, /--oversubscription applies to hgx-h100, dgx-a100 and llama3, not to flat/],
      ['tpu-v4', { spineOversubscription: 2 }, /not to tpu-v4/],
    ];
    for (const [name, o, re] of bad) expect(() => makeTopology(name, o), `${name} ${JSON.stringify(o)}`).toThrow(re);
    expect(() => new Topology({ ...t.data, pod: { gpus: 12, link: 2 } })).toThrow(/multiple of the 8 GPUs per node/);
    expect(() => new Topology({ ...t.data, portOfClass: [0, 2, 2] })).toThrow(/without gaps/);
  });

  it('spine oversubscription on dgx-a100 (Selene-like) and hgx-h100; the defaults are unchanged', () => {
    const d = makeTopology('dgx-a100', { nodes: 2, spineOversubscription: 2 });
    expect(d.describe()).toBe('dgx-a100: 16 ranks, 2 node(s) x 8 GPU(s); nvlink3 300 GB/s 1 us, ib-hdr200 1:2 12.50 GB/s 5 us; A100 SXM 80GB');
    expect(makeTopology('dgx-a100', { nodes: 2, spineOversubscription: 1 }).describe()).toBe(makeTopology('dgx-a100', { nodes: 2 }).describe());
    const h = makeTopology('hgx-h100', { nodes: 2, spineOversubscription: 3.5 });
    expect([h.data.links[1]!.name, h.data.links[1]!.bw, h.data.links[1]!.alpha, h.nPorts]).toEqual(['ib-ndr400 1:3.5', 50e9 / 3.5, 5e-6, 2]);
    // the link kinds and payload efficiencies the NCCL protocol variants read (the timing model does not)
    const hh = makeTopology('hgx-h100', { nodes: 2 });
    expect(hh.data.links.map((l) => [l.kind, l.efficiency])).toEqual([['nvlink', 20.6 / 25], ['net', 47 / 50]]);
    expect(makeTopology('dgx-a100').data.links.map((l) => [l.kind, l.efficiency])).toEqual([['nvlink', 20 / 25], ['net', undefined]]);
    expect(makeTopology('flat').data.links[0]!.kind).toBeUndefined();
  });

  it('the simulator prices llama3 pairs by class and serializes both RoCE classes on the one NIC', () => {
    const t = makeTopology('llama3', { nodes: 4, podSize: 16 });
    const n = 1 << 20, b = n * 4;
    const send = (peer: number) => ({ k: 'send' as const, peer, src: { buf: 'out' as const, off: 0, len: n } });
    const recv = (peer: number) => ({ k: 'recv' as const, peer, dst: { buf: 'out' as const, off: 0, len: n } });
    const run = (pairs: [number, number][]) => {
      const progs: Program[] = Array.from({ length: t.p }, () => []);
      for (const [s, d] of pairs) { progs[s]!.push(send(d)); progs[d]!.push(recv(s)); }
      return simulate({ topo: t, programs: progs }).rankTimes;
    };
    expect(run([[0, 16]])[16]).toBeCloseTo(20e-6 + b / (50e9 / 7), 15);
    // intra-pod then cross-pod from one GPU: the second waits for the first on the NIC
    const q = run([[0, 8], [0, 16]]);
    expect(q[8]).toBeCloseTo(5e-6 + b / 50e9, 15);
    expect(q[16]).toBeCloseTo(b / 50e9 + b / (50e9 / 7) + 20e-6, 15);
    // NVLink and the NIC overlap
    expect(run([[0, 1], [0, 16]])[16]).toBeCloseTo(20e-6 + b / (50e9 / 7), 15);
  });

  it('llama3 TopologyData stays JSON-serializable, and a JSON file may give link kinds and efficiencies', () => {
    const t = makeTopology('llama3', { nodes: 4, podSize: 16 });
    const copy = new Topology(JSON.parse(JSON.stringify(t.data)));
    expect(copy.describe()).toBe(t.describe());
    expect(copy.nPorts).toBe(2);
    for (let a = 0; a < t.p; a += 3) for (let b = 0; b < t.p; b++) {
      expect(copy.classOf(a, b)).toBe(t.classOf(a, b));
      expect(copy.port(a, b)).toBe(t.port(a, b));
    }
    const dir = mkdtempSync(join(tmpdir(), 'collemu-topo-'));
    const file = join(dir, 'k.json');
    writeFileSync(file, JSON.stringify({
      name: 'k', gpusPerNode: 4, links: { nv: { latency_us: 1, bandwidth_GBps: 450, kind: 'nvlink', efficiency: 0.8 }, ib: { latency_us: 5, bandwidth_GBps: 50 } },
      intraNode: 'nv', interNode: 'ib',
    }));
    expect(makeTopology(file).data.links[0]).toEqual({ name: 'nv', alpha: 1e-6, bw: 450e9, kind: 'nvlink', efficiency: 0.8 });
    writeFileSync(file, JSON.stringify({ gpusPerNode: 4, links: { nv: { latency_us: 1, bandwidth_GBps: 450, efficiency: 2 } } }));
    expect(() => makeTopology(file)).toThrow(/efficiency must be a number in \(0, 1\]/);
  });
});

describe('linkClassesOf', () => {
  it('hgx-h100: a group within a node crosses only NVLink, one GPU per node only IB', () => {
    const h = makeTopology('hgx-h100', { nodes: 4 });
    const node = [0, 1, 2, 3, 4, 5, 6, 7];
    expect(h.linkClassesOf(node)).toEqual({ ring: [{ class: 'nvlink4', index: 0, pairs: 8 }], allPairs: [{ class: 'nvlink4', index: 0, pairs: 56 }] });
    const rail = [3, 11, 19, 27];
    expect(h.linkClassesOf(rail)).toEqual({ ring: [{ class: 'ib-ndr400', index: 1, pairs: 4 }], allPairs: [{ class: 'ib-ndr400', index: 1, pairs: 12 }] });
    // a ring 0, 1, 8, 9: two NVLink hops and two IB hops; all-pairs: 4 NVLink, 8 IB
    expect(h.linkClassesOf([0, 1, 8, 9])).toEqual({
      ring: [{ class: 'nvlink4', index: 0, pairs: 2 }, { class: 'ib-ndr400', index: 1, pairs: 2 }],
      allPairs: [{ class: 'nvlink4', index: 0, pairs: 4 }, { class: 'ib-ndr400', index: 1, pairs: 8 }],
    });
    expect(h.linkClassesOf([5])).toEqual({ ring: [], allPairs: [] });
    expect(() => h.linkClassesOf([0, 0])).toThrow(/twice/);
    expect(() => h.linkClassesOf([0, 32])).toThrow(/not in 0..31/);
  });

  it('llama3: a server crosses NVLink, a pod RoCE, a DP group across pods the 1:7 cross-pod class', () => {
    const t = makeTopology('llama3', { nodes: 800 }); // 6,400 GPUs: pods 0, 1 full, pod 2 partial
    expect(t.linkClassesOf([0, 1, 2, 3, 4, 5, 6, 7]).ring).toEqual([{ class: 'nvlink4', index: 0, pairs: 8 }]);
    // one GPU per server inside pod 0 (a TP-rank-0 rail)
    expect(t.linkClassesOf([0, 8, 16, 24]).allPairs).toEqual([{ class: 'roce-400g', index: 1, pairs: 12 }]);
    // a data-parallel group strided across the three pods: only the pod boundary hops are cross-pod
    const dp = [0, 1536, 3072, 4608, 6144];
    expect(t.linkClassesOf(dp).ring).toEqual([{ class: 'roce-400g', index: 1, pairs: 2 }, { class: 'roce-xpod 1:7', index: 2, pairs: 3 }]);
    expect(t.linkClassesOf(dp).allPairs).toEqual([{ class: 'roce-400g', index: 1, pairs: 4 }, { class: 'roce-xpod 1:7', index: 2, pairs: 16 }]);
    // a smaller pod for what-if runs: contiguous blocks of --pod-size ranks
    const s = makeTopology('llama3', { nodes: 4, podSize: 16 });
    expect(s.linkClassesOf([...Array(32).keys()]).ring).toEqual([
      { class: 'nvlink4', index: 0, pairs: 28 }, { class: 'roce-400g', index: 1, pairs: 2 }, { class: 'roce-xpod 1:7', index: 2, pairs: 2 },
    ]);
  });

  it('spine oversubscription: a slower inter-node class on hgx-h100 and dgx-a100', () => {
    const d = makeTopology('dgx-a100', { nodes: 2, spineOversubscription: 4 });
    expect(d.linkClassesOf([0, 8]).ring).toEqual([{ class: 'ib-hdr200 1:4', index: 1, pairs: 2 }]);
    expect(d.data.links[1]!.bw).toBe(25e9 / 4);
    expect(makeTopology('hgx-h100', { nodes: 2, spineOversubscription: 2 }).linkClassesOf([7, 8]).ring[0]!.class).toBe('ib-ndr400 1:2');
  });

  it('a torus axis: the ring crosses only 1-hop ICI; all-pairs also 2-hop routes', () => {
    const t = makeTopology('tpu-v4');
    const zAxis = [0, 1, 2, 3], xAxis = [0, 16, 32, 48];
    const want = { ring: [{ class: 'ici', index: 0, pairs: 4 }], allPairs: [{ class: 'ici', index: 0, pairs: 8 }, { class: 'ici x2', index: 1, pairs: 4 }] };
    expect(t.linkClassesOf(zAxis)).toEqual(want);
    expect(t.linkClassesOf(xAxis)).toEqual(want);
    // the row-major ring over the whole torus is not a torus ring: row ends are 2- and 3-hop routes
    expect(t.linkClassesOf([...Array(64).keys()]).ring).toEqual([
      { class: 'ici', index: 0, pairs: 48 }, { class: 'ici x2', index: 1, pairs: 12 }, { class: 'ici x3', index: 2, pairs: 4 },
    ]);
    // a mesh row: the ring closes over a 3-hop route
    expect(makeTopology('tpu-v5e', { torus: '4x4' }).linkClassesOf([0, 1, 2, 3]).ring).toEqual([
      { class: 'ici', index: 0, pairs: 3 }, { class: 'ici x3', index: 2, pairs: 1 },
    ]);
  });
});

describe('torus allreduce', () => {
  const shapes: [string, string][] = [
    ['tpu-v4', '2x2x2'], ['tpu-v4', '1x3wx4w'], ['tpu-v6e', '4wx4w'], ['tpu-v5e', '4x4'], ['tpu-v4', '3x2x4w'], ['tpu-v6e', '1x5'], ['tpu-v4', '2x1x1'],
  ];

  it('gives the exact result for several shapes, every op, odd counts, in and out of place', () => {
    for (const [name, torus] of shapes) {
      const topo = makeTopology(name, { torus });
      const p = topo.p;
      for (const count of [0, 1, 2 * p + 3, 1003]) {
        for (const op of REDUCE_OPS) {
          for (const inPlace of [false, true]) {
            const s = spec(p, count, op, inPlace);
            const res = simulateCollective(torusAllreduce, s, topo, randomInputs(s, 11));
            expect(res.wrong, `${name} ${torus} count ${count} ${op} inPlace ${inPlace}`).toBe(0);
          }
        }
      }
    }
    // the full tpu-v4 cube and a 16x16 v5e pod, one op each
    for (const topo of [makeTopology('tpu-v4'), makeTopology('tpu-v5e')]) {
      for (const op of ['sum', 'avg'] as const) {
        const s = spec(topo.p, 1003, op, op === 'avg');
        expect(simulateCollective(torusAllreduce, s, topo, randomInputs(s, 5)).wrong).toBe(0);
      }
    }
    // p = 1
    const one = makeTopology('tpu-v6e', { torus: '1x1' });
    expect(simulateCollective(torusAllreduce, spec(1, 10), one, randomInputs(spec(1, 10), 1)).wrong).toBe(0);
  });

  it('the formula matches the simulator within 1% on tpu-v4 4x4x4 and a 2D 4x4 torus (and 2x2x2, 16x16)', () => {
    const topos = [makeTopology('tpu-v4'), makeTopology('tpu-v6e', { torus: '4wx4w' }), makeTopology('tpu-v5e', { torus: '4wx4w' }), makeTopology('tpu-v4', { torus: '2x2x2' }), makeTopology('tpu-v5e')];
    for (const topo of topos) {
      for (const count of [0, 1, 1000, 1 << 20]) {
        for (const [op, inPlace] of [['sum', false], ['avg', true]] as const) {
          const s = spec(topo.p, count, op, inPlace);
          const sim = simulate({ topo, programs: torusAllreduce.build(s, topo) }).time;
          const f = torusAllreduce.cost(s, topo);
          expect(relErr(sim, f), `${topo.describe()} count ${count} ${op}: sim ${sim * 1e6} us, formula ${f * 1e6} us`).toBeLessThan(0.01);
        }
      }
    }
    // the bandwidth-bound limit: (1 - 1/p) n B, plus the latency term 2 sum (d-1) a = 18 us
    const t = makeTopology('tpu-v4', { reduceBw: 0 });
    const n = (1 << 20) * 4;
    expect(torusAllreduce.cost(spec(64, 1 << 20), t)).toBeCloseTo(18e-6 + (63 / 64) * n / 45e9, 12);
  });

  it('meshes (no wraparound): the formula is an estimate within 10%', () => {
    for (const [name, torus] of [['tpu-v5e', '4x4'], ['tpu-v4', '3x2x4w'], ['tpu-v6e', '1x8']] as const) {
      const topo = makeTopology(name, { torus });
      for (const count of [0, 1000, 1 << 20]) {
        const s = spec(topo.p, count);
        const sim = simulate({ topo, programs: torusAllreduce.build(s, topo) }).time;
        expect(relErr(sim, torusAllreduce.cost(s, topo)), `${name} ${torus} ${count}`).toBeLessThan(0.1);
      }
    }
  });

  it('is unsupported off a torus or on a subset of its chips; auto picks it for large sizes on a torus', () => {
    expect(torusAllreduce.unsupported!(spec(8, 10), makeTopology('flat'))).toMatch(/needs a torus topology.*flat is not one/);
    expect(torusAllreduce.unsupported!(spec(16, 10), makeTopology('hgx-h100', { nodes: 2 }))).toMatch(/needs a torus/);
    expect(torusAllreduce.unsupported!(spec(8, 10), makeTopology('tpu-v4'))).toMatch(/all 64 chips/);
    expect(() => torusAllreduce.build(spec(8, 10), makeTopology('flat'))).toThrow(/torus/);
    expect(ALLREDUCE_ALGOS).toContain(torusAllreduce);
    const v4 = makeTopology('tpu-v4');
    for (const count of [1 << 18, 1 << 24]) expect(autoSelect(spec(64, count), v4).name).toBe('torus');
    expect(autoSelect(spec(256, 1 << 20), makeTopology('tpu-v5e')).name).toBe('torus');
    expect(autoSelect(spec(16, 1 << 24), makeTopology('hgx-h100', { nodes: 2 })).name).not.toBe('torus');
  });

  it('the other allreduce algorithms still run correctly on a torus (non-neighbour sends are multi-hop)', () => {
    for (const topo of [makeTopology('tpu-v4', { torus: '2x2x2' }), makeTopology('tpu-v5e', { torus: '4x4' })]) {
      for (const algo of ALLREDUCE_ALGOS) {
        const s = spec(topo.p, 1003, 'sum');
        if (algo.unsupported?.(s, topo)) continue;
        const res = simulateCollective(algo, s, topo, randomInputs(s, 2));
        expect(res.wrong, `${algo.name} on ${topo.describe()}`).toBe(0);
        expect(res.time).toBeGreaterThan(0);
      }
    }
    // the ring over the 64 chips in row-major order pays the 3-hop wraparound at the end of the ring
    const v4 = makeTopology('tpu-v4');
    const ring = ALLREDUCE_ALGOS.find((a) => a.name === 'ring')!;
    const t0 = simulate({ topo: v4, programs: ring.build(spec(64, 0), v4) }).time;
    expect(t0).toBeGreaterThan(2 * 63 * 1e-6);
  });
});

describe('worker emulator on a 2x2x2 tpu-v4 torus', () => {
  it('torus allreduce: exact data, virtual time identical to the simulator', async () => {
    const topo = makeTopology('tpu-v4', { torus: '2x2x2', memCapacity: 1 << 24 });
    const c = await Cluster.start(topo);
    try {
      for (const [op, inPlace, count] of [['sum', false, 1003], ['avg', true, 4096], ['max', false, 7]] as const) {
        const s = spec(8, count, op, inPlace);
        const inputs = randomInputs(s, 3);
        const bufs = makeBuffers(s, torusAllreduce, topo, inputs);
        const programs = torusAllreduce.build(s, topo);
        const res = await c.run({
          programs, sizes: bufferSizes(s, torusAllreduce, topo),
          beforeRun: (cl) => { for (let r = 0; r < 8; r++) for (const b of ['in', 'out', 'tmp'] as const) cl.view(r, b).set(bufs[r]![b]); },
        });
        const outputs = Array.from({ length: 8 }, (_, r) => { const O = outputRegion(s, r); return c.view(r, O.buf, O.off, O.len).slice(); });
        expect(checkOutputs(s, inputs, outputs).wrong, `${op} inPlace ${inPlace}`).toBe(0);
        const sim = simulate({ topo, programs });
        expect(res.time).toBe(sim.time);
        expect(res.rankTimes).toEqual(Array.from(sim.rankTimes));
        expect(res.time).toBeCloseTo(torusAllreduce.cost(s, topo), 12);
      }
    } finally {
      await c.close();
    }
  });
});

describe('CLI', () => {
  const BIN = join(import.meta.dirname, '..', 'bin', 'collemu');
  const run = (args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60_000 });

  it('describes a TPU slice, and rejects --torus elsewhere with exit 2', () => {
    const r = run(['topology', '--topology', 'tpu-v4', '--torus', '4x4x8']);
    expect(r.status).toBe(0);
    expect(r.stdout.split('\n')[0]).toBe('tpu-v4: 128 chips, 4x4x8 torus; ici 45 GB/s per link per direction, 1 us per hop, 6 ports per chip; TPU v4 32GiB');
    const e = run(['topology', '--topology', 'flat', '--torus', '2x2']);
    expect(e.status).toBe(2);
    expect(e.stderr).toBe('collemu: error: --torus applies to the TPU presets (tpu-v4, tpu-v5p, tpu-v5e, tpu-v6e)\n');
  });
});
