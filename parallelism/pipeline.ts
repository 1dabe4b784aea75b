/**
 * Pipeline schedules on the IR: compile a schedule (parallelism/schedules.ts) to per-rank programs,
 * run them with the one-thread simulator, and measure the bubble.
 *
 * Compilation, per rank, per action in the rank's order:
 *  - receive what the action needs from another rank: F(s, j) the activation of F(s-1, j) from the
 *    rank holding stage s-1; B/I(s, j) the gradient of B/I(s+1, j) from the rank holding stage s+1
 *    (nothing when that stage is on the same rank: the rank's own order carries the dependency);
 *  - a `compute` op of flops = T x peak (bytes 0), labelled like 'F s3 m5', where T is T_F for F,
 *    T_B for I, T_W for W and T_B + T_W for a full backward B (T_B is the input-gradient time, as in
 *    formulas.md and the zero-bubble paper, so B = I + W);
 *  - send the result on: the activation of F(s, j) to stage s+1's rank, the gradient of B/I(s, j) to
 *    stage s-1's rank.
 * The IR matches the messages of a directed pair in FIFO order and a recv names its source, so the
 * receiver posts its recvs in the sender's send order: before an action it receives every message
 * from that sender up to and including the one it needs. The earlier ones were sent first, so they
 * have arrived by then (the sender's port is FIFO): this adds no waiting and no deadlock.
 * Messages are p2pBytes (default 0) over a flat topology with latency p2pLatency (default 0), so by
 * default communication is free and the timeline is the schedule's pure compute dependency graph.
 */
import { ELEM_BYTES, type Program } from '../runtime/ir.js';
import { simulate } from '../runtime/simulate.js';
import { makeTopology } from '../runtime/topology.js';
import type { TraceEvent } from '../runtime/trace.js';
import { actionString, validateSchedule, type Action, type Schedule, type ScheduleName } from './schedules.js';

export interface PipelineTimes {
  /** forward time of one stage for one microbatch, seconds */
  tF: number;
  /** backward for inputs (I), seconds; a full backward B costs tB + tW */
  tB: number;
  /** backward for weights (W), seconds */
  tW: number;
}

export const DEFAULT_TIMES: PipelineTimes = { tF: 1e-3, tB: 1e-3, tW: 1e-3 };

export interface RunPipelineOptions {
  times?: Partial<PipelineTimes>;
  /** FLOP/s that compute ops are timed at (flops = T x peak); default 1e15 */
  peakFlops?: number;
  /** bytes per activation / gradient message (default 0) */
  p2pBytes?: number;
  /** per-message latency, seconds (default 0) */
  p2pLatency?: number;
  /** link bandwidth, bytes/s (default 450e9) */
  linkBw?: number;
  /** skip validateSchedule (already validated) */
  validated?: boolean;
}

export interface TimedAction {
  action: Action;
  rank: number;
  /** virtual seconds */
  start: number;
  end: number;
}

export interface PipelineRun {
  schedule: Schedule;
  times: PipelineTimes;
  /** per rank, its compute actions with virtual start/end, in order */
  timeline: TimedAction[][];
  /** end of the last action on any rank, seconds */
  makespan: number;
  /** per rank, seconds of compute */
  busy: number[];
  /**
   * Bubble fraction, formulas.md's convention ("of ideal"): idle time over compute time,
   *     sum_r (makespan - busy_r) / sum_r busy_r,
   * i.e. the mean over ranks of the idle time, divided by the mean compute time per rank (the
   * ideal, bubble-free iteration time). For 1F1B this is (p-1)/m: with p = 4, m = 8, 0.375.
   */
  bubbleFraction: number;
  /** the idle share of the makespan, 1 - sum_r busy_r / (p makespan) = b / (1 + b) for b above */
  idleShare: number;
  /**
   * The zero-bubble papers' count: each rank from its own first action's start to its own last
   * action's end (iterations tiled as a parallelogram, no barrier between them):
   * sum_r (span_r - busy_r) / sum_r busy_r. Equal to bubbleFraction for schedules where rank 0 starts
   * first and ends last (GPipe, 1F1B, interleaved, ZB-H1); 0 for ZB-V with T_F = T_B = T_W.
   */
  spanBubbleFraction: number;
  /** the simulator's trace events, compute ops labelled like 'F s3 m5' */
  events: TraceEvent[];
}

export const actionLabel = (a: Action): string => `${a.kind} s${a.stage} m${a.mb}`;

export function actionTime(a: Action, t: PipelineTimes): number {
  switch (a.kind) {
    case 'F': return t.tF;
    case 'I': return t.tB;
    case 'W': return t.tW;
    case 'B': return t.tB + t.tW;
  }
}

function resolveTimes(o: RunPipelineOptions): PipelineTimes {
  const t = { ...DEFAULT_TIMES, ...(o.times ?? {}) };
  for (const [k, v] of Object.entries(t)) {
    if (!(v >= 0) || !Number.isFinite(v)) throw new RangeError(`pipeline time ${k} must be a finite number >= 0 (got ${v})`);
  }
  return t;
}

/** Per-rank IR programs for a (valid) schedule. */
export function compileSchedule(s: Schedule, opts: RunPipelineOptions = {}): Program[] {
  const t = resolveTimes(opts);
  const peak = opts.peakFlops ?? 1e15;
  const len = Math.ceil((opts.p2pBytes ?? 0) / ELEM_BYTES);
  const rankOf = (stage: number) => s.stageToRank[stage]!;
  const last = s.stages - 1;
  // the message an action produces, and the one it needs: [id, peer rank]
  const produces = (a: Action, r: number): [string, number] | undefined => {
    if (a.kind === 'F' && a.stage < last && rankOf(a.stage + 1) !== r) return [`F${a.stage}:${a.mb}`, rankOf(a.stage + 1)];
    if ((a.kind === 'B' || a.kind === 'I') && a.stage > 0 && rankOf(a.stage - 1) !== r) return [`G${a.stage}:${a.mb}`, rankOf(a.stage - 1)];
    return undefined;
  };
  const needs = (a: Action, r: number): [string, number] | undefined => {
    if (a.kind === 'F' && a.stage > 0 && rankOf(a.stage - 1) !== r) return [`F${a.stage - 1}:${a.mb}`, rankOf(a.stage - 1)];
    if ((a.kind === 'B' || a.kind === 'I') && a.stage < last && rankOf(a.stage + 1) !== r) return [`G${a.stage + 1}:${a.mb}`, rankOf(a.stage + 1)];
    return undefined;
  };
  const p = s.ranks;
  const sendOrder = new Map<number, string[]>(); // src * p + dst -> message ids in send order
  for (let r = 0; r < p; r++) {
    for (const a of s.actions[r]!) {
      const m = produces(a, r);
      if (!m) continue;
      const k = r * p + m[1];
      let l = sendOrder.get(k);
      if (!l) sendOrder.set(k, (l = []));
      l.push(m[0]);
    }
  }
  const programs: Program[] = [];
  for (let r = 0; r < p; r++) {
    const prog: Program = [];
    const received = new Map<number, number>(); // src -> messages received from src so far
    for (const a of s.actions[r]!) {
      const need = needs(a, r);
      if (need) {
        const [id, src] = need;
        const order = sendOrder.get(src * p + r) ?? [];
        let next = received.get(src) ?? 0;
        const at = order.indexOf(id);
        if (at < 0) throw new Error(`rank ${r}: ${actionString(a)} needs message ${id} from rank ${src}, which rank ${src} does not send`);
        // at < next: already received, ahead of an earlier need
        for (; next <= at; next++) prog.push({ k: 'recv', peer: src, dst: { buf: 'in', off: 0, len } });
        received.set(src, next);
      }
      prog.push({ k: 'compute', flops: actionTime(a, t) * peak, bytes: 0, label: actionLabel(a) });
      const out = produces(a, r);
      if (out) prog.push({ k: 'send', peer: out[1], src: { buf: 'out', off: 0, len } });
    }
    programs.push(prog);
  }
  return programs;
}

/** Validate, compile and simulate a schedule; returns the timeline and the measured bubble. */
export function runSchedule(s: Schedule, opts: RunPipelineOptions = {}): PipelineRun {
  if (!opts.validated) validateSchedule(s);
  const times = resolveTimes(opts);
  const peak = opts.peakFlops ?? 1e15;
  const programs = compileSchedule(s, opts);
  const topo = makeTopology('flat', {
    ranks: s.ranks, linkBw: (opts.linkBw ?? 450e9) / 1e9, linkLatency: (opts.p2pLatency ?? 0) * 1e6,
  });
  const res = simulate({ topo, programs, trace: true, peakFlops: peak });
  const events = res.events ?? [];
  const timeline: TimedAction[][] = s.actions.map(() => []);
  const next = new Array<number>(s.ranks).fill(0);
  for (const e of events) {
    if (e.kind !== 'compute') continue;
    const r = e.rank;
    const a = s.actions[r]![next[r]!++]!;
    e.label = actionLabel(a);
    timeline[r]!.push({ action: a, rank: r, start: e.vStart, end: e.vEnd });
  }
  for (let r = 0; r < s.ranks; r++) {
    if (timeline[r]!.length !== s.actions[r]!.length) throw new Error(`rank ${r}: ${timeline[r]!.length} compute events for ${s.actions[r]!.length} actions`);
  }
  const makespan = res.time;
  const busy = timeline.map((l) => l.reduce((x, o) => x + (o.end - o.start), 0));
  const busyTotal = busy.reduce((x, y) => x + y, 0);
  const idleTotal = busy.reduce((x, b) => x + (makespan - b), 0);
  const spanIdle = timeline.reduce((x, l, r) => x + (l.length ? l[l.length - 1]!.end - l[0]!.start - busy[r]! : 0), 0);
  return {
    schedule: s, times, timeline, makespan, busy, events,
    bubbleFraction: busyTotal > 0 ? idleTotal / busyTotal : 0,
    idleShare: makespan > 0 ? idleTotal / (s.ranks * makespan) : 0,
    spanBubbleFraction: busyTotal > 0 ? spanIdle / busyTotal : 0,
  };
}

/**
 * Closed-form bubble fraction (idle / ideal compute per rank, formulas.md's convention, the same as
 * PipelineRun.bubbleFraction) of the generators; p ranks, m microbatches, v stages per rank,
 * per-stage times T_F, T_B (input grad), T_W:
 *  - gpipe, 1f1b: (p-1)/m (formulas.md; idle (p-1)(T_F + T_B + T_W) per rank over m (T_F + T_B + T_W));
 *  - interleaved: (p-1)/(v m) (formulas.md; Narayanan et al. 2021);
 *  - zb-h1: (p-1)(T_F + T_B - T_W) / (m (T_F + T_B + T_W)) (formulas.md; Qi et al. 2023). The
 *    generated schedule meets it exactly when T_W <= min(T_F, T_B) (checked in the tests); with a
 *    larger T_W the deferred W no longer fit the cool-down and the measured bubble is larger;
 *  - zb-v, only for T_F = T_B = T_W and m >= 2p-1 (else undefined): (p-1) T_F / (2 m (T_F + T_B + T_W))
 *    = (p-1)/(6m). Not in formulas.md; derived here: every rank is busy without a gap from its first
 *    action to its last, and rank r starts r T_F late (waiting for the first activation) and ends
 *    p-1-r slots early, so each rank idles (p-1) T_F per iteration. The zero-bubble papers count each
 *    rank from its own first to its own last action (a parallelogram of iterations without an
 *    optimizer barrier); that count, PipelineRun.spanBubbleFraction, is 0 for ZB-V.
 * Returns undefined where there is no closed form (an imported schedule, zb-v outside the case above).
 */
export function formulaBubble(name: ScheduleName | string, p: number, m: number, v: number, t: PipelineTimes = DEFAULT_TIMES): number | undefined {
  const all = t.tF + t.tB + t.tW;
  switch (name) {
    case 'gpipe':
    case '1f1b': return (p - 1) / m;
    case 'interleaved': return (p - 1) / (v * m);
    case 'zb-h1': return ((p - 1) * (t.tF + t.tB - t.tW)) / (m * all);
    case 'zb-v': return t.tF === t.tB && t.tB === t.tW && m >= 2 * p - 1 ? ((p - 1) * t.tF) / (2 * m * all) : undefined;
    default: return undefined;
  }
}

/** formulas.md's peak in-flight microbatches at stage 0 (rank 0), in microbatches of a rank's share. */
export function formulaPeakInflight(name: ScheduleName | string, p: number, m: number, v: number): number | undefined {
  switch (name) {
    case 'gpipe': return m;
    case '1f1b': return Math.min(m, p);
    case 'interleaved': return p * (1 + (p - 1) / (p * v));
    case 'zb-h1': return p;
    case 'zb-v': return p;
    default: return undefined;
  }
}

/** The time slot of the ASCII timeline: the largest t = min(T)/k (k <= 12) that divides every op time. */
export function timelineSlot(t: PipelineTimes): number {
  const ts = [t.tF, t.tB, t.tW].filter((x) => x > 0);
  if (ts.length === 0) return 1;
  const min = Math.min(...ts);
  for (let k = 1; k <= 12; k++) {
    const s = min / k;
    if (ts.every((x) => Math.abs(x / s - Math.round(x / s)) < 1e-6)) return s;
  }
  return min;
}

/**
 * ASCII timeline: one row per rank, one cell per time slot, '.' where the rank is idle. A cell is
 * the action's kind and microbatch (F3, B3, I3, W3), with the stage in front (2F3) when a rank holds
 * more than one stage; an action of k slots fills k cells. Times are rounded to slots.
 */
export function renderTimeline(run: PipelineRun, slot = timelineSlot(run.times)): string[] {
  const s = run.schedule;
  const multi = s.stages > s.ranks;
  const label = (a: Action) => (multi ? `${a.stage}${a.kind}${a.mb}` : `${a.kind}${a.mb}`);
  const n = Math.max(1, Math.round(run.makespan / slot));
  let w = 2;
  for (const l of run.timeline) for (const o of l) w = Math.max(w, label(o.action).length);
  const rows: string[][] = run.timeline.map(() => new Array<string>(n).fill('.'));
  for (const l of run.timeline) {
    for (const o of l) {
      const c0 = Math.round(o.start / slot);
      const c1 = Math.max(c0 + 1, Math.round(o.end / slot));
      for (let c = c0; c < c1 && c < n; c++) rows[o.rank]![c] = label(o.action);
    }
  }
  const lw = `rank ${s.ranks - 1}`.length;
  const ruler: string[] = [];
  for (let c = 0; c < n; c += 5) ruler.push(String(c).padEnd(5 * (w + 1)));
  const out = [`${'slot'.padEnd(lw)}  ${ruler.join('').trimEnd()}`];
  rows.forEach((cells, r) => out.push(`${`rank ${r}`.padEnd(lw)}  ${cells.map((c) => c.padEnd(w)).join(' ')}`.trimEnd()));
  return out;
}
