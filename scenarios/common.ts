/**
 * What every scenario shares: the Scenario shape that `collemu scenario` runs, a plain-text table
 * renderer, number formats, a one-line summary of a Prediction, and the pipeline-free layout search
 * (`bestWithoutPipeline`: the planner, parallelism/predict/plan.ts, with its degree limits).
 *
 * A scenario states a question, runs the models or the emulator, and returns its text lines (tables
 * and conclusions, every number computed in the run) and a JSON value with the same numbers.
 */
import { layoutString, plan, resolveCluster, type Cluster, type Prediction } from '../parallelism/predict/index.js';

export interface ScenarioRunOptions {
  /** comm-profile: executor of the small-scale training run (default 'emulate': worker threads) */
  executor?: 'emulate' | 'simulate';
}

export interface ScenarioOutput {
  /** the report: tables and conclusions, ready to print */
  lines: string[];
  /** the same numbers as JSON (`collemu scenario run NAME --json -`) */
  json: unknown;
}

export interface Scenario {
  name: string;
  /** the question the scenario answers, one sentence */
  question: string;
  run(opts?: ScenarioRunOptions): Promise<ScenarioOutput>;
}

// ------------------------------------------------------------------ text tables

export interface Column {
  header: string;
  /** left-align (text); numbers are right-aligned */
  left?: boolean;
}

/** Render rows of cells under headers, two spaces between columns, indented by two. */
export function renderTable(cols: Column[], rows: string[][]): string[] {
  const w = cols.map((c, i) => Math.max(c.header.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => '  ' + cells.map((s, i) => (cols[i]!.left ? s.padEnd(w[i]!) : s.padStart(w[i]!))).join('  ').trimEnd();
  return [line(cols.map((c) => c.header)), line(w.map((n) => '-'.repeat(n))), ...rows.map(line)];
}

export const pct = (x: number, digits = 1): string => `${(100 * x).toFixed(digits)}%`;
export const fixed = (x: number, digits: number): string => x.toFixed(digits);
export const int = (x: number): string => Math.round(x).toLocaleString('en-US');

/** Bytes in binary units: 512 B, 16.0 KiB, 1.50 MiB, 2.00 GiB. */
export function bytes(b: number): string {
  if (b >= 2 ** 30) return `${(b / 2 ** 30).toFixed(2)} GiB`;
  if (b >= 2 ** 20) return `${(b / 2 ** 20).toFixed(2)} MiB`;
  if (b >= 1024) return `${(b / 1024).toFixed(1)} KiB`;
  return `${Math.round(b)} B`;
}

/** Seconds with a unit that keeps three significant figures readable. */
export function seconds(s: number): string {
  if (s >= 1) return `${s.toFixed(3)} s`;
  if (s >= 1e-3) return `${(s * 1e3).toFixed(2)} ms`;
  return `${(s * 1e6).toFixed(2)} us`;
}

// ------------------------------------------------------------------ predictions

export type BreakdownPart = keyof Prediction['breakdown_s'];

/** A Prediction in the few numbers the scenario tables show. */
export interface LayoutSummary {
  /** layoutString() of the planner */
  layout: string;
  tp: number;
  cp: number;
  pp: number;
  dp: number;
  ep: number;
  vpp: number;
  zero: number;
  micro_batch: number;
  microbatches: number;
  recompute: string;
  schedule: string;
  sequence_parallel: boolean;
  mfu: number;
  step_time_s: number;
  tokens_per_s: number;
  tokens_per_s_per_gpu: number;
  tflops_per_gpu: number;
  memory_gib_per_gpu: number;
  fits_in_memory: boolean;
  /** breakdown_s as fractions of the step */
  shares: Record<BreakdownPart, number>;
  /** the non-compute parts of the step, largest first (those above 0.5% of the step) */
  overheads: { part: BreakdownPart; share: number }[];
}

export function summarize(p: Prediction): LayoutSummary {
  const l = p.layout;
  const shares = {} as Record<BreakdownPart, number>;
  for (const [k, v] of Object.entries(p.breakdown_s) as [BreakdownPart, number][]) shares[k] = v / p.step_time_s;
  const overheads = (Object.entries(shares) as [BreakdownPart, number][])
    .filter(([k, v]) => k !== 'compute' && v > 0.005)
    .sort((a, b) => b[1] - a[1])
    .map(([part, share]) => ({ part, share }));
  return {
    layout: layoutString(p), tp: l.tp, cp: l.cp, pp: l.pp, dp: l.dp, ep: l.ep, vpp: l.vpp, zero: l.zero, micro_batch: l.microBatch,
    microbatches: p.microbatches, recompute: l.recompute, schedule: l.schedule, sequence_parallel: l.sequenceParallel,
    mfu: p.mfu, step_time_s: p.step_time_s, tokens_per_s: p.tokens_per_s, tokens_per_s_per_gpu: p.tokens_per_s / p.gpus,
    tflops_per_gpu: p.tflops_per_gpu, memory_gib_per_gpu: p.memory_gib_per_gpu, fits_in_memory: p.fits_in_memory, shares, overheads,
  };
}

/** A layout in a table cell: "tp 2 cp 1 pp 4 dp 32, zero 1, interleaved v=8, mb 8 (m 8), SP". */
export function compactLayout(s: LayoutSummary): string {
  const sched = s.schedule === 'none' ? 'no PP' : s.schedule === 'interleaved' ? `interleaved v=${s.vpp}` : s.schedule;
  return `${meshText(s)}, zero ${s.zero}, ${sched}, mb ${s.micro_batch} (m ${s.microbatches})${s.recompute !== 'none' ? `, recompute ${s.recompute}` : ''}${s.sequence_parallel ? ', SP' : ''}`;
}

/** "tp 12%, bubble 5%" (the first n overheads), or "none". */
export function overheadText(s: LayoutSummary, n = 3): string {
  const o = s.overheads.slice(0, n);
  return o.length ? o.map((x) => `${x.part} ${pct(x.share, 0)}`).join(', ') : 'none';
}

/** "tp 8 cp 1 pp 16 dp 64" (+ "ep 8" for MoE) */
export function meshText(s: { tp: number; cp: number; pp: number; dp: number; ep?: number }): string {
  return `tp ${s.tp} cp ${s.cp} pp ${s.pp} dp ${s.dp}${(s.ep ?? 1) > 1 ? ` ep ${s.ep}` : ''}`;
}

/** Size of the high-bandwidth domain of a cluster: a node or rack (level 0), or the whole TPU slice. */
export function domainSize(c: Cluster): number {
  return c.torus ? c.gpus : Math.min(c.levels[0]!.size, c.gpus);
}

export interface Workload {
  model: string;
  gpu: string;
  cluster: string;
  gpus: number;
  seq: number;
  globalBatch: number;
}

/**
 * The best layout without pipeline parallelism (`dataOnly`: pure data parallelism, tp = cp = pp = 1),
 * from the planner restricted to those degrees: the same candidates, memory screen and ranking.
 */
export function bestWithoutPipeline(w: Workload, opts: { dataOnly?: boolean } = {}): Prediction | undefined {
  const r = plan({
    model: w.model, gpu: w.gpu, gpus: w.gpus, seq: w.seq, globalBatch: w.globalBatch, cluster: resolveCluster(w.cluster, w.gpu, w.gpus),
    top: 1, limits: opts.dataOnly ? { tp: 1, cp: 1, pp: 1 } : { pp: 1 },
  });
  return r.layouts[0];
}

/** Wrap prose at `width` columns: the first line starts with `first`, the others with `rest`. */
export function wrap(text: string, first = '  - ', rest = '    ', width = 110): string[] {
  const out: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    const indent = out.length === 0 ? first : rest;
    if (line && indent.length + line.length + 1 + word.length > width) {
      out.push(indent + line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) out.push((out.length === 0 ? first : rest) + line);
  return out;
}
