/**
 * `collemu train`: a parallel training run of the small Llama model on emulated ranks, checked
 * against the serial single-rank reference (parallelism/train/train.ts).
 */
import { readFileSync } from 'node:fs';
import { Command, InvalidArgumentError } from 'commander';
import { MEM_CATEGORIES } from '../parallelism/train/arena.js';
import { runTraining, type TrainResult } from '../parallelism/train/train.js';
import type { OptimizerConfig } from '../parallelism/model/reference.js';
import { writeTrace } from '../runtime/trace.js';
import { parseBytes, UsageError } from './bench.js';
import { guardWrite, writeOutput } from './output.js';

/**
 * Parity tolerance (Float32), relative per tensor: the pass criterion of the per-step check (every
 * step's loss and gradients, and the final parameters, against the serial step at the same
 * parameters). Above it the run exits with code 1.
 */
export const PARITY_TOL = 1e-5;
/** The trajectory (against the independent serial run) beyond this is wrong, not rounded differently: exit 1. */
export const PARITY_FAIL = 1e-3;

/** exit code 1: the per-step check above PARITY_TOL, or the trajectory above PARITY_FAIL */
export function parityFailed(p: NonNullable<TrainResult['parity']>): boolean {
  return !(p.max_rel_err <= PARITY_TOL) || !(p.trajectory_rel_err <= PARITY_FAIL);
}

const int = (what: string) => (v: string) => {
  const n = Number(v);
  if (v.trim() === '' || !Number.isInteger(n)) throw new InvalidArgumentError(`${what} must be an integer`);
  return n;
};
const float = (what: string) => (v: string) => {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError(`${what} must be a number`);
  return n;
};

const fmtB = (b: number): string =>
  b >= 2 ** 30 ? `${(b / 2 ** 30).toFixed(2)} GiB` : b >= 2 ** 20 ? `${(b / 2 ** 20).toFixed(2)} MiB` : b >= 1024 ? `${(b / 1024).toFixed(1)} KiB` : `${b} B`;
const fmtT = (s: number): string => (s >= 1 ? `${s.toFixed(3)} s` : s >= 1e-3 ? `${(s * 1e3).toFixed(3)} ms` : `${(s * 1e6).toFixed(2)} us`);

/** `1 stage`, `2 stages` */
const plural = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`;

export function formatTrain(r: TrainResult, opt: OptimizerConfig): string[] {
  const m = r.model;
  const L: string[] = [];
  L.push(`# collemu train: model ${m.layers} layers, hidden ${m.hidden}, ${m.heads} heads / ${m.kvHeads} kv, ffn ${m.ffn}, vocab ${m.vocab}, seq ${m.seq}${m.moe ? `, ${m.moe.experts} experts top-${m.moe.topk}` : ''}`);
  L.push(`# mesh ${r.mesh} (${r.world} ranks), zero ${r.layout.zero}${r.layout.sequence_parallel ? ', sequence parallel' : ''}, cp mode ${r.layout.cp_mode}, ` +
    `schedule ${r.layout.schedule} (${plural(r.layout.stages, 'stage')}, ${plural(r.layout.microbatches, 'microbatch', 'microbatches')}), global batch ${r.layout.batch} sequences, ` +
    `${opt.kind} lr ${opt.lr}, executor ${r.executor}`);
  L.push('#');
  L.push('#  step        loss      serial');
  for (const s of r.steps) L.push(`${String(s.step).padStart(7)}  ${s.loss.toFixed(6).padStart(10)}  ${s.reference_loss !== undefined ? s.reference_loss.toFixed(6).padStart(10) : ''}`);
  if (r.parity) {
    const p = r.parity, e = (x: number) => x.toExponential(2), tol = PARITY_TOL.toExponential(0);
    L.push(`# parity with the serial run: each step (loss, every rank's gradients and final parameters) vs the serial step at the same parameters: ` +
      `max abs err ${e(p.max_abs_err)}, max rel err ${e(p.max_rel_err)} (${p.worst || 'all equal'}): ${p.max_rel_err <= PARITY_TOL ? `within ${tol}` : `ABOVE ${tol}: WRONG`}`);
    L.push(`# trajectory: the independent serial run (final parameters, losses): max abs err ${e(p.trajectory_abs_err)}, ` +
      `max rel err ${e(p.trajectory_rel_err)} (${p.trajectory_worst || 'all equal'}): ` +
      (p.trajectory_rel_err <= PARITY_TOL ? `within ${tol}` : p.trajectory_rel_err <= PARITY_FAIL
        ? `above ${tol}: rounding of the gradient sums, carried from step to step${opt.kind === 'adam' ? ' and amplified by Adam' : ''} (README: train)`
        : 'WRONG'));
  }
  L.push(`# virtual step time: ${fmtT(r.virtual_step_time_s)} (mean over ${r.steps.length} steps; compute on the GPU roofline, links of the topology)`);
  L.push('#');
  L.push('#  rank  peak memory  ' + MEM_CATEGORIES.map((c) => c.padStart(11)).join('') + '  peak at');
  for (const x of r.ranks) {
    L.push(`${String(x.rank).padStart(7)}  ${fmtB(x.peak_memory_bytes).padStart(11)}  ${MEM_CATEGORIES.map((c) => fmtB(x.at_peak[c]).padStart(11)).join('')}  ${x.peak_at}`);
  }
  L.push('#');
  // per collective and group: the busiest rank's calls and bytes, and the totals over all ranks
  const gw = Math.max(5, ...r.comm_by_group.map((g) => g.group.length));
  L.push(`#  collective     ${'group'.padEnd(gw)}  calls/rank   bytes/rank   calls, all ranks   bytes, all ranks`);
  for (const g of r.comm_by_group) {
    L.push(`#  ${g.coll.padEnd(13)}  ${g.group.padEnd(gw)}  ${String(g.calls_per_rank).padStart(10)}  ${fmtB(g.bytes_per_rank).padStart(11)}  ` +
      `${String(g.calls).padStart(17)}  ${fmtB(g.bytes).padStart(17)}`);
  }
  L.push(`# host time ${r.host_seconds.toFixed(2)} s`);
  return L;
}

export function trainJson(r: TrainResult): unknown {
  return {
    steps: r.steps.map((s) => ({ step: s.step, loss: s.loss, reference_loss: s.reference_loss })),
    parity: r.parity
      ? {
        max_abs_err: r.parity.max_abs_err, max_rel_err: r.parity.max_rel_err, grad_rel_err: r.parity.grad_rel_err, loss_rel_err: r.parity.loss_rel_err,
        param_rel_err: r.parity.param_rel_err, trajectory_abs_err: r.parity.trajectory_abs_err, trajectory_rel_err: r.parity.trajectory_rel_err,
      }
      : null,
    ranks: r.ranks.map((x) => ({ rank: x.rank, peak_memory_bytes: x.peak_memory_bytes, at_peak: x.at_peak, peak_at: x.peak_at })),
    virtual_step_time_s: r.virtual_step_time_s,
    comm: r.comm,
    comm_by_group: r.comm_by_group,
    mesh: r.mesh,
    world: r.world,
    layout: r.layout,
    executor: r.executor,
  };
}

export function registerTrain(program: Command): void {
  program
    .command('train')
    .description('train the small Llama model on emulated ranks under a parallel layout; checks parity with the serial run')
    .option('--model <tiny|small|tiny-moe|FILE>', 'model preset or JSON file', 'tiny')
    .option('--mesh <SPEC>', 'mesh, e.g. dp=2,pp=2,tp=2 (dims tp, cp, ep, pp, fsdp/dp_shard, dp/dp_replicate; innermost first)', 'dp=2')
    .option('--zero <0..3>', 'ZeRO level over the dp x cp ranks (3 = FSDP); with fsdp and dp both > 1: HSDP', int('--zero'), 0)
    .option('--sequence-parallel', 'sequence parallel (needs tp > 1)')
    .option('--cp-mode <ring|ulysses>', 'context parallel attention', 'ring')
    .option('--schedule <NAME>', 'pipeline schedule: gpipe, 1f1b, interleaved, zb-h1, zb-v', '1f1b')
    .option('--virtual <V>', 'stages per rank (interleaved)', int('--virtual'))
    .option('--from-csv <FILE>', 'pipeline schedule from a PyTorch pipelining CSV')
    .option('--microbatches <M>', 'microbatches per step (default 2 x pp, or 1)', int('--microbatches'))
    .option('--batch <B>', 'global batch in sequences (default 2 x dp x microbatches)', int('--batch'))
    .option('--steps <K>', 'training steps', int('--steps'), 3)
    .option('--seed <S>', 'seed of the parameters and data', int('--seed'), 1)
    .option('--optimizer <sgd|adam>', 'optimizer: sgd, or adam (AdamW: beta 0.9, 0.999, eps 1e-8)', 'sgd')
    .option('--lr <LR>', 'learning rate (default sgd 1.0, adam 0.01)', float('--lr'))
    .option('--executor <emulate|simulate>', 'worker threads (emulate) or the one-thread simulator with data', 'emulate')
    .option('--topology <NAME|FILE>', 'topology for virtual time', 'hgx-h100')
    .option('--mem-capacity <bytes>', 'device memory per rank, e.g. 2M (default: the GPU HBM)', (v: string) => {
      try { return parseBytes(v, '--mem-capacity'); } catch (e) { throw new InvalidArgumentError((e as Error).message); }
    })
    .option('--no-overlap', 'run communication on the compute stream (no overlap)')
    .option('--trace <FILE>', 'write every executed op as Chrome trace JSON (or .msgpack): open in Perfetto')
    .option('--json <FILE|->', 'write the result as JSON to FILE, or to stdout with -')
    .action(async (f: Record<string, unknown>, cmd: Command) => {
      if (f.fromCsv) {
        // the CSV fixes the schedule, its microbatches and its stages per rank
        for (const [key, flag] of [['schedule', '--schedule'], ['microbatches', '--microbatches'], ['virtual', '--virtual']] as const) {
          if (cmd.getOptionValueSource(key) === 'cli') throw new UsageError(`${flag} conflicts with --from-csv: the CSV gives the schedule, its microbatches and its stages`);
        }
      }
      const kind = f.optimizer as string;
      if (kind !== 'sgd' && kind !== 'adam') throw new UsageError(`--optimizer must be sgd or adam (got ${kind})`);
      const lr = (f.lr as number | undefined) ?? (kind === 'sgd' ? 1.0 : 0.01);
      if (!(lr > 0)) throw new UsageError(`--lr must be > 0 (got ${lr})`);
      const optimizer: OptimizerConfig = kind === 'sgd' ? { kind, lr } : { kind, lr };
      const ex = f.executor as string;
      if (ex !== 'emulate' && ex !== 'simulate') throw new UsageError(`--executor must be emulate or simulate (got ${ex})`);
      let csv: string | undefined;
      if (f.fromCsv) {
        try { csv = readFileSync(f.fromCsv as string, 'utf8'); } catch (e) { throw new UsageError(`cannot read ${f.fromCsv}: ${(e as Error).message}`); }
      }
      const r = await runTraining({
        model: f.model as string, mesh: f.mesh as string, zero: f.zero as number, sequenceParallel: !!f.sequenceParallel,
        cpMode: f.cpMode as 'ring' | 'ulysses', schedule: f.schedule as string, scheduleCsv: csv, scheduleCsvName: f.fromCsv as string | undefined, virtual: f.virtual as number | undefined,
        microbatches: f.microbatches as number | undefined, batch: f.batch as number | undefined, steps: f.steps as number, seed: f.seed as number,
        optimizer, overlap: f.overlap as boolean, memCapacity: f.memCapacity as number | undefined, executor: ex, topology: f.topology as string,
        trace: !!f.trace,
      });
      if (f.trace && r.events) guardWrite(f.trace as string, '--trace', () => writeTrace(f.trace as string, r.events!, r.links));
      const json = f.json as string | undefined;
      if (json !== '-') for (const l of formatTrain(r, optimizer)) console.log(l);
      if (json) {
        const text = JSON.stringify(trainJson(r), null, 2) + '\n';
        if (json === '-') process.stdout.write(text);
        else writeOutput(json, text, '--json');
      }
      if (r.parity && parityFailed(r.parity)) process.exitCode = 1;
    });
}
