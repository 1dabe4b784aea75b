/**
 * The layout planner (`collemu plan`): search tp / cp / pp / dp / ZeRO / vpp / micro-batch /
 * recompute / schedule for a model on a cluster, keep the layouts that fit in memory, rank them by
 * predicted MFU (predictStep's model), and explain the winner.
 *
 * Search space (N GPUs, sequence s, global batch B sequences, L layers):
 *  - tp: powers of two up to the node (NVLink domain; a TPU slice's last axis) and 64, dividing the
 *    heads and the FFN size (kv heads: one divides the other); sequence parallelism on whenever
 *    tp > 1 (same traffic as without it, less memory and elementwise work);
 *  - cp: powers of two up to 32 leaving at least 1,024 tokens per CP rank (s / cp >= 1024);
 *  - pp: every divisor of N / (tp cp) up to L; dp = N / (tp cp pp) must divide B;
 *  - micro-batch: 1, 2, 4, 8 dividing B / dp;
 *  - ep (MoE models only): powers of two dividing dp and the expert count;
 *  - ZeRO: 0 always; 1 and 2 with dp > 1; 3 with dp > 1 and without PP (with PP ZeRO-3 behaves as
 *    ZeRO-1 here). ZeRO-0 is not dominated: with fp32 gradients its AllReduce moves 8 bytes per
 *    parameter against ZeRO-1's 4 (gradient ReduceScatter) + 2 (bf16 parameter AllGather), but all
 *    of it can hide behind the backward, while ZeRO-1's AllGather has only the first forward to
 *    hide behind (and the collectives' algorithms differ); where ZeRO-0's unsharded Adam states
 *    fit, it can win;
 *  - recompute: none, full (selective too with unfused attention, where it saves something);
 *  - schedule: 1F1B; interleaved with every v >= 2 dividing ceil(L / pp) when m is a multiple of
 *    pp; ZB-H1 and ZB-V (two chunks per rank, V-shaped) when m >= pp;
 *  - activation memory: the input's activationMemory ('megatron' by default, memory.ts), not searched.
 * Candidates whose memory (a quick per-stage estimate, memory.ts) exceeds the usable HBM by more
 * than 2% are dropped before any timing. The rest are timed with the pipeline closed forms (zb-v:
 * step.ts zbvIdle) and ranked by MFU (ties: less memory); the best K are then predicted in full
 * (simulated schedules where small enough, parallelism/pipeline.ts) and re-ranked. Progress: the
 * `progress` callback (the CLI draws it on stderr when that is a terminal, cli/predict.ts
 * planProgress).
 */
import { HARDWARE } from '../../runtime/hardware.js';
import { resolveCluster, type Cluster } from './clusters.js';
import { deviceFor } from './compute.js';
import { PredictError } from './errors.js';
import { stageMemory, usableBytes, type ActivationMemory } from './memory.js';
import { isMoe, resolveModel, type ModelSpec } from './models.js';
import { checkGradBytes, predictWith, resolveLayout, type AttentionImpl, type CpComm, type Prediction, type PredictInput, type Recompute } from './step.js';

export interface PlanInput {
  model: string | ModelSpec;
  gpu: string;
  gpus: number;
  seq: number;
  globalBatch: number;
  cluster?: string | Cluster;
  /** layouts to return (default 5) */
  top?: number;
  attention?: AttentionImpl;
  cpComm?: CpComm;
  tpOverlap?: boolean;
  gradBytes?: number;
  /** called as candidates are evaluated (done, total) */
  progress?: (done: number, total: number, phase: string) => void;
  /** search only layouts with at most these degrees (e.g. { pp: 1 }: no pipeline parallelism) */
  limits?: { tp?: number; cp?: number; pp?: number };
  /** activation copies kept (memory.ts): 'megatron' (default) or 'lean' */
  activationMemory?: ActivationMemory;
}

export interface PlanResult {
  /** best first */
  layouts: Prediction[];
  /** candidate layouts enumerated, that passed the memory screen, and timed */
  enumerated: number;
  screened: number;
  fitting: number;
  seconds: number;
  /** human-readable explanation of the winner */
  explanation: string[];
}

const pow2upTo = (n: number) => {
  const r: number[] = [];
  for (let x = 1; x <= n; x *= 2) r.push(x);
  return r;
};
const divisors = (n: number) => {
  const r: number[] = [];
  for (let d = 1; d <= n; d++) if (n % d === 0) r.push(d);
  return r;
};

export function plan(inp: PlanInput): PlanResult {
  const t0 = performance.now();
  const model = resolveModel(inp.model);
  const gpu = String(inp.gpu ?? '').toLowerCase();
  if (!HARDWARE[gpu]) throw new PredictError(`unknown GPU '${inp.gpu}' (known: a100, h100, h200, b200, tpu-v4, tpu-v5p, tpu-v5e, tpu-v6e)`);
  const N = inp.gpus;
  if (!Number.isInteger(N) || N < 1) throw new PredictError(`--gpus must be an integer >= 1 (got ${N})`);
  if (!Number.isInteger(inp.seq) || inp.seq < 1) throw new PredictError(`--seq must be an integer >= 1 (got ${inp.seq})`);
  if (!Number.isInteger(inp.globalBatch) || inp.globalBatch < 1) throw new PredictError(`--global-batch must be an integer >= 1 (got ${inp.globalBatch})`);
  checkGradBytes(inp.gradBytes);
  const top = inp.top ?? 5;
  if (!Number.isInteger(top) || top < 1) throw new PredictError(`--top must be an integer >= 1 (got ${top})`);
  const cluster = resolveCluster(inp.cluster, gpu, N);
  const hw = cluster.topo.hw;
  const dev = deviceFor(cluster.gpu, hw.peakFlops.bf16, hw.hbmBandwidth);
  const usable = usableBytes(cluster.topo.data.memCapacity, cluster.gpu);
  const attention = inp.attention ?? 'flash';
  const base: Omit<PredictInput, 'tp'> = {
    model, gpu, gpus: N, cluster, seq: inp.seq, globalBatch: inp.globalBatch, attention,
    cpComm: inp.cpComm, tpOverlap: inp.tpOverlap, gradBytes: inp.gradBytes, pipelineModel: 'formula', activationMemory: inp.activationMemory,
  };
  const node = cluster.torus ? cluster.topo.torus!.dims[cluster.topo.torus!.dims.length - 1]! : Math.min(cluster.levels[0]!.size, N);
  const lim = inp.limits ?? {};
  const tps = pow2upTo(Math.min(64, node, model.heads, lim.tp ?? Infinity)).filter((t) => model.heads % t === 0 && model.ffn % t === 0 && (model.kvHeads % t === 0 || t % model.kvHeads === 0));
  const cps = pow2upTo(Math.min(32, lim.cp ?? Infinity)).filter((c) => inp.seq / c >= 1024 && inp.seq % (2 * c) === 0 || c === 1);
  const recomputes: Recompute[] = attention === 'unfused' ? ['none', 'selective', 'full'] : ['none', 'full'];

  // ---- enumerate, screen by memory
  const cands: PredictInput[] = [];
  let enumerated = 0;
  for (const tp of tps) {
    for (const cp of cps) {
      if (N % (tp * cp) !== 0) continue;
      for (const pp of divisors(N / (tp * cp))) {
        if (pp > model.layers || pp > (lim.pp ?? Infinity)) continue;
        const dp = N / (tp * cp * pp);
        if (inp.globalBatch % dp !== 0) continue;
        const perDp = inp.globalBatch / dp;
        for (const b of [1, 2, 4, 8]) {
          if (perDp % b !== 0) continue;
          const m = perDp / b;
          // ZeRO-0 too (see the header)
          const zeros = dp === 1 ? [0] : pp > 1 ? [0, 1, 2] : [0, 1, 2, 3];
          const eps = isMoe(model) ? pow2upTo(dp).filter((e) => model.experts! % e === 0) : [1];
          const scheds: { schedule?: string; vpp: number }[] = [];
          if (pp === 1) scheds.push({ vpp: 1 });
          else {
            scheds.push({ schedule: '1f1b', vpp: 1 });
            const per = Math.ceil(model.layers / pp);
            if (m % pp === 0 && m >= pp) for (let v = 2; v <= per; v++) if (per % v === 0) scheds.push({ schedule: 'interleaved', vpp: v });
            if (m >= pp) scheds.push({ schedule: 'zb-h1', vpp: 1 });
            if (m >= pp && per >= 2) scheds.push({ schedule: 'zb-v', vpp: 2 });
          }
          for (const ep of eps) {
            for (const zero of zeros) {
              for (const recompute of recomputes) {
                for (const sc of scheds) {
                  enumerated++;
                  const c: PredictInput = { ...base, tp, cp, pp, dp, ep, microBatch: b, zero, recompute, sequenceParallel: tp > 1, vpp: sc.vpp, schedule: sc.schedule };
                  if (quickMemory(model, c, m) > usable * 1.02) continue;
                  cands.push(c);
                }
              }
            }
          }
        }
      }
    }
  }
  // ---- time the survivors (closed-form pipeline)
  const timed: Prediction[] = [];
  const total = cands.length;
  let done = 0;
  for (const c of cands) {
    done++;
    if (inp.progress && (done % 64 === 0 || done === total)) inp.progress(done, total, 'timing');
    let p: Prediction;
    try {
      p = predictWith(model, cluster, dev, resolveLayout(model, c), c);
    } catch (e) {
      if (e instanceof PredictError) continue;
      throw e;
    }
    if (p.fits_in_memory) timed.push(p);
  }
  const rank = (a: Prediction, b: Prediction) => b.mfu - a.mfu || a.memory_gib_per_gpu - b.memory_gib_per_gpu;
  timed.sort(rank);
  // ---- re-predict the best in full (simulated pipeline where small enough)
  const finals: Prediction[] = [];
  for (const [i, p] of timed.slice(0, top).entries()) {
    inp.progress?.(i + 1, Math.min(top, timed.length), 'simulating the best schedules');
    const l = p.layout;
    const c: PredictInput = {
      ...base, tp: l.tp, cp: l.cp, pp: l.pp, dp: l.dp, ep: l.ep, microBatch: l.microBatch, zero: l.zero, recompute: l.recompute,
      sequenceParallel: l.sequenceParallel, vpp: l.vpp, schedule: l.schedule === 'none' ? undefined : l.schedule, pipelineModel: 'auto',
      activationMemory: l.activationMemory,
    };
    const q = predictWith(model, cluster, dev, resolveLayout(model, c), c);
    if (q.fits_in_memory) finals.push(q);
  }
  finals.sort(rank);
  const layouts = finals.slice(0, top);
  return {
    layouts, enumerated, screened: cands.length, fitting: timed.length,
    seconds: (performance.now() - t0) / 1000,
    explanation: layouts.length ? explain(layouts[0]!, layouts[1]) : [`no layout of ${model.name} fits in ${(usable / 2 ** 30).toFixed(1)} GiB per GPU on ${N} x ${hw.name}`],
  };
}

/**
 * A cheap upper-ish estimate of the per-GPU memory of a candidate: the first and the last rank with
 * ceil(L / pp) layers each, the closed-form in-flight counts (formulas.md), the output layer on
 * rank 0 for zb-v. predictStep then walks the schedule (step.ts stageActivationPeak).
 */
function quickMemory(model: ModelSpec, c: PredictInput, m: number): number {
  const pp = c.pp!, tp = c.tp!, v = c.vpp as number;
  const per = Math.ceil(model.layers / pp);
  const act = { b: c.microBatch!, s: c.seq, tp, cp: c.cp!, sp: !!c.sequenceParallel, attention: c.attention ?? 'flash', store: c.activationMemory };
  const zbv = c.schedule === 'zb-v';
  const infl0 = pp === 1 ? 1 : c.schedule === 'interleaved' ? Math.min(m * v, 2 * (pp - 1) + (v - 1) * pp + 1) / v : Math.min(m, pp);
  const common = { model, tp, pp, dp: c.dp!, ep: c.ep ?? 1, zero: c.zero as 0 | 1 | 2 | 3, gradBytes: c.gradBytes ?? 4, act, recompute: c.recompute! };
  const first = stageMemory({ ...common, layers: per, first: true, last: pp === 1 || zbv, inflight: infl0 });
  if (pp === 1) return first.total;
  const lastLayers = Math.max(1, model.layers - (pp - 1) * per);
  const last = stageMemory({ ...common, layers: zbv ? per : lastLayers, first: false, last: !zbv, inflight: zbv || c.schedule === 'zb-h1' ? Math.min(m, pp) : 1 });
  return Math.max(first.total, last.total);
}

const pct = (x: number, t: number) => `${((100 * x) / t).toFixed(1)}%`;

/** Layout in one line, e.g. "tp 8 cp 1 pp 16 dp 64, zero 1, interleaved v 8, mb 1, recompute none, SP". */
export function layoutString(p: Prediction): string {
  const l = p.layout;
  const sched = l.schedule === 'none' ? 'no PP' : l.schedule === 'interleaved' ? `interleaved v=${l.vpp}` : l.schedule;
  return `tp ${l.tp} cp ${l.cp} pp ${l.pp} dp ${l.dp}${l.ep > 1 ? ` ep ${l.ep}` : ''}, zero ${l.zero}, ${sched}, micro-batch ${l.microBatch} (m = ${p.microbatches}), recompute ${l.recompute}${l.sequenceParallel ? ', sequence parallel' : ''}${l.activationMemory === 'lean' ? ', lean activations' : ''}`;
}

/** Why the winner wins: its breakdown, what dominates, and how it differs from the runner-up. */
export function explain(best: Prediction, second?: Prediction): string[] {
  const b = best.breakdown_s, t = best.step_time_s;
  const out: string[] = [];
  out.push(`winner: ${layoutString(best)}`);
  out.push(`  step ${t.toFixed(3)} s, MFU ${(100 * best.mfu).toFixed(1)}%, ${best.tflops_per_gpu.toFixed(0)} TFLOP/s per GPU, ${Math.round(best.tokens_per_s).toLocaleString('en-US')} tokens/s, ${best.memory_gib_per_gpu.toFixed(1)} of ${best.memory_usable_gib.toFixed(1)} usable GiB per GPU`);
  const parts = (Object.entries(b) as [string, number][]).filter(([, x]) => x > 1e-6 * t).sort((x, y) => y[1] - x[1]);
  out.push(`  where the time goes: ${parts.map(([k, x]) => `${k} ${pct(x, t)}`).join(', ')}`);
  const overhead = parts.filter(([k]) => k !== 'compute');
  if (overhead.length) {
    const [k, x] = overhead[0]!;
    const why: Record<string, string> = {
      bubble: `the pipeline bubble (${best.layout.pp} stages, ${best.microbatches} microbatches${best.layout.vpp > 1 ? `, ${best.layout.vpp} chunks per rank` : ''})`,
      tp: `tensor-parallel collectives (tp ${best.layout.tp}, exposed: they sit between dependent GEMMs)`,
      dp: `data-parallel gradient / parameter traffic that the backward could not hide (dp ${best.layout.dp})`,
      pp: 'stage-to-stage messages on the pipeline critical path',
      cp: `context-parallel K/V exchange (cp ${best.layout.cp})`,
      recompute: `recomputation (${best.layout.recompute}), the price of fitting activations in memory`,
      ep: 'expert-parallel all-to-all',
      optimizer: 'the optimizer step',
    };
    out.push(`  largest overhead: ${k} ${pct(x, t)}: ${why[k] ?? k}`);
  }
  const dpc = best.collectives.filter((c) => c.exposed_s > 0).sort((x, y) => y.exposed_s - x.exposed_s).slice(0, 3);
  for (const c of dpc) out.push(`  ${c.group} ${c.op}: ${(c.bytes / 1e6).toFixed(1)} MB x ${c.calls} on ${c.size} ranks (${c.links.join(' + ') || 'local'}), ${c.algo}, ${(c.time_s * 1e3).toFixed(3)} ms each, ${c.exposed_s.toFixed(3)} s exposed`);
  if (second) {
    out.push(`  runner-up: ${layoutString(second)}: MFU ${(100 * second.mfu).toFixed(1)}% (${((100 * (best.mfu - second.mfu))).toFixed(2)} points lower), ${second.memory_gib_per_gpu.toFixed(1)} GiB`);
  }
  return out;
}
