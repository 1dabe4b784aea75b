/**
 * `collemu pipeline`: pipeline-parallel schedules as data (parallelism/schedules.ts), run on the IR
 * with the one-thread simulator (parallelism/pipeline.ts).
 *
 *   collemu pipeline --schedule gpipe|1f1b|interleaved|zb-h1|zb-v --stages P --microbatches M
 *                    [--virtual V] [--csv-out F] [--from-csv F] [--json FILE|-]
 *
 * --stages P is the pipeline depth p (the number of pipeline ranks, Megatron's pipeline stages and
 * the p of formulas.md); interleaved places V model chunks (virtual stages) on each rank, zb-v two.
 * Prints an ASCII timeline (one row per rank, one cell per time slot), the measured bubble fraction
 * next to the closed form, and the peak number of microbatches in flight per rank. --json keys:
 * schedule, stages (p), model_chunks (the model's pieces: p, or p V), microbatches, bubble_fraction, formula_bubble_fraction (null without a closed
 * form), peak_inflight (per rank, in microbatches of the rank's share of the model).
 */
import { readFileSync } from 'node:fs';
import { InvalidArgumentError, type Command } from 'commander';
import { formulaBubble, formulaPeakInflight, renderTimeline, runSchedule, timelineSlot, type PipelineTimes } from '../parallelism/pipeline.js';
import {
  fromCsv, makeSchedule, peakInflight, SCHEDULE_NAMES, ScheduleError, toCsv, validateSchedule, type Schedule,
} from '../parallelism/schedules.js';
import { parseBytes, UsageError } from './bench.js';
import { writeOutput } from './output.js';

function num(what: string, integer = false) {
  return (v: string) => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || (integer && !Number.isInteger(n))) throw new InvalidArgumentError(`${what} must be ${integer ? 'an integer' : 'a number'}`);
    return n;
  };
}

interface PipelineFlags {
  schedule?: string;
  stages?: number;
  microbatches?: number;
  virtual?: number;
  fromCsv?: string;
  csvOut?: string;
  json?: string;
  tF: number;
  tB: number;
  tW: number;
  p2pLatency: number;
  p2pBytes: string;
  linkBw: number;
  peakTflops: number;
}

const FORMULA_TEXT: Record<string, string> = {
  gpipe: '(p-1)/m',
  '1f1b': '(p-1)/m',
  interleaved: '(p-1)/(v m)',
  'zb-h1': '(p-1)(T_F+T_B-T_W) / (m (T_F+T_B+T_W))',
  'zb-v': '(p-1)/(6m) at T_F = T_B = T_W, m >= 2p-1',
};
const PEAK_TEXT: Record<string, string> = {
  gpipe: 'm', '1f1b': 'min(m, p)', interleaved: 'p (1 + (p-1)/(p v))', 'zb-h1': 'p', 'zb-v': 'p (as 1F1B)',
};

const fmt = (x: number, d = 4) => {
  if (Number.isInteger(x)) return String(x);
  const t = x.toFixed(d);
  return /^-0\.0*$/.test(t) ? t.slice(1) : t;
};
/** JSON numbers without float noise from summing decimal times (12 significant digits) */
const clean = (x: number) => Number(x.toPrecision(12));
const ms = (s: number) => `${+(s * 1e3).toPrecision(6)} ms`;

/** Largest schedule (pipeline ranks x microbatches x chunks per rank) the command builds. */
export const PIPELINE_MAX_ACTIONS = 1_000_000;

function loadSchedule(f: PipelineFlags): Schedule {
  if (f.schedule !== undefined && !(SCHEDULE_NAMES as readonly string[]).includes(f.schedule)) {
    throw new UsageError(`unknown schedule '${f.schedule}' (known: ${SCHEDULE_NAMES.join(', ')})`);
  }
  if (f.fromCsv !== undefined) {
    let text: string;
    try {
      text = readFileSync(f.fromCsv, 'utf8');
    } catch (e) {
      throw new UsageError(`cannot read --from-csv ${f.fromCsv}: ${(e as Error).message}`);
    }
    const s = fromCsv(text, f.fromCsv);
    if (f.stages !== undefined && f.stages !== s.ranks) throw new UsageError(`--stages ${f.stages}, but ${f.fromCsv} has ${s.ranks} pipeline ranks (rows)`);
    if (f.microbatches !== undefined && f.microbatches !== s.microbatches) throw new UsageError(`--microbatches ${f.microbatches}, but ${f.fromCsv} has ${s.microbatches}`);
    if (f.virtual !== undefined && f.virtual * s.ranks !== s.stages) throw new UsageError(`--virtual ${f.virtual}, but ${f.fromCsv} has ${s.stages} stages on ${s.ranks} ranks`);
    if (f.schedule !== undefined) s.name = f.schedule;
    return s;
  }
  if (f.schedule === undefined) throw new UsageError('give --schedule NAME (with --stages and --microbatches) or --from-csv FILE');
  if (f.stages === undefined) throw new UsageError(`--schedule ${f.schedule} needs --stages P (pipeline ranks)`);
  if (f.microbatches === undefined) throw new UsageError(`--schedule ${f.schedule} needs --microbatches M`);
  const actions = f.stages * f.microbatches * (f.virtual ?? (f.schedule === 'zb-v' ? 2 : 1));
  if (actions > PIPELINE_MAX_ACTIONS) {
    throw new UsageError(`--stages ${f.stages} x --microbatches ${f.microbatches}${f.virtual ? ` x --virtual ${f.virtual}` : ''} is ${actions} forward passes to schedule: more than the ${PIPELINE_MAX_ACTIONS} collemu draws and times`);
  }
  return makeSchedule(f.schedule, f.stages, f.microbatches, f.virtual);
}

export function registerPipeline(program: Command): void {
  program
    .command('pipeline')
    .description('pipeline schedules as data: generate (or import a PyTorch CSV), validate, run on the IR; ASCII timeline, bubble fraction, in-flight microbatches')
    .option('--schedule <NAME>', `schedule generator: ${SCHEDULE_NAMES.join('|')} (with --from-csv: whose closed form to compare with)`)
    .option('--stages <P>', 'pipeline depth p: pipeline ranks (interleaved: v stages on each; zb-v: 2)', num('--stages', true))
    .option('--microbatches <M>', 'microbatches per iteration', num('--microbatches', true))
    .option('--virtual <V>', 'interleaved: model chunks (virtual stages) per rank (default 2)', num('--virtual', true))
    .option('--from-csv <FILE>', "import a PyTorch pipeline schedule CSV (one row per rank, cells like 0F3, 2I0, 2W0, 1B5; empty = idle)")
    .option('--csv-out <FILE>', 'write the schedule as PyTorch CSV')
    .option('--t-f <ms>', 'forward time of one stage for one microbatch, ms', num('--t-f'), 1)
    .option('--t-b <ms>', 'backward-for-inputs time (I), ms; a full backward B costs t-b + t-w', num('--t-b'), 1)
    .option('--t-w <ms>', 'backward-for-weights time (W), ms', num('--t-w'), 1)
    .option('--p2p-latency <us>', 'latency of each activation / gradient message, us', num('--p2p-latency'), 0)
    .option('--p2p-bytes <size>', 'bytes per activation / gradient message (suffixes K, M, G)', '0')
    .option('--link-bw <GB/s>', 'link bandwidth for the messages', num('--link-bw'), 450)
    .option('--peak-tflops <TFLOP/s>', 'compute ops are T x peak flops, timed at this peak', num('--peak-tflops'), 1000)
    .option('--json <FILE|->', 'write the result as JSON to FILE, or to stdout with -')
    .action((f: PipelineFlags) => {
      try {
        runPipelineCommand(f);
      } catch (e) {
        if (e instanceof ScheduleError) throw new UsageError(e.message);
        throw e;
      }
    });
}

function runPipelineCommand(f: PipelineFlags): void {
  for (const [k, v] of [['--t-f', f.tF], ['--t-b', f.tB], ['--t-w', f.tW], ['--p2p-latency', f.p2pLatency]] as const) {
    if (!(v >= 0)) throw new UsageError(`${k} must be >= 0 (got ${v})`);
  }
  if (!(f.tF + f.tB + f.tW > 0)) throw new UsageError('--t-f, --t-b and --t-w cannot all be 0');
  if (!(f.linkBw > 0)) throw new UsageError(`--link-bw must be > 0 GB/s (got ${f.linkBw})`);
  if (!(f.peakTflops > 0)) throw new UsageError(`--peak-tflops must be > 0 (got ${f.peakTflops})`);
  const p2pBytes = parseBytes(f.p2pBytes, '--p2p-bytes');
  const s = loadSchedule(f);
  try {
    validateSchedule(s);
  } catch (e) {
    if (e instanceof ScheduleError && f.fromCsv !== undefined) throw new ScheduleError(`${f.fromCsv}: ${e.message}`);
    throw e;
  }
  const times: PipelineTimes = { tF: f.tF * 1e-3, tB: f.tB * 1e-3, tW: f.tW * 1e-3 };
  const run = runSchedule(s, {
    times, validated: true, peakFlops: f.peakTflops * 1e12, p2pBytes, p2pLatency: f.p2pLatency * 1e-6, linkBw: f.linkBw * 1e9,
  });
  const p = s.ranks, m = s.microbatches;
  const v = s.stages / s.ranks;
  const gen = f.schedule;
  const formula = gen !== undefined ? formulaBubble(gen, p, m, v, times) : undefined;
  const peak = peakInflight(s);
  const peakFormula = gen !== undefined ? formulaPeakInflight(gen, p, m, v) : undefined;

  if (f.csvOut) writeOutput(f.csvOut, toCsv(s), '--csv-out');
  const result = {
    schedule: gen ?? s.name,
    stages: p,
    model_chunks: s.stages,
    microbatches: m,
    bubble_fraction: clean(run.bubbleFraction),
    formula_bubble_fraction: formula === undefined ? null : clean(formula),
    peak_inflight: peak.microbatches.map(clean),
  };
  const toStdout = f.json === '-';
  if (!toStdout) {
    const out: string[] = [];
    const multi = s.stages > s.ranks || s.stageToRank.some((r, st) => r !== st);
    const place = multi
      ? `${s.stages} stages, ${Number.isInteger(v) ? v : fmt(v, 2)} per rank (stage -> rank: ${s.stageToRank.map((r, st) => `${st}:${r}`).join(' ')})`
      : `${s.stages} stages, stage r on rank r`;
    out.push(`collemu pipeline: ${gen ?? 'custom'}${f.fromCsv ? ` from ${f.fromCsv}` : ''}: p = ${p} pipeline ranks, ${place}, m = ${m} microbatches`);
    const comm = p2pBytes === 0 && f.p2pLatency === 0 ? 'messages free' : `messages ${p2pBytes} B, ${f.p2pLatency} us, ${f.linkBw} GB/s`;
    out.push(`T_F ${ms(times.tF)}, T_B (input grad, I) ${ms(times.tB)}, T_W (weight grad) ${ms(times.tW)}, full backward B = T_B + T_W; ${comm}`);
    const slot = timelineSlot(times);
    out.push(`timeline, one cell = ${ms(slot)}: ${multi ? '2F3 = stage 2 forward of microbatch 3' : 'F3 = forward of microbatch 3'}, B full backward, I input-grad backward, W weight-grad backward, '.' idle`);
    out.push('');
    out.push(...renderTimeline(run, slot));
    out.push('');
    const ftext = gen !== undefined && FORMULA_TEXT[gen] ? ` ${FORMULA_TEXT[gen]}` : '';
    out.push(`bubble fraction (idle / compute per rank, formulas.md): measured ${fmt(run.bubbleFraction)}, formula${ftext} = ${formula === undefined ? `n/a (${gen === undefined ? 'an imported schedule: give --schedule NAME to compare with a closed form' : 'no closed form for these times'})` : fmt(formula)}`);
    if (gen === 'zb-h1' && !(times.tW <= Math.min(times.tF, times.tB))) out.push('  note: the zb-h1 closed form holds for T_W <= min(T_F, T_B); here the deferred W do not fit the bubbles');
    out.push(`  makespan ${ms(run.makespan)}, compute per rank ${run.busy.every((b) => Math.abs(b - run.busy[0]!) < 1e-12) ? ms(run.busy[0]!) : run.busy.map(ms).join(', ')}; idle share of the makespan ${fmt(run.idleShare)}; counted per rank from its first to its last action (zero-bubble papers) ${fmt(run.spanBubbleFraction)}`);
    const pk = peak.microbatches.map((x) => fmt(x, 2)).join(' ');
    const chunks = multi ? ` (stage activations: ${peak.chunks.join(' ')})` : '';
    const pf = peakFormula !== undefined && gen !== undefined ? `; formulas.md rank 0: ${PEAK_TEXT[gen]} = ${fmt(peakFormula, 2)}` : '';
    out.push(`peak in-flight microbatches per rank (F done, backward for inputs not yet): ${pk}${chunks}${pf}`);
    if (f.csvOut) out.push(`wrote ${f.csvOut} (PyTorch schedule CSV, ${p} rows)`);
    process.stdout.write(out.join('\n') + '\n');
  }
  if (f.json) {
    const text = JSON.stringify(result, null, 2) + '\n';
    if (toStdout) process.stdout.write(text);
    else writeOutput(f.json, text, '--json');
  }
}
