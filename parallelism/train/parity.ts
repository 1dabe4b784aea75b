/**
 * The parity check of `collemu train` (parallelism/train/train.ts): the parallel run against the
 * serial single-rank model (parallelism/model/reference.ts), over every copy that any rank holds.
 *
 * A "copy" is one rank's block of a parameter (its TP slice, its experts, or the whole tensor when
 * it is replicated), or, for sharded ZeRO state, the block assembled from the shards of one ZeRO
 * group. Every copy is compared: replicas that diverge (a TP rank's norm weights, one DP replica)
 * show up, each on its own.
 *
 * Two comparisons:
 *
 *  - Per step (the pass criterion: max_abs_err, max_rel_err). The serial model replays the run:
 *    from the same initial parameters, at every step k it computes the loss and the gradients of
 *    the step's batch at its parameters theta_k, compares them with the parallel run's loss and with
 *    every copy of the gradients the parallel optimizer consumed at step k (captured by the
 *    program, step.ts `capture`), then applies the serial optimizer to the parallel run's
 *    gradients to get theta_(k+1). If the parallel run is correct, theta_k is bit for bit the
 *    parameters the parallel run used (its optimizer is the same element-wise kernel), so each
 *    step is compared at the same parameters: only the summation order of the gradients differs,
 *    whatever the optimizer. Errors are relative to the tensor: per tensor and step
 *    max |parallel - serial| / max |serial| for gradients (grad_rel_err: sensitive to an error in
 *    any gradient, however small the learning rate), the losses relative to the loss
 *    (loss_rel_err), and every copy of the final parameters against theta_K, relative to
 *    max |theta_K| (param_rel_err; 0 when the parallel optimizer, the ZeRO gathers and the replicas
 *    are right).
 *  - The trajectory: the independent serial run (trainSerial, its own gradients) against every
 *    copy of the parallel run's final parameters (relative to max |serial| per tensor) and its
 *    losses (trajectory_abs_err, trajectory_rel_err). Rounding differences of the gradients carry
 *    over from step to step; with SGD they stay at the rounding level, Adam's division by
 *    sqrt(v) amplifies them for the elements whose gradient is near zero (README, train).
 */
import { createOptimizerState, forwardBackward, initParams, optimizerStep, trainSerial, type Params } from '../model/reference.js';
import type { Region } from '../../runtime/ir.js';
import type { Compiled } from './train.js';
import { zeroShardDims, type LocalParam, type Unit } from './step.js';

/** One rank's (or one ZeRO group's) block of a parameter or gradient: rows r0.. x cols c0.. of the full tensor. */
export interface BlockCopy {
  lp: LocalParam;
  /** nr x nc, row-major */
  data: Float32Array;
  /** who holds it: 'rank 3', or 'ranks 0,2' for a block assembled from ZeRO shards */
  where: string;
}

export interface Parity {
  /** the per-step check (the pass criterion): max over grad, loss and param errors */
  max_abs_err: number;
  max_rel_err: number;
  /** where max_rel_err is reached */
  worst: string;
  grad_rel_err: number;
  loss_rel_err: number;
  param_rel_err: number;
  /** the independent serial run against the parallel run: final parameters (every copy) and losses */
  trajectory_abs_err: number;
  trajectory_rel_err: number;
  trajectory_worst: string;
}

/** Buffers of one rank after the run. */
export interface RankMem {
  in: Float32Array;
  out: Float32Array;
}

function blocks(unit: Unit, flat: Float32Array, where: string): BlockCopy[] {
  return unit.params.map((lp) => ({ lp, data: flat.slice(lp.off, lp.off + lp.nr * lp.nc), where }));
}

const whereOf = (ranks: number[]) => (ranks.length > 1 ? `ranks ${ranks.join(',')}` : `rank ${ranks[0]}`);

/** Every copy of the parameters at the end of the run. */
export function paramCopies(c: Compiled, mems: RankMem[]): BlockCopy[] {
  const { mesh, zero } = c.layout;
  const out: BlockCopy[] = [];
  for (let r = 0; r < mesh.world; r++) {
    for (const { unit, params } of c.ranks[r]!.plan.units) {
      if (zero === 3) {
        const Z = mesh.group(r, zeroShardDims(c.layout, unit.expert));
        if (Z.indexOf(r) !== 0) continue;
        const flat = new Float32Array(unit.padded);
        Z.forEach((q, i) => {
          const ps = c.ranks[q]!.plan.units.find((x) => x.unit.name === unit.name)!.pshard!;
          flat.set(mems[q]!.in.subarray(ps.off, ps.off + unit.shard), i * unit.shard);
        });
        out.push(...blocks(unit, flat, whereOf(Z)));
      } else {
        out.push(...blocks(unit, mems[r]!.in.subarray(params!.off, params!.off + unit.padded), `rank ${r}`));
      }
    }
  }
  return out;
}

/** Every copy of the gradients the optimizer consumed at `step` (needs the program's captures). */
export function gradCopies(c: Compiled, mems: RankMem[], step: number): BlockCopy[] {
  const { mesh } = c.layout;
  const out: BlockCopy[] = [];
  const capOf = (q: number, unit: string): Region => {
    const cap = c.ranks[q]!.plan.captures.find((x) => x.step === step && x.unit === unit);
    if (!cap) throw new Error(`rank ${q} captured no gradient of ${unit} at step ${step}`);
    return cap.region;
  };
  for (let r = 0; r < mesh.world; r++) {
    const { plan } = c.ranks[r]!;
    for (const cap of plan.captures) {
      if (cap.step !== step) continue;
      const unit = plan.units.find((x) => x.unit.name === cap.unit)!.unit;
      if (cap.shard) {
        const Z = mesh.group(r, zeroShardDims(c.layout, unit.expert));
        if (Z.indexOf(r) !== 0) continue;
        const flat = new Float32Array(unit.padded);
        Z.forEach((q, i) => {
          const reg = capOf(q, unit.name);
          flat.set(mems[q]!.out.subarray(reg.off, reg.off + reg.len), i * unit.shard);
        });
        out.push(...blocks(unit, flat, whereOf(Z)));
      } else {
        out.push(...blocks(unit, mems[r]!.out.subarray(cap.region.off, cap.region.off + cap.region.len), `rank ${r}`));
      }
    }
  }
  return out;
}

/** Full tensors from the first copy of every block; every element must be covered. */
export function assemble(copies: BlockCopy[], shapes: Map<string, [number, number]>): Params {
  const full: Params = new Map();
  const covered = new Map<string, Uint8Array>();
  for (const [name, [rows, cols]] of shapes) {
    full.set(name, new Float32Array(rows * cols));
    covered.set(name, new Uint8Array(rows * cols));
  }
  for (const { lp, data } of copies) {
    const t = full.get(lp.name), cov = covered.get(lp.name);
    if (!t || !cov) throw new Error(`parity: unknown parameter ${lp.name}`);
    const cols = lp.full[1];
    for (let i = 0; i < lp.nr; i++) {
      for (let j = 0; j < lp.nc; j++) {
        const at = (lp.r0 + i) * cols + lp.c0 + j;
        if (cov[at]) continue;
        cov[at] = 1;
        t[at] = data[i * lp.nc + j]!;
      }
    }
  }
  for (const [name, cov] of covered) if (cov.includes(0)) throw new Error(`parity: no rank holds all of ${name}`);
  return full;
}

/** Running maximum of errors with the place of the worst relative one. */
class Worst {
  abs = 0;
  rel = 0;
  where = '';
  add(abs: number, rel: number, where: string): void {
    if (!(abs <= this.abs)) this.abs = abs;
    if (!(rel <= this.rel)) { this.rel = rel; this.where = where; }
  }
}

const maxAbs = (a: Float32Array): number => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
};

/** Compare every copy with the full reference tensors; relative to max |reference| per tensor. */
function compareCopies(copies: BlockCopy[], ref: Params, what: (name: string) => string, into: Worst[]): void {
  const norms = new Map<string, number>();
  for (const { lp, data, where } of copies) {
    const want = ref.get(lp.name)!;
    let norm = norms.get(lp.name);
    if (norm === undefined) norms.set(lp.name, (norm = maxAbs(want)));
    const cols = lp.full[1];
    let d = 0;
    for (let i = 0; i < lp.nr; i++) {
      const o = (lp.r0 + i) * cols + lp.c0;
      for (let j = 0; j < lp.nc; j++) {
        const e = Math.abs(data[i * lp.nc + j]! - want[o + j]!);
        if (!(e <= d)) d = e; // NaN counts as the worst
      }
    }
    const rel = norm > 0 ? d / norm : d;
    for (const w of into) w.add(d, rel, `${what(lp.name)} (${where})`);
  }
}

/**
 * The parity of a finished run: `mems` are the ranks' buffers, `losses` the parallel run's loss per
 * step. Returns the parity and the independent serial run's losses.
 */
export function checkParity(c: Compiled, mems: RankMem[], losses: number[], seed: number,
  batches: { tokens: Float32Array; targets: Float32Array }[]): { parity: Parity; refLosses: number[] } {
  const { cfg, steps, batch, optimizer } = c.layout;
  const shapes = new Map<string, [number, number]>();
  for (const cr of c.ranks) for (const { unit } of cr.plan.units) for (const lp of unit.params) shapes.set(lp.name, lp.full);
  const all = new Worst(), grad = new Worst(), loss = new Worst(), param = new Worst();
  // per step: the serial step at the parameters the parallel run had
  const theta = initParams(cfg, seed);
  const state = createOptimizerState(cfg, optimizer);
  for (let k = 0; k < steps; k++) {
    const ser = forwardBackward(cfg, theta, batches[k]!.tokens, batches[k]!.targets, batch);
    const d = Math.abs(losses[k]! - ser.loss);
    const rel = d / Math.abs(ser.loss);
    for (const w of [all, loss]) w.add(d, rel, `loss of step ${k}`);
    const copies = gradCopies(c, mems, k);
    compareCopies(copies, ser.grads, (n) => `gradient of ${n} at step ${k}`, [all, grad]);
    // the serial optimizer on the parallel run's gradients
    optimizerStep(cfg, theta, assemble(copies, shapes), state, optimizer);
  }
  const finals = paramCopies(c, mems);
  compareCopies(finals, theta, (n) => n, [all, param]);
  // the trajectory: the independent serial run
  const ref = trainSerial(cfg, seed, { steps, batch, optimizer });
  const traj = new Worst();
  compareCopies(finals, ref.params, (n) => n, [traj]);
  losses.forEach((l, k) => {
    const e = Math.abs(l - ref.losses[k]!);
    traj.add(e, e / Math.abs(ref.losses[k]!), `loss of step ${k}`);
  });
  return {
    parity: {
      max_abs_err: all.abs, max_rel_err: all.rel, worst: all.where,
      grad_rel_err: grad.rel, loss_rel_err: loss.rel, param_rel_err: param.rel,
      trajectory_abs_err: traj.abs, trajectory_rel_err: traj.rel, trajectory_worst: traj.where,
    },
    refLosses: ref.losses,
  };
}
