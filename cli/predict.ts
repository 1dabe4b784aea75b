/**
 * `collemu predict` and `collemu plan`: the analytic step-time / MFU / memory model and the layout
 * planner (parallelism/predict/).
 *
 *   collemu predict --model M --gpu G --gpus N [--tp T] [--pp P] [--dp D] [--cp C] [--ep E] [--vpp V]
 *                   [--zero 0..3] [--sequence-parallel] --seq S --global-batch B [--micro-batch b]
 *                   [--recompute none|selective|full] [--schedule NAME] [--cluster PRESET|FILE] [--json FILE|-]
 *   collemu plan --model M --gpu G --gpus N --seq S --global-batch B [--top K] [--cluster ...] [--json FILE|-]
 *   both: [--activation-memory megatron|lean] [--attention flash|unfused] [--cp-comm ring|allgather]
 *         [--tp-overlap] [--grad-bytes 2|4]
 *
 * `collemu plan` draws a one-line progress counter on stderr when stderr is a terminal
 * (planProgress; nothing otherwise, so pipes and --json - stay clean).
 *
 * Bad input throws PredictError (parallelism/predict/errors.ts), one line. `--json -` prints only
 * JSON on stdout: predict an object (step_time_s, tokens_per_s, tflops_per_gpu, mfu, memory_gib_per_gpu,
 * fits_in_memory, breakdown_s, ... see Prediction in parallelism/predict/step.ts), plan an array of
 * such objects, best first.
 */
import { InvalidArgumentError, type Command } from 'commander';
import { CLUSTER_PRESETS } from '../parallelism/predict/clusters.js';
import { PredictError } from '../parallelism/predict/errors.js';
import { MODEL_PRESETS } from '../parallelism/predict/models.js';
import { layoutString, plan } from '../parallelism/predict/plan.js';
import { predictStep, type Prediction, type PredictInput } from '../parallelism/predict/step.js';
import { writeOutput } from './output.js';

function num(what: string, integer = true) {
  return (v: string) => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || (integer && !Number.isInteger(n))) throw new InvalidArgumentError(`${what} must be ${integer ? 'an integer' : 'a number'}`);
    return n;
  };
}

function choice(what: string, values: readonly string[]) {
  return (v: string) => {
    if (!values.includes(v)) throw new InvalidArgumentError(`${what} must be one of ${values.join(', ')}`);
    return v;
  };
}

const GPUS = ['a100', 'h100', 'h200', 'b200', 'tpu-v4', 'tpu-v5p', 'tpu-v5e', 'tpu-v6e'];

interface CommonFlags {
  model: string;
  gpu: string;
  gpus: number;
  seq: number;
  globalBatch: number;
  cluster?: string;
  json?: string;
  attention?: 'flash' | 'unfused';
  cpComm?: 'ring' | 'allgather';
  tpOverlap?: boolean;
  gradBytes?: number;
  activationMemory?: 'megatron' | 'lean';
}

interface PredictFlags extends CommonFlags {
  tp?: number;
  pp?: number;
  dp?: number;
  cp?: number;
  ep?: number;
  vpp?: number;
  zero?: number;
  sequenceParallel?: boolean;
  microBatch?: number;
  recompute?: 'none' | 'selective' | 'full';
  schedule?: string;
  attentionFlops?: 'causal' | 'full';
  pipelineModel?: 'simulate' | 'formula' | 'auto';
}

function addCommon(c: Command): Command {
  return c
    .requiredOption('--model <NAME|FILE>', `model preset (${Object.keys(MODEL_PRESETS).join(', ')}) or a JSON file`)
    .requiredOption('--gpu <KIND>', GPUS.join('|'), (v: string) => v.toLowerCase())
    .requiredOption('--gpus <N>', 'number of GPUs', num('--gpus'))
    .requiredOption('--seq <S>', 'sequence length, tokens', num('--seq'))
    .requiredOption('--global-batch <B>', 'global batch, sequences', num('--global-batch'))
    .option('--cluster <PRESET|FILE>', `cluster preset (${CLUSTER_PRESETS.join(', ')}, llama3) or a JSON file; default: the GPU kind's standard cluster`)
    .option('--attention <IMPL>', 'flash (default) or unfused (softmax attention as in Megatron-LM 2021-22)', choice('--attention', ['flash', 'unfused']))
    .option('--cp-comm <KIND>', 'context-parallel attention: ring (default) or allgather (Llama 3)', choice('--cp-comm', ['ring', 'allgather']))
    .option('--tp-overlap', 'overlap TP collectives with the neighbouring GEMMs (default: exposed)')
    .option('--grad-bytes <2|4>', 'bytes per gradient element (default 4: fp32 main grads)', num('--grad-bytes'))
    .option('--activation-memory <KIND>', 'activation copies kept: megatron (default; Korthikanti et al.) or lean (norm outputs and the MLP activation recomputed in backward, as a compiled backward does)', choice('--activation-memory', ['megatron', 'lean']))
    .option('--json <FILE|->', 'write JSON to FILE, or only JSON to stdout with -');
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
const f3 = (x: number) => x.toFixed(3);
const int = (x: number) => Math.round(x).toLocaleString('en-US');

/** The text report of one prediction. */
export function predictionLines(p: Prediction): string[] {
  const out: string[] = [];
  out.push(`collemu predict: ${p.model} on ${p.gpus} x ${p.gpu} (cluster ${p.cluster}), seq ${p.seq}, global batch ${p.global_batch} sequences (${int(p.global_batch * p.seq)} tokens)`);
  out.push(`  cluster: ${p.cluster_description}`);
  out.push(`  layout: ${layoutString(p)}`);
  out.push('');
  out.push(`  step time        ${f3(p.step_time_s)} s`);
  out.push(`  tokens/s         ${int(p.tokens_per_s)}`);
  out.push(`  TFLOP/s per GPU  ${p.tflops_per_gpu.toFixed(1)} model${p.hardware_tflops_per_gpu !== p.tflops_per_gpu ? `, ${p.hardware_tflops_per_gpu.toFixed(1)} with recompute` : ''}`);
  out.push(`  MFU              ${pct(p.mfu)}${p.hfu !== p.mfu ? ` (HFU ${pct(p.hfu)})` : ''}`);
  const mg = p.memory_gib;
  out.push(`  memory per GPU   ${p.memory_gib_per_gpu.toFixed(2)} GiB of ${p.memory_usable_gib.toFixed(1)} usable (${p.memory_capacity_gib.toFixed(1)} GiB device memory): ${p.fits_in_memory ? 'fits' : 'does NOT fit'}`);
  out.push(`                   parameters ${mg.parameters.toFixed(2)}, gradients ${mg.gradients.toFixed(2)}, optimizer ${mg.optimizer.toFixed(2)}, activations ${mg.activations.toFixed(2)} GiB (${p.layout.activationMemory} accounting)`);
  out.push('');
  out.push('  breakdown of the step (critical pipeline rank):');
  const b = p.breakdown_s;
  const what: Record<string, string> = {
    compute: 'forward + backward kernels', recompute: 'activation recomputation', bubble: 'pipeline bubble',
    tp: 'exposed tensor-parallel communication', cp: 'exposed context-parallel communication', ep: 'exposed expert-parallel all-to-all',
    pp: 'stage-to-stage messages on the critical path', dp: 'exposed data-parallel communication', optimizer: 'optimizer step',
  };
  for (const [k, v] of Object.entries(b) as [string, number][]) {
    out.push(`    ${k.padEnd(10)} ${f3(v).padStart(9)} s  ${pct(v / p.step_time_s).padStart(6)}  ${what[k] ?? ''}`);
  }
  const pl = p.pipeline;
  if (pl.schedule !== 'none') {
    out.push(`  pipeline: ${pl.schedule}, ${p.layout.pp} ranks x ${pl.chunks_per_rank} chunk(s), ${pl.microbatches} microbatches, bubble fraction ${pl.bubble_fraction.toFixed(4)} (${pl.method}); layers per rank ${compactList(pl.layers_per_rank)}`);
  }
  for (const rc of p.rank_classes) {
    const m = rc.memory_gib;
    out.push(`  ${rc.name} (rank ${rc.rank}, ${rc.layers} layers): per microbatch F ${(rc.fwd_s * 1e3).toFixed(2)} ms, B ${(rc.bwd_input_s * 1e3).toFixed(2)} ms, W ${(rc.bwd_weight_s * 1e3).toFixed(2)} ms; ${+rc.inflight.toFixed(3)} microbatches (${rc.layer_microbatches} layer-microbatches) in flight; ${m.total.toFixed(2)} GiB`);
  }
  if (p.collectives.length) {
    out.push('');
    out.push('  collectives per step (one rank; TP calls for an even share of the layers): group, op, size per call, calls, algorithm, link classes, time per call, exposed');
    for (const c of p.collectives) {
      out.push(`    ${c.group.padEnd(9)} ${c.op.padEnd(38)} ${fmtBytes(c.bytes).padStart(9)} x${String(c.calls).padEnd(6)} ${c.size} ranks stride ${c.stride}, ${c.algo}, ${c.links.join(' + ') || '-'}, ${(c.time_s * 1e3).toFixed(3)} ms, ${f3(c.exposed_s)} s exposed`);
    }
  }
  out.push('');
  out.push(`  FLOPs per step: ${p.flops.model_per_step.toExponential(3)} model, ${p.flops.hardware_per_step.toExponential(3)} hardware; ${p.flops.convention}`);
  out.push('  MFU = model FLOPs / (step time x GPUs x dense BF16 peak); bf16 weights, activations and messages, fp32 gradients and Adam states');
  for (const n of p.notes) out.push(`  note: ${n}`);
  return out;
}

/**
 * The simulated schedule as one row per pipeline rank over `width` columns of equal time: a column
 * shows the kind of action that fills at least 3/4 of its busy time (F forward, B backward,
 * I input gradient, W weight gradient), '+' for a mix, '.' when the rank is idle most of it; then
 * each rank's busy share.
 */
export function timelineLines(p: Prediction, width = 100): string[] {
  const tl = p.pipeline.timeline;
  if (!tl) return [];
  let span = 0;
  for (const l of tl) for (const a of l) if (a.end > span) span = a.end;
  const col = span / width;
  const out = ['', `  pipeline timeline (simulated, ${p.pipeline.schedule}): ${width} columns of ${(col * 1e3).toFixed(2)} ms; F forward, B backward, I/W input/weight gradient, + mixed, . idle`];
  tl.forEach((l, r) => {
    const occ = Array.from({ length: width }, () => new Map<string, number>());
    let busy = 0;
    for (const a of l) {
      busy += a.end - a.start;
      for (let c = Math.floor(a.start / col); c < width && c * col < a.end; c++) {
        const ov = Math.min(a.end, (c + 1) * col) - Math.max(a.start, c * col);
        if (ov > 0) occ[c]!.set(a.kind, (occ[c]!.get(a.kind) ?? 0) + ov);
      }
    }
    const cells = occ.map((m) => {
      let best = '.', bt = 0, sum = 0;
      for (const [k, t] of m) { sum += t; if (t > bt) { best = k; bt = t; } }
      if (sum < col / 2) return '.';
      return bt >= 0.75 * sum ? best : '+';
    });
    out.push(`    rank ${String(r).padStart(String(tl.length - 1).length)}  ${cells.join('')}  busy ${pct(busy / span)}`);
  });
  return out;
}

function compactList(xs: number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < xs.length;) {
    let j = i;
    while (j + 1 < xs.length && xs[j + 1] === xs[i]) j++;
    parts.push(j > i ? `${xs[i]} x${j - i + 1}` : String(xs[i]));
    i = j + 1;
  }
  return parts.join(', ');
}

function fmtBytes(b: number): string {
  if (b >= 1e9) return `${(b / 1e9).toFixed(2)} GB`;
  if (b >= 1e6) return `${(b / 1e6).toFixed(2)} MB`;
  if (b >= 1e3) return `${(b / 1e3).toFixed(1)} KB`;
  return `${Math.round(b)} B`;
}

/** Where planProgress draws: process.stderr, or a stand-in in the tests. */
export interface ProgressStream {
  isTTY?: boolean;
  columns?: number;
  write(s: string): unknown;
}

/**
 * The planner's progress display: on a terminal, one line redrawn in place ("\r" + text + erase to
 * the end of the line), cut to the terminal's width so that it never wraps; finish() erases it
 * before the results are printed. Off a terminal (a pipe, a file, --json - on a pipe) both are
 * no-ops and `onProgress` is undefined (plan() then skips the calls).
 */
export function planProgress(stream: ProgressStream): { onProgress?: (done: number, total: number, phase: string) => void; finish: () => void } {
  if (stream.isTTY !== true) return { finish: () => {} };
  let drawn = false;
  return {
    onProgress: (done, total, phase) => {
      const text = `collemu plan: ${phase} ${done.toLocaleString('en-US')}/${total.toLocaleString('en-US')} candidate layouts`;
      const width = stream.columns && stream.columns > 1 ? stream.columns - 1 : text.length;
      stream.write(`\r${text.slice(0, width)}\x1b[K`);
      drawn = true;
    },
    finish: () => {
      if (drawn) stream.write('\r\x1b[K');
      drawn = false;
    },
  };
}

function emitJson(json: string, value: unknown): void {
  const text = JSON.stringify(value, null, 2) + '\n';
  if (json === '-') process.stdout.write(text);
  else writeOutput(json, text, '--json');
}

export function registerPredictCommands(program: Command): void {
  addCommon(
    program
      .command('predict')
      .description('analytic step time, tokens/s, TFLOP/s per GPU, MFU and memory per GPU of one training layout'),
  )
    .option('--tp <T>', 'tensor parallel (1)', num('--tp'))
    .option('--pp <P>', 'pipeline parallel (1)', num('--pp'))
    .option('--dp <D>', 'data parallel (default gpus / (tp cp pp))', num('--dp'))
    .option('--cp <C>', 'context parallel (1)', num('--cp'))
    .option('--ep <E>', 'expert parallel, carved out of dp (1)', num('--ep'))
    .option('--vpp <V>', 'model chunks per pipeline rank, interleaved schedule (default: the fastest of 1F1B and interleaved with v dividing the layers per rank)', num('--vpp'))
    .option('--zero <0..3>', 'ZeRO / FSDP level of the data-parallel dimension (0)', num('--zero'))
    .option('--sequence-parallel', 'Megatron sequence parallelism in the TP group')
    .option('--micro-batch <b>', 'micro-batch, sequences (1)', num('--micro-batch'))
    .option('--recompute <POLICY>', 'activation recomputation: none (default), selective, full', choice('--recompute', ['none', 'selective', 'full']))
    .option('--schedule <NAME>', 'pipeline schedule: gpipe, 1f1b, interleaved, zb-h1, zb-v (default: 1f1b, or interleaved with --vpp > 1)')
    .option('--attention-flops <KIND>', 'attention FLOPs counted for MFU: causal (default, Megatron-LM) or full (Narayanan et al. 2021)', choice('--attention-flops', ['causal', 'full']))
    .option('--pipeline-model <KIND>', 'auto (default), simulate or formula', choice('--pipeline-model', ['auto', 'simulate', 'formula']))
    .option('--timeline', 'print the simulated pipeline schedule per rank (JSON: pipeline.timeline)')
    .action((f: PredictFlags & { timeline?: boolean }) => {
      const inp: PredictInput = {
        model: f.model, gpu: f.gpu, gpus: f.gpus, cluster: f.cluster, seq: f.seq, globalBatch: f.globalBatch,
        tp: f.tp, pp: f.pp, dp: f.dp, cp: f.cp, ep: f.ep, vpp: f.vpp, zero: f.zero, sequenceParallel: f.sequenceParallel ?? false,
        microBatch: f.microBatch, recompute: f.recompute, schedule: f.schedule, attention: f.attention, cpComm: f.cpComm,
        tpOverlap: f.tpOverlap ?? false, gradBytes: f.gradBytes, attentionFlops: f.attentionFlops, pipelineModel: f.pipelineModel,
        activationMemory: f.activationMemory, timeline: f.timeline ?? false,
      };
      const p = predictStep(inp);
      if (f.timeline && !p.pipeline.timeline) {
        throw new PredictError(p.pipeline.schedule === 'none'
          ? '--timeline needs pipeline parallelism (--pp > 1)'
          : `--timeline needs the simulated schedule, and this one (${p.pipeline.method}) was not simulated: try --pipeline-model simulate`);
      }
      if (f.json !== '-') {
        for (const l of predictionLines(p)) console.log(l);
        if (p.pipeline.timeline) for (const l of timelineLines(p)) console.log(l);
      }
      if (f.json) emitJson(f.json, p);
    });

  addCommon(
    program
      .command('plan')
      .description('search parallel layouts (tp, cp, pp, dp, ZeRO, vpp, micro-batch, recompute, schedule) that fit in memory; rank by predicted MFU'),
  )
    .option('--top <K>', 'layouts to show (5)', num('--top'), 5)
    .action((f: CommonFlags & { top: number }) => {
      const prog = planProgress(process.stderr);
      let r: ReturnType<typeof plan>;
      try {
        r = plan({
          model: f.model, gpu: f.gpu, gpus: f.gpus, seq: f.seq, globalBatch: f.globalBatch, cluster: f.cluster, top: f.top,
          attention: f.attention, cpComm: f.cpComm, tpOverlap: f.tpOverlap ?? false, gradBytes: f.gradBytes,
          activationMemory: f.activationMemory, progress: prog.onProgress,
        });
      } finally {
        prog.finish();
      }
      if (f.json !== '-') {
        const first = r.layouts[0];
        console.log(`collemu plan: ${first?.model ?? f.model} on ${f.gpus} x ${f.gpu}${first ? ` (cluster ${first.cluster})` : ''}, seq ${f.seq}, global batch ${f.globalBatch} sequences`);
        console.log(`  ${r.enumerated} layouts enumerated, ${r.screened} passed the memory screen, ${r.fitting} fit after timing; ${r.seconds.toFixed(2)} s`);
        console.log('');
        if (r.layouts.length) {
          console.log('  rank    MFU   step(s)     tokens/s  TFLOP/s  mem(GiB)  layout');
          r.layouts.forEach((p, i) => {
            console.log(`  ${String(i + 1).padStart(4)} ${pct(p.mfu).padStart(6)} ${f3(p.step_time_s).padStart(9)} ${int(p.tokens_per_s).padStart(12)} ${p.tflops_per_gpu.toFixed(0).padStart(8)} ${p.memory_gib_per_gpu.toFixed(1).padStart(9)}  ${layoutString(p)}`);
          });
          console.log('');
        }
        for (const l of r.explanation) console.log(l);
      }
      if (f.json) emitJson(f.json, r.layouts);
      // no layout fits: exit 1 whether the answer went to the table or to --json (an empty array)
      if (!r.layouts.length) process.exitCode = 1;
    });
}

export { PredictError };
