/**
 * Parallel training (parallelism/train/): every strategy and their compositions give the serial
 * reference's losses and parameters; communication matches the formulas of
 * ../shared/reference/formulas.md; memory accounting and out-of-memory; the CLI.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DeviceMesh, MeshError } from '../parallelism/mesh.js';
import { PRESETS, type ModelConfig } from '../parallelism/model/config.js';
import { TrainOutOfMemory } from '../parallelism/train/arena.js';
import { TrainConfigError } from '../parallelism/train/step.js';
import { compileTraining, runTraining, type TrainOptions, type TrainResult } from '../parallelism/train/train.js';
import { RankBuilder } from '../parallelism/train/program.js';
import { expectedOutputs } from '../collectives/reference.js';
import { ioSizes, type Collective } from '../collectives/types.js';
import { simulate } from '../runtime/simulate.js';
import { makeTopology } from '../runtime/topology.js';

const BIN = join(import.meta.dirname, '..', 'bin', 'collemu');
const TORCHTITAN = join(import.meta.dirname, '..', '..', 'shared', 'data', 'external', 'torchtitan_custom_schedule.csv');
const SGD = { kind: 'sgd', lr: 0.1 } as const;
const TOL = 1e-5;

async function train(o: Partial<TrainOptions>): Promise<TrainResult> {
  return runTraining({ model: 'tiny', mesh: 'dp=1', executor: 'simulate', steps: 2, optimizer: SGD, ...o });
}
const calls = (r: TrainResult, coll: string, group: string) => r.comm_by_group.find((g) => g.coll === coll && g.group === group);

describe('DeviceMesh', () => {
  it('orders dimensions innermost first [tp, cp, ep, pp, dp] and forms groups', () => {
    const m = DeviceMesh.parse('dp=2,pp=2,tp=2');
    expect(m.world).toBe(8);
    expect(m.coords(5)).toMatchObject({ tp: 1, pp: 0, dp: 1 });
    expect(m.group(5, ['tp'])).toEqual([4, 5]);
    expect(m.group(5, ['pp'])).toEqual([5, 7]);
    expect(m.group(5, ['dp'])).toEqual([1, 5]);
    expect(m.group(0, ['tp', 'dp'])).toEqual([0, 1, 4, 5]);
    expect(m.groups(['pp'])).toHaveLength(4);
    expect(m.rankWith(5, { pp: 1 })).toBe(7);
    expect(m.describe()).toBe('tp=2,pp=2,dp=2');
  });
  it('rejects bad meshes with clear errors', () => {
    expect(() => DeviceMesh.parse('dp=2,xx=2')).toThrow(MeshError);
    expect(() => DeviceMesh.parse('dp=0')).toThrow(/integers >= 1/);
    expect(() => DeviceMesh.parse('dp=2,dp=2')).toThrow(/given twice/);
    expect(() => DeviceMesh.parse('tp=2', 4)).toThrow(/has 2 ranks, but the world has 4/);
    expect(() => DeviceMesh.parse('tp')).toThrow(/expected name=size/);
  });
});

describe('collectives on process groups', () => {
  it('every collective runs on the groups of a mesh dimension, all groups at once, with exact results', () => {
    const mesh = DeviceMesh.parse('tp=3,dp=2'); // tp groups of 3 (not a power of two), dp groups of 2
    const colls: Collective[] = ['allreduce', 'allgather', 'reducescatter', 'broadcast', 'reduce', 'alltoall', 'sendrecv'];
    for (const dim of ['tp', 'dp'] as const) {
      for (const coll of colls) {
        const count = 7;
        const bs = Array.from({ length: mesh.world }, (_, r) => new RankBuilder(r, Infinity));
        const io = bs.map((b, r) => {
          const g = mesh.group(r, [dim]);
          const sz = ioSizes({ coll, p: g.length, count, op: 'sum', inPlace: false, root: 0 });
          const input = b.alloc('in', sz.in, 'data'), output = b.alloc('out', sz.out, 'data');
          b.collective(coll, g, count, { input, output }, { dims: dim });
          return { g, input, output };
        });
        const topo = makeTopology('flat', { ranks: mesh.world });
        const size = Math.max(...bs.map((b) => b.arena.report().arenaElems));
        const data = bs.map((_, r) => {
          const m = new Float32Array(size);
          const { input } = io[r]!;
          for (let i = 0; i < input.region.len; i++) m[input.region.off + i] = r * 100 + i;
          return { in: m, out: new Float32Array(0), tmp: new Float32Array(0) };
        });
        simulate({ topo, programs: bs.map((b) => b.program()), data });
        for (let r = 0; r < mesh.world; r++) {
          const { g, input, output } = io[r]!;
          const spec = { coll, p: g.length, count, op: 'sum' as const, inPlace: false, root: 0 };
          const inputs = g.map((q) => data[q]!.in.slice(io[q]!.input.region.off, io[q]!.input.region.off + input.region.len));
          const want = expectedOutputs(spec, inputs)[g.indexOf(r)];
          if (!want) continue;
          const got = data[r]!.in.slice(output.region.off, output.region.off + output.region.len);
          expect(Array.from(got), `${coll} on ${dim}, rank ${r}`).toEqual(Array.from(want));
        }
      }
    }
  });
});

describe('parity with the serial reference (SGD, 2 steps, simulator with data)', () => {
  const cases: [string, Partial<TrainOptions>][] = [
    ['single rank', { mesh: 'dp=1' }],
    ['DDP dp=2', { mesh: 'dp=2' }],
    ['DDP dp=4 with 2 microbatches (gradient accumulation)', { mesh: 'dp=4', microbatches: 2 }],
    ['ZeRO-1 dp=2', { mesh: 'dp=2', zero: 1 }],
    ['ZeRO-2 dp=2', { mesh: 'dp=2', zero: 2 }],
    ['ZeRO-3 / FSDP dp=4', { mesh: 'dp=4', zero: 3 }],
    ['TP tp=2', { mesh: 'tp=2' }],
    ['TP tp=2 + sequence parallel', { mesh: 'tp=2', sequenceParallel: true }],
    ['PP pp=2 GPipe', { mesh: 'pp=2', schedule: 'gpipe', microbatches: 4 }],
    ['PP pp=2 1F1B', { mesh: 'pp=2', schedule: '1f1b', microbatches: 4 }],
    ['PP pp=2 interleaved v=2', { model: 'small', mesh: 'pp=2', schedule: 'interleaved', microbatches: 4 }],
    ['PP pp=2 ZB-H1', { mesh: 'pp=2', schedule: 'zb-h1', microbatches: 4 }],
    ['PP pp=2 ZB-V', { model: 'small', mesh: 'pp=2', schedule: 'zb-v', microbatches: 4 }],
    ['CP cp=2 ring attention', { mesh: 'cp=2' }],
    ['CP cp=4 ring attention', { mesh: 'cp=4' }],
    ['CP cp=2 Ulysses', { mesh: 'cp=2', cpMode: 'ulysses' }],
    ['dp=2 x pp=2 x tp=2 (8 ranks)', { mesh: 'dp=2,pp=2,tp=2', microbatches: 2 }],
    ['dp=2 x pp=2 x tp=2, SP, ZeRO-3', { mesh: 'dp=2,pp=2,tp=2', microbatches: 2, sequenceParallel: true, zero: 3 }],
    ['dp=2 x cp=2 x pp=2 x tp=2 (16 ranks), ring', { mesh: 'dp=2,cp=2,pp=2,tp=2', microbatches: 2 }],
    ['dp=2 x cp=2 x pp=2 x tp=2, Ulysses, ZeRO-2', {
      mesh: 'dp=2,cp=2,pp=2,tp=2', microbatches: 2, cpMode: 'ulysses', zero: 2, model: { ...(PRESETS.tiny as ModelConfig), kvHeads: 4 },
    }],
    ['MoE single rank (tiny-moe: 4 experts, top-2, capacity 1.25)', { model: 'tiny-moe', mesh: 'dp=1' }],
    ['EP ep=2 (AllToAll dispatch and combine)', { model: 'tiny-moe', mesh: 'ep=2' }],
    ['EP ep=4', { model: 'tiny-moe', mesh: 'ep=4' }],
    ['EP ep=2 x dp=2, ZeRO-3', { model: 'tiny-moe', mesh: 'ep=2,dp=2', zero: 3 }],
    ['EP ep=2 x pp=2, ZB-H1', { model: 'tiny-moe', mesh: 'ep=2,pp=2', microbatches: 2, schedule: 'zb-h1' }],
  ];
  for (const [name, o] of cases) {
    it(name, async () => {
      const r = await train(o);
      expect(r.parity!.max_rel_err, r.parity!.worst).toBeLessThanOrEqual(TOL);
      for (const s of r.steps) expect(Math.abs(s.loss - s.reference_loss!) / s.reference_loss!).toBeLessThanOrEqual(TOL);
    });
  }

  it.skipIf(!existsSync(TORCHTITAN))('the torchtitan CSV schedule (2 ranks, 4 stages, F/I/W) trains with parity', async () => {
    const r = await train({ model: 'small', mesh: 'pp=2', scheduleCsv: readFileSync(TORCHTITAN, 'utf8'), microbatches: 8 });
    expect(r.layout.stages).toBe(4);
    expect(r.parity!.max_rel_err).toBeLessThanOrEqual(TOL);
  });

  it('Adam: parity within 1e-4 (Adam divides by sqrt(v), which amplifies reduction-order rounding)', async () => {
    for (const mesh of ['dp=2', 'tp=2', 'dp=2,pp=2,tp=2']) {
      const r = await train({ mesh, optimizer: { kind: 'adam', lr: 0.01 }, steps: 3, microbatches: mesh.includes('pp') ? 2 : 1 });
      expect(r.parity!.max_rel_err, mesh).toBeLessThanOrEqual(1e-4);
    }
  });

  it('a wrong reduction would be caught: perturbing the result breaks parity', async () => {
    const r = await train({ mesh: 'dp=2' });
    const w = r.params.get('layers.0.wq')!;
    w[3]! += 1e-3;
    // re-check against a fresh serial run through the same comparison
    const again = await train({ mesh: 'dp=1' });
    const ref = again.params.get('layers.0.wq')!;
    expect(Math.abs(w[3]! - ref[3]!)).toBeGreaterThan(5e-4);
  });
});

describe('on worker threads (the emulator)', () => {
  it('dp=2 x pp=2 x tp=2 gives parity and exactly the simulator\'s parameters, losses and virtual time', async () => {
    const o: Partial<TrainOptions> = { mesh: 'dp=2,pp=2,tp=2', microbatches: 2, sequenceParallel: true, zero: 1 };
    const em = await train({ ...o, executor: 'emulate' });
    const sim = await train(o);
    expect(em.parity!.max_rel_err).toBeLessThanOrEqual(TOL);
    expect(em.steps.map((s) => s.loss)).toEqual(sim.steps.map((s) => s.loss));
    expect(em.virtual_step_time_s).toBe(sim.virtual_step_time_s);
    for (const [n, t] of em.params) expect(Buffer.from(t.buffer).equals(Buffer.from(sim.params.get(n)!.buffer)), n).toBe(true);
  });
  const emulated: [string, Partial<TrainOptions>][] = [
    ['FSDP (ZeRO-3) dp=4', { mesh: 'dp=4', zero: 3 }],
    ['TP + SP tp=4', { model: 'small', mesh: 'tp=4', sequenceParallel: true }],
    ['PP ZB-V pp=2', { model: 'small', mesh: 'pp=2', schedule: 'zb-v', microbatches: 4 }],
    ['CP Ulysses cp=2 x dp=2', { mesh: 'cp=2,dp=2', cpMode: 'ulysses' }],
    ['EP ep=4', { model: 'tiny-moe', mesh: 'ep=4' }],
  ];
  for (const [name, o] of emulated) {
    it(`${name}: parity, bit-identical to the simulator`, async () => {
      const em = await train({ ...o, executor: 'emulate' });
      const sim = await train(o);
      expect(em.parity!.max_rel_err).toBeLessThanOrEqual(TOL);
      expect(em.steps.map((s) => s.loss)).toEqual(sim.steps.map((s) => s.loss));
      expect(em.virtual_step_time_s).toBe(sim.virtual_step_time_s);
    });
  }
  it('dp=2 x cp=2 x pp=2 x tp=2 (16 ranks) with parity', async () => {
    const r = await train({ mesh: 'dp=2,cp=2,pp=2,tp=2', microbatches: 2, executor: 'emulate', steps: 1 });
    expect(r.world).toBe(16);
    expect(r.parity!.max_rel_err).toBeLessThanOrEqual(TOL);
  });
});

describe('communication equals the formulas (formulas.md, per layer per microbatch)', () => {
  const cfg = PRESETS.tiny as ModelConfig; // 2 layers, h 32, seq 16, vocab 64
  const E = 4; // bytes per element (Float32 data plane)
  it('TP: 2 AllReduce of b s h forward + 2 backward per layer (+1 for the vocab-parallel head input)', async () => {
    const r = await train({ mesh: 'tp=2', steps: 1, batch: 2 });
    const bsh = 2 * cfg.seq * cfg.hidden;
    const g = calls(r, 'allreduce', 'tp')!;
    expect(g.calls_per_rank).toBe(4 * cfg.layers + 1);
    expect(g.bytes_per_rank).toBe((4 * cfg.layers + 1) * bsh * E);
    // the head's logits are gathered over TP for the loss: one AllGather of b s V
    expect(calls(r, 'allgather', 'tp')!.bytes_per_rank).toBe(2 * cfg.seq * cfg.vocab * E);
  });
  it('TP + SP: each AllReduce becomes ReduceScatter + AllGather of the same bytes', async () => {
    const r = await train({ mesh: 'tp=2', steps: 1, batch: 2, sequenceParallel: true });
    const bsh = 2 * cfg.seq * cfg.hidden;
    const rs = calls(r, 'reducescatter', 'tp')!, ag = calls(r, 'allgather', 'tp')!;
    expect(rs.calls_per_rank).toBe(4 * cfg.layers + 1);
    expect(rs.bytes_per_rank).toBe((4 * cfg.layers + 1) * bsh * E);
    // forward: 2 per layer + the final norm's; backward 2 per layer; plus the logits gather
    expect(ag.calls_per_rank).toBe(4 * cfg.layers + 1 + 1);
    expect(ag.bytes_per_rank - 2 * cfg.seq * cfg.vocab * E).toBe((4 * cfg.layers + 1) * bsh * E);
  });
  it('PP: b s h per stage boundary forward and again backward; / t with sequence parallel', async () => {
    const r = await train({ mesh: 'pp=2', steps: 1, microbatches: 4, batch: 4 });
    const bsh = 1 * cfg.seq * cfg.hidden;
    const g = calls(r, 'sendrecv', 'pp')!;
    expect(g.calls_per_rank).toBe(4); // rank 0: 4 activations; rank 1: 4 gradients
    expect(g.bytes_per_rank).toBe(4 * bsh * E);
    const sp = await train({ mesh: 'pp=2,tp=2', steps: 1, microbatches: 2, batch: 2, sequenceParallel: true });
    expect(calls(sp, 'sendrecv', 'pp')!.bytes_per_rank).toBe((2 * bsh * E) / 2);
  });
  it('DP: AllReduce of all gradients (Psi); ZeRO-3 moves 1.5x the traffic (AllGather fwd + bwd + ReduceScatter)', async () => {
    const dp = await train({ mesh: 'dp=4', steps: 1 });
    const z3 = await train({ mesh: 'dp=4', steps: 1, zero: 3 });
    const psi = calls(dp, 'allreduce', 'dp+cp')!.bytes_per_rank; // sum of the padded units
    const nParams = [...dp.params.values()].reduce((s, t) => s + t.length, 0);
    expect(psi).toBeGreaterThanOrEqual(nParams * E);
    expect(psi).toBeLessThan(nParams * E * 1.01);
    // bus traffic: AllReduce 2(d-1)/d n, AllGather / ReduceScatter (d-1)/d n
    const trafficDP = 2 * psi;
    const trafficZ3 = calls(z3, 'allgather', 'dp+cp')!.bytes_per_rank + calls(z3, 'reducescatter', 'dp+cp')!.bytes_per_rank;
    // every unit is gathered for its forward and its backward, except the embedding, whose
    // backward (a scatter-add into the table) needs no parameters
    const psiEmb = cfg.vocab * cfg.hidden * E;
    expect(trafficZ3 / trafficDP).toBeCloseTo((3 * psi - psiEmb) / (2 * psi), 9);
    expect(calls(z3, 'allgather', 'dp+cp')!.calls_per_rank).toBe(2 * calls(z3, 'reducescatter', 'dp+cp')!.calls_per_rank - 1);
  });
  it('CP ring: K,V blocks (2 b s/c h_kv) passed c-1 times forward; K,V + their gradients backward', async () => {
    const c = 4;
    const r = await train({ mesh: `cp=${c}`, steps: 1, batch: 1 });
    const kvBlock = 2 * 1 * (cfg.seq / c) * (cfg.kvHeads * (cfg.hidden / cfg.heads)) * E;
    const g = calls(r, 'sendrecv', 'cp')!;
    // forward: c-1 K/V blocks; backward: c-1 blocks of K/V + dK/dV (2x) and the last hop of dK/dV
    const perLayer = (c - 1) * kvBlock + (c - 1) * 2 * kvBlock + kvBlock;
    expect(g.bytes_per_rank).toBe(cfg.layers * perLayer);
  });
  it('CP Ulysses: 4 AllToAll forward + 4 backward of b s h / c per layer', async () => {
    const c = 2;
    const r = await train({ mesh: `cp=${c}`, steps: 1, batch: 1, cpMode: 'ulysses' });
    const g = calls(r, 'alltoall', 'cp')!;
    const qBytes = 1 * (cfg.seq / c) * cfg.hidden * E; // per rank: its s/c tokens of all query heads
    const kvBytes = 1 * (cfg.seq / c) * cfg.kvHeads * (cfg.hidden / cfg.heads) * E;
    expect(g.calls_per_rank).toBe(8 * cfg.layers);
    // q, out, dout, dq carry query heads; k, v, dk, dv key/value heads (GQA makes them smaller)
    expect(g.bytes_per_rank).toBe(cfg.layers * (4 * qBytes + 4 * kvBytes));
  });
});

describe('expert parallelism', () => {
  it('EP: 2 AllToAll forward + 2 backward per MoE layer per microbatch, of the fixed-capacity slot buffers', async () => {
    const moe = PRESETS['tiny-moe'] as ModelConfig;
    const r = await train({ model: 'tiny-moe', mesh: 'ep=2', steps: 1, microbatches: 2, batch: 4 });
    const g = calls(r, 'alltoall', 'ep')!;
    expect(g.calls_per_rank).toBe(4 * moe.layers * 2);
    // slots per rank and microbatch: E experts x (1 sequence x capacity C) rows of h
    const C = Math.ceil((moe.moe!.capacityFactor * moe.seq * moe.moe!.topk) / moe.moe!.experts);
    expect(g.bytes_per_rank).toBe(4 * moe.layers * 2 * moe.moe!.experts * C * moe.hidden * 4);
    // dense gradients over dp x ep; expert gradients are not reduced across ep
    expect(calls(r, 'allreduce', 'dp+cp+ep')).toBeDefined();
    expect(calls(r, 'allreduce', 'dp+cp')).toBeUndefined();
  });
  it('rejects EP without experts, and experts not divisible by ep', async () => {
    await expect(train({ mesh: 'ep=2' })).rejects.toThrow(/mixture-of-experts model/);
    await expect(train({ model: 'tiny-moe', mesh: 'ep=3' })).rejects.toThrow(/experts \(4\) must be divisible by ep \(3\)/);
    await expect(train({ model: 'tiny-moe', mesh: 'tp=2' })).rejects.toThrow(/tp = 1 and cp = 1/);
  });
});

describe('memory', () => {
  it('GPipe runs out of memory where 1F1B fits (p = 4, m = 8): the error names rank, step and what was live', async () => {
    const o: Partial<TrainOptions> = { model: 'small', mesh: 'pp=4', microbatches: 8, steps: 1, memCapacity: 2 * 2 ** 20 };
    const ok = await train({ ...o, schedule: '1f1b' });
    expect(Math.max(...ok.ranks.map((r) => r.peak_memory_bytes))).toBeLessThanOrEqual(2 * 2 ** 20);
    expect(() => compileTraining({ ...o, schedule: 'gpipe', optimizer: SGD } as TrainOptions)).toThrow(TrainOutOfMemory);
    expect(() => compileTraining({ ...o, schedule: 'gpipe', optimizer: SGD } as TrainOptions)).toThrow(/out of memory on rank \d at step 0 (forward|backward).*live.*activation/);
  });
  it('peak activations: 1F1B stage 0 holds min(m, p) microbatches, GPipe m', async () => {
    const base: Partial<TrainOptions> = { model: 'small', mesh: 'pp=4', microbatches: 8, steps: 1 };
    const g = await train({ ...base, schedule: 'gpipe' });
    const f = await train({ ...base, schedule: '1f1b' });
    const actG = g.ranks[0]!.at_peak.activation, actF = f.ranks[0]!.at_peak.activation;
    expect(actG / actF).toBeGreaterThan(1.6); // 8 vs 4 microbatches of layer activations (+ shared transients)
  });
  it('ZeRO levels shrink model-state memory: 0 > 1 > 2 > 3 (Adam, dp = 4)', async () => {
    const peaks: number[] = [];
    for (const zero of [0, 1, 2, 3]) {
      const r = await train({ mesh: 'dp=4', zero, steps: 1, optimizer: { kind: 'adam', lr: 0.01 } });
      peaks.push(r.ranks[0]!.peak_model_states_bytes);
    }
    for (let i = 1; i < 4; i++) expect(peaks[i]!).toBeLessThan(peaks[i - 1]!);
  });
});

describe('timing', () => {
  it('DDP overlap: gradient AllReduce hidden behind the backward makes the step faster, with the same numbers', async () => {
    const o: Partial<TrainOptions> = { model: 'small', mesh: 'dp=8', steps: 1, topology: 'dgx-a100' };
    const on = await train(o);
    const off = await train({ ...o, overlap: false });
    expect(on.virtual_step_time_s).toBeLessThan(off.virtual_step_time_s);
    for (const [n, t] of on.params) expect(Buffer.from(t.buffer).equals(Buffer.from(off.params.get(n)!.buffer)), n).toBe(true);
  });
  it('deterministic: the same run twice gives bit-identical times and parameters', async () => {
    const a = await train({ mesh: 'dp=2,tp=2', zero: 2 });
    const b = await train({ mesh: 'dp=2,tp=2', zero: 2 });
    expect(a.virtual_step_time_s).toBe(b.virtual_step_time_s);
    for (const [n, t] of a.params) expect(Buffer.from(t.buffer).equals(Buffer.from(b.params.get(n)!.buffer))).toBe(true);
  });
});

describe('validation', () => {
  it('rejects layouts that do not fit the model or the mesh', async () => {
    await expect(train({ mesh: 'tp=3' })).rejects.toThrow(TrainConfigError);
    await expect(train({ mesh: 'tp=8' })).rejects.toThrow(/heads \(4\) must be divisible by tp \(8\)/);
    await expect(train({ mesh: 'tp=4' })).rejects.toThrow(/kv heads \(2\) must be divisible by tp \(4\)/);
    await expect(train({ mesh: 'dp=2', batch: 3 })).rejects.toThrow(/divisible by dp/);
    await expect(train({ mesh: 'pp=4', schedule: 'interleaved', microbatches: 4 })).rejects.toThrow(/stages for 2 layers/);
    await expect(train({ mesh: 'dp=2', zero: 4 })).rejects.toThrow(/--zero must be 0, 1, 2 or 3/);
    await expect(train({ mesh: 'cp=2', cpMode: 'ulysses', model: 'small' })).resolves.toBeDefined();
    await expect(train({ mesh: 'cp=4', cpMode: 'ulysses' })).rejects.toThrow(/Ulysses/);
  });
});

describe('collemu train (CLI)', () => {
  const run = (args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8' });
  it('prints losses, parity, memory per rank, virtual step time and the communication breakdown', () => {
    const r = run(['train', '--mesh', 'dp=2,pp=2,tp=2', '--microbatches', '2', '--steps', '2', '--executor', 'simulate']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/step\s+loss\s+serial/);
    expect(r.stdout).toMatch(/parity with the serial run: .*within 1e-5/);
    expect(r.stdout).toMatch(/virtual step time: /);
    expect(r.stdout).toMatch(/allreduce\s+tp/);
    expect(r.stdout).toMatch(/sendrecv\s+pp/);
  });
  it('--json - prints the documented keys', () => {
    const r = run(['train', '--mesh', 'tp=2', '--steps', '2', '--json', '-']);
    expect(r.status, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.steps).toHaveLength(2);
    expect(Object.keys(j.steps[0])).toEqual(expect.arrayContaining(['step', 'loss']));
    expect(Object.keys(j.parity)).toEqual(['max_abs_err', 'max_rel_err']);
    expect(j.ranks).toHaveLength(2);
    expect(j.ranks[0].peak_memory_bytes).toBeGreaterThan(0);
    expect(j.virtual_step_time_s).toBeGreaterThan(0);
    expect(j.comm.allreduce.calls).toBeGreaterThan(0);
    expect(j.comm.allreduce.bytes).toBeGreaterThan(0);
  });
  it('bad input: one-line error, exit 2', () => {
    for (const args of [['--mesh', 'tp=3'], ['--mesh', 'foo=2'], ['--model', 'huge'], ['--schedule', 'nope', '--mesh', 'pp=2'], ['--zero', '7'], ['--optimizer', 'lion']]) {
      const r = run(['train', ...args]);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(/^collemu: error: /);
    }
  });
  it('out of memory is an error naming the rank and step, exit 2', () => {
    const r = run(['train', '--model', 'small', '--mesh', 'pp=4', '--microbatches', '8', '--schedule', 'gpipe', '--mem-capacity', '2M', '--steps', '1']);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/out of memory on rank \d at step 0/);
  });
});
