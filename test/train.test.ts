/**
 * Parallel training (parallelism/train/): every strategy and their compositions give the serial
 * reference's losses and parameters; communication matches the formulas of
 * ../shared/reference/formulas.md; memory accounting and out-of-memory; the CLI.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DeviceMesh, MeshError } from '../parallelism/mesh.js';
import { parityFailed } from '../cli/train.js';
import { PRESETS, type ModelConfig } from '../parallelism/model/config.js';
import { TrainOutOfMemory } from '../parallelism/train/arena.js';
import { TrainConfigError } from '../parallelism/train/step.js';
import { compileTraining, runTraining, type Compiled, type TrainOptions, type TrainResult } from '../parallelism/train/train.js';
import type { ComputeOp, Op, RecvOp, Region } from '../runtime/ir.js';
import { RankBuilder } from '../parallelism/train/program.js';
import { expectedOutputs } from '../collectives/reference.js';
import { ioSizes, type Collective } from '../collectives/types.js';
import { simulate } from '../runtime/simulate.js';
import { makeTopology } from '../runtime/topology.js';

const BIN = join(import.meta.dirname, '..', 'bin', 'collemu');
const TORCHTITAN = join(import.meta.dirname, '..', '..', 'shared', 'data', 'external', 'torchtitan_custom_schedule.csv');
const SGD = { kind: 'sgd', lr: 0.1 } as const;
const ADAM = { kind: 'adam', lr: 0.01 } as const;
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
    ['HSDP fsdp=2 x dp=2, ZeRO-1', { mesh: 'fsdp=2,dp=2', zero: 1 }],
    ['HSDP fsdp=2 x dp=2, ZeRO-2', { mesh: 'fsdp=2,dp=2', zero: 2 }],
    ['HSDP fsdp=2 x dp=2, ZeRO-3', { mesh: 'fsdp=2,dp=2', zero: 3 }],
    ['HSDP fsdp=2 x dp=2 x cp=2 x tp=2, SP, ZeRO-3 (16 ranks)', { mesh: 'fsdp=2,dp=2,cp=2,tp=2', zero: 3, sequenceParallel: true }],
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
      const p = r.parity!;
      // each step (loss, every copy of the gradients) against the serial step at the same parameters
      expect(p.max_rel_err, p.worst).toBeLessThanOrEqual(TOL);
      expect(p.grad_rel_err).toBeGreaterThanOrEqual(0);
      // the serial optimizer on the run's own gradients gives every copy of the final parameters, bit for bit
      expect(p.param_rel_err, p.worst).toBe(0);
      // the whole run against the independent serial run
      expect(p.trajectory_rel_err, p.trajectory_worst).toBeLessThanOrEqual(TOL);
      for (const s of r.steps) expect(Math.abs(s.loss - s.reference_loss!) / s.reference_loss!).toBeLessThanOrEqual(TOL);
    });
  }

  it.skipIf(!existsSync(TORCHTITAN))('the torchtitan CSV schedule (2 ranks, 4 stages, F/I/W) trains with parity', async () => {
    const r = await train({ model: 'small', mesh: 'pp=2', scheduleCsv: readFileSync(TORCHTITAN, 'utf8'), microbatches: 8 });
    expect(r.layout.stages).toBe(4);
    expect(r.parity!.max_rel_err).toBeLessThanOrEqual(TOL);
    expect(r.parity!.trajectory_rel_err).toBeLessThanOrEqual(TOL);
  });

  it('Adam: every step within 1e-5 of the serial step; the trajectory within 1e-4 (Adam amplifies rounding of near-zero gradients)', async () => {
    const layouts: Partial<TrainOptions>[] = [
      { mesh: 'dp=2' }, { mesh: 'tp=2' }, { mesh: 'dp=2,pp=2,tp=2', microbatches: 2 }, { mesh: 'dp=4', zero: 3 },
      { mesh: 'dp=2,cp=2,pp=2,tp=2', microbatches: 2 }, // trajectory 1.55e-5
      { model: 'small', mesh: 'pp=4', microbatches: 8, steps: 1 }, // trajectory 2.22e-5
    ];
    for (const o of layouts) {
      const r = await train({ optimizer: ADAM, steps: 3, ...o });
      const p = r.parity!;
      expect(p.max_rel_err, `${o.mesh}: ${p.worst}`).toBeLessThanOrEqual(TOL);
      expect(p.param_rel_err, o.mesh).toBe(0);
      expect(p.trajectory_rel_err, `${o.mesh}: ${p.trajectory_worst}`).toBeLessThanOrEqual(1e-4);
    }
  });

  it('the gradient capture is free: the same virtual time, memory and parameters without the parity check', async () => {
    const o: Partial<TrainOptions> = { mesh: 'dp=2,pp=2,tp=2', microbatches: 2, zero: 2 };
    const a = await train(o);
    const b = await train({ ...o, parity: false });
    expect(b.parity).toBeUndefined();
    expect(a.virtual_step_time_s).toBe(b.virtual_step_time_s);
    expect(a.ranks).toEqual(b.ranks);
    for (const [n, t] of a.params) expect(Buffer.from(t.buffer).equals(Buffer.from(b.params.get(n)!.buffer)), n).toBe(true);
  });
});

/**
 * Fault injection: a deliberately broken program runs through the real comparator, which must
 * report the failure. `corrupt` inserts an op on a rank just before the optimizer consumes a
 * parameter's gradient (at every step), so the optimizer and the check both see the fault.
 */
describe('fault injection: broken programs fail the parity check', () => {
  const scaleBy = (f: number) => (g: Region): Op => ({ k: 'compute', flops: 0, bytes: 0, kernel: 'scale', args: [g], params: [g.len, f], writes: [0] });
  const corrupt = (rank: number, param: string, make: (g: Region) => Op) => (c: Compiled): void => {
    const prog = c.programs[rank]!;
    const { plan } = c.ranks[rank]!;
    let n = 0;
    for (const cap of plan.captures) {
      const lp = plan.units.find((u) => u.unit.name === cap.unit)!.unit.params.find((x) => x.name === param);
      if (!lp) continue;
      if (cap.shard) throw new Error('corrupt: whole-unit gradients only (ZeRO 0)');
      const i = prog.findIndex((o) => o.k === 'compute' && o.kernel === 'capture' && o.args![1]!.buf === 'out' && o.args![1]!.off === cap.region.off);
      const grad = (prog[i] as ComputeOp).args![0]!;
      prog.splice(i, 0, make({ buf: grad.buf, off: grad.off + lp.off, len: lp.nr * lp.nc }));
      n++;
    }
    expect(n, `rank ${rank} holds ${param}`).toBeGreaterThan(0);
  };

  for (const tpRank of [0, 1]) {
    it(`TP + SP: TP rank ${tpRank}'s copy of a norm gradient scaled by 3 (every TP replica is checked)`, async () => {
      const r = await train({ mesh: 'tp=2', sequenceParallel: true, inject: corrupt(tpRank, 'layers.0.attn_norm', scaleBy(3)) });
      expect(r.parity!.max_rel_err).toBeGreaterThan(0.1);
      expect(r.parity!.worst).toMatch(new RegExp(`layers\\.0\\.attn_norm.*\\(rank ${tpRank}\\)`));
      // the other replica diverges from the replayed parameters, or it is the one that was wrong
      expect(r.parity!.trajectory_rel_err).toBeGreaterThan(TOL);
    });
  }

  it('a 1% error in the embedding gradient (SGD lr 0.1, 2 steps): invisible in the parameters, caught in the gradients', async () => {
    const both = (c: Compiled) => { corrupt(0, 'tok_emb', scaleBy(1.01))(c); corrupt(1, 'tok_emb', scaleBy(1.01))(c); };
    const r = await train({ mesh: 'dp=2', inject: both });
    expect(r.parity!.grad_rel_err).toBeGreaterThan(5e-3);
    expect(r.parity!.max_rel_err).toBeGreaterThan(TOL);
    expect(r.parity!.worst).toMatch(/gradient of tok_emb/);
    // parameters and losses alone (the trajectory) stay within 1e-5: the updates are small
    expect(r.parity!.trajectory_rel_err).toBeLessThan(TOL);
  });

  it('Adam: a 1% error in a gradient does not change the update (Adam is scale-invariant), the gradient check catches it', async () => {
    const r = await train({ mesh: 'tp=2', optimizer: ADAM, inject: corrupt(1, 'layers.1.wq', scaleBy(1.01)) });
    expect(r.parity!.trajectory_rel_err).toBeLessThan(TOL);
    expect(r.parity!.max_rel_err).toBeGreaterThan(5e-3);
    expect(r.parity!.worst).toMatch(/gradient of layers\.1\.wq at step \d \(rank 1\)/);
  });

  it('a wrong reduction: one rank reduces with max instead of sum in the DP gradient AllReduce', async () => {
    const wrongOp = (c: Compiled) => {
      const prog = c.programs[1]!;
      const i = prog.findIndex((o) => (o.k === 'recv' && o.op === 'sum') || o.k === 'reduce');
      expect(i).toBeGreaterThanOrEqual(0);
      prog[i] = { ...(prog[i] as RecvOp), op: 'max' } as Op;
    };
    const r = await train({ mesh: 'dp=2', inject: wrongOp });
    expect(r.parity!.grad_rel_err).toBeGreaterThan(1e-3);
    expect(r.parity!.max_rel_err).toBeGreaterThan(1e-3);
  });

  it('a wrong optimizer step on one ZeRO-1 shard (twice the learning rate) breaks the replayed parameters', async () => {
    const doubleLr = (c: Compiled) => {
      const prog = c.programs[1]!;
      const i = prog.findIndex((o) => o.k === 'compute' && o.kernel === 'sgd');
      const o = prog[i] as ComputeOp;
      prog[i] = { ...o, params: [o.params![0]!, 2 * o.params![1]!] };
    };
    const r = await train({ mesh: 'dp=2', zero: 1, inject: doubleLr });
    expect(r.parity!.param_rel_err).toBeGreaterThan(TOL);
    expect(r.parity!.max_rel_err).toBeGreaterThan(TOL);
  });

  it('injected programs are validated: an op outside the buffers is rejected', async () => {
    const bad = (c: Compiled) => { c.programs[0]!.push({ k: 'copy', src: { buf: 'in', off: 0, len: 4 }, dst: { buf: 'in', off: c.sizes.in, len: 4 } }); };
    await expect(train({ mesh: 'dp=2', inject: bad })).rejects.toThrow();
  });
});

describe('on worker threads (the emulator)', () => {
  it('dp=2 x pp=2 x tp=2 gives parity and exactly the simulator\'s parameters, losses and virtual time', async () => {
    const o: Partial<TrainOptions> = { mesh: 'dp=2,pp=2,tp=2', microbatches: 2, sequenceParallel: true, zero: 1 };
    const em = await train({ ...o, executor: 'emulate' });
    const sim = await train(o);
    expect(em.parity!.max_rel_err).toBeLessThanOrEqual(TOL);
    expect(em.parity!.param_rel_err).toBe(0);
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
      const sim = await train({ ...o, parity: false }); // the check does not change the run (tested above)
      expect(em.parity!.max_rel_err, em.parity!.worst).toBeLessThanOrEqual(TOL);
      expect(em.parity!.trajectory_rel_err).toBeLessThanOrEqual(TOL);
      expect(em.steps.map((s) => s.loss)).toEqual(sim.steps.map((s) => s.loss));
      expect(em.virtual_step_time_s).toBe(sim.virtual_step_time_s);
    });
  }
  it('dp=2 x cp=2 x pp=2 x tp=2 (16 ranks) with parity', async () => {
    const r = await train({ mesh: 'dp=2,cp=2,pp=2,tp=2', microbatches: 2, executor: 'emulate', steps: 2 });
    expect(r.world).toBe(16);
    expect(r.parity!.max_rel_err, r.parity!.worst).toBeLessThanOrEqual(TOL);
    expect(r.parity!.param_rel_err).toBe(0);
    expect(r.parity!.trajectory_rel_err).toBeLessThanOrEqual(TOL);
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

  // ---- exact calls and bytes per rank, derived from the formulas

  /** one rank's calls and bytes per 'collective/group' */
  const rankComm = (r: TrainResult, rank: number) =>
    Object.fromEntries(r.comm_per_rank[rank]!.map((s) => [`${s.coll}/${s.dims}`, { calls: s.calls, bytes: s.bytes }]).sort());
  const pad = (n: number, d: number) => Math.ceil(n / d) * d;
  /** parameters of a unit on one TP rank: q, k, v, gate, up split by rows and wo, w_down by columns over t; norms, embedding replicated */
  const unitParams = (c: ModelConfig, t: number) => {
    const h = c.hidden, hd = c.hidden / c.heads;
    return {
      embedding: c.vocab * h,
      layer: 2 * h + 2 * ((c.heads * hd) / t) * h + 2 * ((c.kvHeads * hd) / t) * h + 3 * (c.ffn / t) * h,
      head: h + (c.vocab / t) * h,
    };
  };
  const allUnits = (c: ModelConfig, t: number) => {
    const u = unitParams(c, t);
    return [u.embedding, ...Array<number>(c.layers).fill(u.layer), u.head];
  };
  /** per rank, tiny model, 1F1B, ring CP, ZeRO 0, no SP: what formulas.md gives for each group */
  const expected = (meshSpec: string, rank: number, m: number, steps: number, batch: number) => {
    const mesh = DeviceMesh.parse(meshSpec);
    const t = mesh.size('tp'), c = mesh.size('cp'), p = mesh.size('pp'), d = mesh.size('dp');
    const stage = mesh.coord(rank, 'pp'), last = stage === p - 1;
    const L = cfg.layers / p; // layers per stage
    const b = batch / (d * m); // sequences per microbatch and dp rank
    const s = cfg.seq / c; // tokens of a sequence per CP rank
    const bsh = b * s * cfg.hidden * E;
    const out: [string, { calls: number; bytes: number }][] = [];
    const add = (k: string, calls: number, bytes: number) => { if (calls > 0) out.push([k, { calls: calls * steps, bytes: bytes * steps }]); };
    if (t > 1) {
      // TP: 2 + 2 AllReduce of b s h per layer and microbatch, + 1 for the head's input gradient
      const n = (4 * L + (last ? 1 : 0)) * m;
      add('allreduce/tp', n, n * bsh);
      // the vocab-parallel head's logits (b s V) are gathered for the loss
      if (last) add('allgather/tp', m, m * b * s * cfg.vocab * E);
    }
    // PP: b s h per stage boundary and microbatch: activations forward, gradients backward
    if (p > 1) {
      const n = m * ((last ? 0 : 1) + (stage === 0 ? 0 : 1));
      add('sendrecv/pp', n, n * bsh);
    }
    if (c > 1) {
      // CP ring, per layer and microbatch: c-1 K/V blocks (2 b s/c h_kv / t) forward; backward c-1 blocks
      // of K/V with their gradients (2x) and the last hop of the gradients
      const kv = 2 * b * s * ((cfg.kvHeads * (cfg.hidden / cfg.heads)) / t) * E;
      add('sendrecv/cp', L * m * (2 * c - 1), L * m * ((c - 1) * kv + (c - 1) * 2 * kv + kv));
    }
    if (d * c > 1) {
      // DP: one AllReduce per unit (bucket) and step of its gradients, padded to the dp x cp group
      const u = unitParams(cfg, t);
      const units = [...(stage === 0 ? [u.embedding] : []), ...Array<number>(L).fill(u.layer), ...(last ? [u.head] : [])];
      add('allreduce/dp+cp', units.length, units.reduce((x, n) => x + pad(n, d * c), 0) * E);
    }
    return Object.fromEntries(out.sort());
  };
  for (const [mesh, world] of [['dp=2,pp=2,tp=2', 8], ['dp=2,cp=2,pp=2,tp=2', 16]] as const) {
    it(`${world} ranks, ${mesh}: every rank's calls and bytes per group equal the formulas`, async () => {
      const m = 2, steps = 2, batch = 8;
      const r = await train({ mesh, microbatches: m, steps, batch });
      expect(r.world).toBe(world);
      const totals = new Map<string, { calls: number; bytes: number }>();
      for (let rank = 0; rank < world; rank++) {
        const want = expected(mesh, rank, m, steps, batch);
        expect(rankComm(r, rank), `rank ${rank}`).toEqual(want);
        for (const [k, v] of Object.entries(want)) {
          const x = totals.get(k) ?? { calls: 0, bytes: 0 };
          totals.set(k, { calls: x.calls + v.calls, bytes: x.bytes + v.bytes });
        }
      }
      // the per-group totals over all ranks (the CLI table's last columns)
      for (const g of r.comm_by_group) expect({ calls: g.calls, bytes: g.bytes }, `${g.coll}/${g.group}`).toEqual(totals.get(`${g.coll}/${g.group}`));
      expect(r.comm_by_group).toHaveLength(totals.size);
    });
  }
  it('DDP: one AllReduce per unit (bucket) and step, of its padded gradients (Psi), whatever the microbatches', async () => {
    const d = 4, steps = 2, units = allUnits(cfg, 1);
    const r = await train({ mesh: `dp=${d}`, steps, microbatches: 2 });
    for (let rank = 0; rank < d; rank++) {
      expect(rankComm(r, rank)).toEqual({ 'allreduce/dp+cp': { calls: steps * units.length, bytes: steps * units.reduce((x, n) => x + pad(n, d), 0) * E } });
    }
  });
  for (const zero of [1, 2]) {
    it(`ZeRO-${zero}: per unit and step one ReduceScatter of the gradients and one AllGather of the updated shard: the DDP traffic`, async () => {
      const d = 4, steps = 2, units = allUnits(cfg, 1);
      const psi = units.reduce((x, n) => x + pad(n, d), 0) * E;
      const r = await train({ mesh: `dp=${d}`, steps, zero });
      for (let rank = 0; rank < d; rank++) {
        // ReduceScatter and AllGather of n bytes move (d-1)/d n each: together the AllReduce's 2 (d-1)/d n
        expect(rankComm(r, rank)).toEqual({
          'allgather/dp+cp': { calls: steps * units.length, bytes: steps * psi },
          'reducescatter/dp+cp': { calls: steps * units.length, bytes: steps * psi },
        });
      }
    });
  }
  it('HSDP (fsdp=2 x dp=2): ZeRO shards over fsdp, ReduceScatter and AllGather inside it, the shards all-reduced across dp', async () => {
    const f = 2, units = allUnits(cfg, 1), emb = units[0]!;
    const P = units.reduce((x, n) => x + pad(n, f), 0) * E;
    const z3 = await train({ mesh: `fsdp=${f},dp=2`, steps: 1, zero: 3 });
    const z1 = await train({ mesh: `fsdp=${f},dp=2`, steps: 1, zero: 1 });
    for (let rank = 0; rank < 4; rank++) {
      expect(rankComm(z3, rank)).toEqual({
        // ZeRO-3: every unit gathered for its forward and its backward (the embedding's backward needs no parameters)
        'allgather/dp_shard+cp': { calls: 2 * units.length - 1, bytes: 2 * P - pad(emb, f) * E },
        'allreduce/dp_replicate': { calls: units.length, bytes: P / f },
        'reducescatter/dp_shard+cp': { calls: units.length, bytes: P },
      });
      expect(rankComm(z1, rank)).toEqual({
        'allgather/dp_shard+cp': { calls: units.length, bytes: P },
        'allreduce/dp_replicate': { calls: units.length, bytes: P / f },
        'reducescatter/dp_shard+cp': { calls: units.length, bytes: P },
      });
    }
    // parameter shards: 1/fsdp of each unit (not 1/4 as with dp=4 --zero 3)
    const c = compileTraining({ model: 'tiny', mesh: `fsdp=${f},dp=2`, zero: 3, steps: 1, optimizer: SGD });
    for (const { unit, pshard } of c.ranks[0]!.plan.units) expect(pshard!.len).toBe(pad(unit.len, f) / f);
    // without dp_shard, dp=4 --zero 3 shards over all four
    const d4 = compileTraining({ model: 'tiny', mesh: 'dp=4', zero: 3, steps: 1, optimizer: SGD });
    for (const { unit, pshard } of d4.ranks[0]!.plan.units) expect(pshard!.len).toBe(pad(unit.len, 4) / 4);
  });
  it('interleaved PP: each of the p v - 1 stage boundaries carries b s h each way per microbatch ((p v - 1)/(p - 1) = 3x 1F1B for p = v = 2)', async () => {
    const small = PRESETS.small as ModelConfig, p = 2, v = 2, m = 4;
    const bsh = 1 * small.seq * small.hidden * E; // batch m: one sequence per microbatch
    const il = await train({ model: 'small', mesh: `pp=${p}`, schedule: 'interleaved', virtual: v, microbatches: m, batch: m, steps: 1 });
    const fb = await train({ model: 'small', mesh: `pp=${p}`, schedule: '1f1b', microbatches: m, batch: m, steps: 1 });
    expect(il.layout.stages).toBe(p * v);
    for (let rank = 0; rank < p; rank++) {
      // 2 (S - 1) m messages over all ranks for S stages, spread evenly over the p ranks
      const n = (2 * (p * v - 1) * m) / p;
      expect(rankComm(il, rank)).toEqual({ 'sendrecv/pp': { calls: n, bytes: n * bsh } });
      const n1 = (2 * (p - 1) * m) / p;
      expect(rankComm(fb, rank)).toEqual({ 'sendrecv/pp': { calls: n1, bytes: n1 * bsh } });
    }
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
  // the memory plan is static: compiling gives every rank's peak (the CLI test runs the same pair end to end)
  const peaks = (c: Compiled) => c.ranks.map((cr) => cr.builder.arena.report());
  it('GPipe runs out of memory where 1F1B fits (p = 4, m = 8, SGD, 2 MiB): the error names rank, step and what was live', () => {
    const o: TrainOptions = { model: 'small', mesh: 'pp=4', microbatches: 8, steps: 1, memCapacity: 2 * 2 ** 20, optimizer: SGD };
    const ok = compileTraining({ ...o, schedule: '1f1b' });
    expect(Math.max(...peaks(ok).map((m) => m.peakBytes))).toBeLessThanOrEqual(2 * 2 ** 20);
    expect(() => compileTraining({ ...o, schedule: 'gpipe' })).toThrow(TrainOutOfMemory);
    expect(() => compileTraining({ ...o, schedule: 'gpipe' })).toThrow(/out of memory on rank \d at step 0 (forward|backward).*live.*activation/);
  });
  it('peak activations: 1F1B stage 0 holds min(m, p) microbatches, GPipe m', () => {
    const base: TrainOptions = { model: 'small', mesh: 'pp=4', microbatches: 8, steps: 1, optimizer: SGD };
    const g = peaks(compileTraining({ ...base, schedule: 'gpipe' })), f = peaks(compileTraining({ ...base, schedule: '1f1b' }));
    expect(g[0]!.atPeak.activation / f[0]!.atPeak.activation).toBeGreaterThan(1.6); // 8 vs 4 microbatches of layer activations (+ shared transients)
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
    const o: Partial<TrainOptions> = { model: 'small', mesh: 'dp=8', steps: 1, topology: 'dgx-a100', parity: false };
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
    await expect(train({ mesh: 'dp=2', sequenceParallel: true })).rejects.toThrow(/--sequence-parallel needs tp > 1/);
  });
});

describe('collemu train (CLI)', () => {
  const run = (args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8' });
  it('prints losses, parity, memory per rank, virtual step time and the communication breakdown (each row: its own group totals)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'collemu-train-'));
    try {
      const file = join(dir, 'r.json');
      const r = run(['train', '--mesh', 'dp=2,pp=2,tp=2', '--microbatches', '2', '--steps', '2', '--executor', 'simulate', '--json', file]);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/step\s+loss\s+serial/);
      expect(r.stdout).toMatch(/# parity with the serial run: each step .*: max abs err \S+, max rel err \S+ \(gradient of .*\): within 1e-5/);
      expect(r.stdout).toMatch(/# trajectory: the independent serial run .*: within 1e-5/);
      expect(r.stdout).toMatch(/virtual step time: /);
      expect(r.stdout).toMatch(/collective\s+group\s+calls\/rank\s+bytes\/rank\s+calls, all ranks\s+bytes, all ranks/);
      const j = JSON.parse(readFileSync(file, 'utf8')) as { comm_by_group: { coll: string; group: string; calls_per_rank: number; calls: number }[] };
      const rows = r.stdout.split('\n').filter((l) => /^#  (allreduce|allgather|sendrecv|reducescatter)\s/.test(l));
      expect(rows).toHaveLength(j.comm_by_group.length);
      for (const g of j.comm_by_group) {
        const row = rows.find((l) => l.split(/\s+/)[1] === g.coll && l.split(/\s+/)[2] === g.group)!;
        expect(row.split(/\s+/)[3], row).toBe(String(g.calls_per_rank));
        expect(row.split(/\s+/)[6], row).toBe(String(g.calls));
      }
      // the two AllReduce rows (tp, dp+cp) show different totals
      const ar = j.comm_by_group.filter((g) => g.coll === 'allreduce');
      expect(ar).toHaveLength(2);
      expect(ar[0]!.calls).not.toBe(ar[1]!.calls);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  it('--json - prints the documented keys', () => {
    const r = run(['train', '--mesh', 'tp=2', '--steps', '2', '--json', '-']);
    expect(r.status, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.steps).toHaveLength(2);
    expect(Object.keys(j.steps[0])).toEqual(expect.arrayContaining(['step', 'loss']));
    expect(Object.keys(j.parity)).toEqual(['max_abs_err', 'max_rel_err', 'grad_rel_err', 'loss_rel_err', 'param_rel_err', 'trajectory_abs_err', 'trajectory_rel_err']);
    expect(j.parity.max_rel_err).toBeLessThanOrEqual(TOL);
    expect(j.parity.grad_rel_err).toBeGreaterThan(0);
    expect(j.ranks).toHaveLength(2);
    expect(j.ranks[0].peak_memory_bytes).toBeGreaterThan(0);
    expect(j.virtual_step_time_s).toBeGreaterThan(0);
    expect(j.comm.allreduce.calls).toBeGreaterThan(0);
    expect(j.comm.allreduce.bytes).toBeGreaterThan(0);
    expect(j.comm_by_group[0]).toEqual(expect.objectContaining({ calls_per_rank: expect.any(Number), calls: expect.any(Number), bytes: expect.any(Number) }));
  });
  it('exit code 1 when a step misses 1e-5, or the trajectory 1e-3', () => {
    const p = { max_abs_err: 0, max_rel_err: 0, worst: '', grad_rel_err: 0, loss_rel_err: 0, param_rel_err: 0, trajectory_abs_err: 0, trajectory_rel_err: 0, trajectory_worst: '' };
    expect(parityFailed(p)).toBe(false);
    expect(parityFailed({ ...p, max_rel_err: 2e-5 })).toBe(true);
    expect(parityFailed({ ...p, trajectory_rel_err: 5e-4 })).toBe(false);
    expect(parityFailed({ ...p, trajectory_rel_err: 2e-3 })).toBe(true);
    expect(parityFailed({ ...p, max_rel_err: NaN })).toBe(true);
  });
  it('bad input: one-line error, exit 2', () => {
    const cases: [string[], RegExp][] = [
      [['--mesh', 'tp=3'], /heads \(4\) must be divisible by tp \(3\)/],
      [['--mesh', 'foo=2'], /unknown mesh dimension 'foo'/],
      [['--model', 'huge'], /neither a preset/],
      [['--schedule', 'nope', '--mesh', 'pp=2'], /nope/],
      [['--zero', '7'], /--zero must be 0, 1, 2 or 3/],
      [['--optimizer', 'lion'], /--optimizer must be sgd or adam/],
      // argument-parser errors
      [['--zero', 'x'], /--zero must be an integer/],
      [['--steps', '1.5'], /--steps must be an integer/],
      [['--seed', 'abc'], /--seed must be an integer/],
      [['--mem-capacity', 'abc'], /'abc' is not a byte count/],
      [['--bogus'], /unknown option '--bogus'/],
      [['--jsn', '-'], /unknown option '--jsn' \(Did you mean --json\?\)/],
      // sequence parallelism needs TP
      [['--mesh', 'dp=2', '--sequence-parallel'], /--sequence-parallel needs tp > 1.*tp=1/],
      // nothing fits in 0 bytes: the message has no empty fields
      [['--mem-capacity', '0'], /out of memory on rank 0 at setup: allocating embedding params \(8\.0 KiB\) exceeds the device capacity of 0 B \(nothing else is live\)$/],
    ];
    for (const [args, re] of cases) {
      const r = run(['train', '--steps', '1', ...args]);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stdout, args.join(' ')).toBe('');
      expect(r.stderr, args.join(' ')).toMatch(/^collemu: error: [^\n]*\n$/);
      expect(r.stderr.trim(), args.join(' ')).toMatch(re);
    }
  });
  it('GPipe runs out of memory where 1F1B fits (the README pair: small, pp=4, m=8, Adam, 2 MiB)', () => {
    const base = ['train', '--model', 'small', '--mesh', 'pp=4', '--microbatches', '8', '--mem-capacity', '2M', '--steps', '1', '--optimizer', 'adam'];
    const g = run([...base, '--schedule', 'gpipe']);
    expect(g.status).toBe(2);
    expect(g.stderr).toMatch(/^collemu: error: out of memory on rank 0 at step 0 forward stage 0 microbatch \d: allocating .* live \(param .*activation .*\) exceeds the device capacity of 2\.00 MiB; largest live: /);
    const f = run([...base, '--schedule', '1f1b', '--executor', 'simulate', '--json', '-']);
    expect(f.status, f.stderr).toBe(0);
    const j = JSON.parse(f.stdout) as { ranks: { peak_memory_bytes: number; at_peak: Record<string, number> }[]; parity: { max_rel_err: number } };
    const peak = Math.max(...j.ranks.map((x) => x.peak_memory_bytes));
    expect(peak).toBe(j.ranks[0]!.peak_memory_bytes);
    expect(peak).toBeLessThanOrEqual(2 * 2 ** 20);
    expect((peak / 2 ** 20).toFixed(2)).toBe('1.79'); // README
    expect(j.parity.max_rel_err).toBeLessThanOrEqual(TOL);
  });
});
