/**
 * Pipeline schedules as data.
 *
 * A schedule is, per rank, the ordered list of compute actions that rank runs, plus the placement of
 * model stages on ranks:
 *  - an action is {stage, mb, kind}: kind 'F' forward, 'B' full backward, 'I' backward for inputs
 *    (the activation gradient that the previous stage needs), 'W' backward for weights. B = I + W.
 *  - `stageToRank[s]` is the rank that holds stage s (every action of stage s runs there).
 * Time is not part of a schedule: a rank runs its list in order, and an action starts when the rank
 * is free and its inputs have arrived (parallelism/pipeline.ts runs it on the IR).
 *
 * Dependencies (S stages, m microbatches):
 *  - F(s, j) needs F(s-1, j) (s > 0);
 *  - B(s, j) / I(s, j) need F(s, j) and the backward (B or I) of (s+1, j) (s < S-1);
 *  - W(s, j) needs I(s, j).
 * A complete schedule has, for every stage and microbatch, one F and either one B or one I and one W.
 *
 * Generators (p ranks, m microbatches, v stages per rank):
 *  - gpipe: all F, then all B (Huang et al. 2019);
 *  - 1f1b: PipeDream-flush (Narayanan et al. 2021): p-1-r warm-up F on rank r, then one F one B, then
 *    the remaining B;
 *  - interleaved: Megatron-LM's interleaved 1F1B (Narayanan et al. 2021, sec. 2.2), stage s on rank
 *    s mod p, forward chunks in groups of p microbatches, warm-up 2(p-1-r) + (v-1) p;
 *  - zb-h1: zero bubble H1 (Qi et al. 2023, "Zero Bubble Pipeline Parallelism"): the 1F1B order with the
 *    backward split into I and W; rank r defers its W by r microbatches, so the W fill the bubbles
 *    of the 1F1B cool-down, with the same activation memory as 1F1B (p at rank 0);
 *  - zb-v: ZB-V (Qi et al. 2024, "Pipeline Parallelism with Controllable Memory", sec. 6; the phases of
 *    PyTorch's ScheduleZBVZeroBubble): 2p stages in a V, rank r holds stages r and 2p-1-r.
 *
 * CSV (PyTorch torch/distributed/pipelining/schedules.py, `_load_csv` / `_dump_csv`, format
 * "compute_only"): one row per rank, one cell per step; a cell is [stage][F|I|B|W][microbatch], e.g.
 * 0F3, 2I0, 2W0, 1B5; an empty cell is an idle step. PyTorch's "compute_comms" cells (SEND_F, RECV_F,
 * SEND_B, RECV_B, UNSHARD, RESHARD, REDUCE_GRAD) are accepted and skipped, since collemu derives the
 * communication from the compute order; an OVERLAP_F_B cell "(0F1;3B0)OVERLAP_F_B" runs its
 * sub-actions in order. The number of stages and microbatches is inferred (largest index + 1), and
 * so is the placement: the rank whose row holds a stage's actions (a stage on two ranks is an error).
 */

export type ActionKind = 'F' | 'B' | 'I' | 'W';
export const ACTION_KINDS: readonly ActionKind[] = ['F', 'B', 'I', 'W'];

export interface Action {
  stage: number;
  mb: number;
  kind: ActionKind;
}

export interface Schedule {
  /** generator name ('1f1b', ...) or where the schedule came from */
  name: string;
  /** pipeline ranks */
  ranks: number;
  /** model stages (ranks x stages per rank) */
  stages: number;
  microbatches: number;
  /** stage -> rank */
  stageToRank: number[];
  /** per rank, the actions in execution order */
  actions: Action[][];
  /** per rank, the CSV column of each action (imported schedules with idle cells); default: the index */
  steps?: number[][];
}

export class ScheduleError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ScheduleError';
  }
}

export const SCHEDULE_NAMES = ['gpipe', '1f1b', 'interleaved', 'zb-h1', 'zb-v'] as const;
export type ScheduleName = (typeof SCHEDULE_NAMES)[number];

export const actionString = (a: Action): string => `${a.stage}${a.kind}${a.mb}`;
export const act = (stage: number, kind: ActionKind, mb: number): Action => ({ stage, kind, mb });

/** The step (CSV column, or index) of rank r's i-th action. */
export const stepOf = (s: Schedule, r: number, i: number): number => s.steps?.[r]?.[i] ?? i;

function checkPM(p: number, m: number): void {
  if (!Number.isInteger(p) || p < 1) throw new ScheduleError(`the number of pipeline ranks must be an integer >= 1 (got ${p})`);
  if (!Number.isInteger(m) || m < 1) throw new ScheduleError(`the number of microbatches must be an integer >= 1 (got ${m})`);
}

/** GPipe: every rank runs all forwards, then all backwards (microbatch order). Stage r on rank r. */
export function gpipe(p: number, m: number): Schedule {
  checkPM(p, m);
  const actions: Action[][] = [];
  for (let r = 0; r < p; r++) {
    const l: Action[] = [];
    for (let j = 0; j < m; j++) l.push(act(r, 'F', j));
    for (let j = 0; j < m; j++) l.push(act(r, 'B', j));
    actions.push(l);
  }
  return { name: 'gpipe', ranks: p, stages: p, microbatches: m, stageToRank: range(p), actions };
}

/** 1F1B (PipeDream-flush): rank r runs min(p-1-r, m) warm-up forwards, then alternates F and B. */
export function oneFOneB(p: number, m: number): Schedule {
  checkPM(p, m);
  const actions: Action[][] = [];
  for (let r = 0; r < p; r++) {
    const warm = Math.min(p - 1 - r, m);
    const l: Action[] = [];
    for (let j = 0; j < warm; j++) l.push(act(r, 'F', j));
    for (let i = 0; i < m - warm; i++) {
      l.push(act(r, 'F', warm + i));
      l.push(act(r, 'B', i));
    }
    for (let j = m - warm; j < m; j++) l.push(act(r, 'B', j));
    actions.push(l);
  }
  return { name: '1f1b', ranks: p, stages: p, microbatches: m, stageToRank: range(p), actions };
}

/**
 * Megatron-LM's interleaved 1F1B: p ranks, v model chunks per rank, stage s on rank s mod p
 * (rank r holds stages r, r+p, ..., r+(v-1)p). Needs m to be a multiple of p. Rank r's k-th forward
 * runs chunk floor(k/p) mod v of microbatch floor(k/(p v)) p + k mod p; backwards visit the chunks
 * in reverse. Warm-up: 2(p-1-r) + (v-1) p forwards (all of them when m = p).
 */
export function interleaved(p: number, m: number, v: number): Schedule {
  checkPM(p, m);
  if (!Number.isInteger(v) || v < 1) throw new ScheduleError(`interleaved needs an integer number of stages per rank v >= 1 (got ${v})`);
  if (m % p !== 0) {
    throw new ScheduleError(`interleaved 1F1B (Megatron) needs the microbatch count to be a multiple of p: m = ${m} is not divisible by p = ${p}`);
  }
  const total = m * v;
  const actions: Action[][] = [];
  const mbOf = (k: number) => Math.floor(k / (p * v)) * p + (k % p);
  for (let r = 0; r < p; r++) {
    const fwd = (k: number) => act((Math.floor(k / p) % v) * p + r, 'F', mbOf(k));
    const bwd = (k: number) => act((v - 1 - (Math.floor(k / p) % v)) * p + r, 'B', mbOf(k));
    const warm = m === p ? total : Math.min(2 * (p - 1 - r) + (v - 1) * p, total);
    const l: Action[] = [];
    for (let k = 0; k < warm; k++) l.push(fwd(k));
    for (let i = 0; i < total - warm; i++) {
      l.push(fwd(warm + i));
      l.push(bwd(i));
    }
    for (let k = total - warm; k < total; k++) l.push(bwd(k));
    actions.push(l);
  }
  const stageToRank = range(p * v).map((s) => s % p);
  return { name: 'interleaved', ranks: p, stages: p * v, microbatches: m, stageToRank, actions };
}

/**
 * ZB-H1 (Qi et al. 2023): 1F1B's order of F and I (the backward's input-gradient half), and rank r
 * runs the W of its oldest pending microbatch after each I from its (r+1)-th I on; the r deferred W
 * run at the end, where 1F1B's cool-down would leave rank r idle. Activations in flight are as in
 * 1F1B (p at rank 0).
 */
export function zbH1(p: number, m: number): Schedule {
  checkPM(p, m);
  const actions: Action[][] = [];
  for (let r = 0; r < p; r++) {
    const warm = Math.min(p - 1 - r, m);
    const l: Action[] = [];
    let nextW = 0;
    let nI = 0;
    const backward = (j: number) => {
      l.push(act(r, 'I', j));
      if (nI++ >= r) l.push(act(r, 'W', nextW++));
    };
    for (let j = 0; j < warm; j++) l.push(act(r, 'F', j));
    for (let i = 0; i < m - warm; i++) {
      l.push(act(r, 'F', warm + i));
      backward(i);
    }
    for (let j = m - warm; j < m; j++) backward(j);
    while (nextW < m) l.push(act(r, 'W', nextW++));
    actions.push(l);
  }
  return { name: 'zb-h1', ranks: p, stages: p, microbatches: m, stageToRank: range(p), actions };
}

/**
 * ZB-V (Qi et al. 2024, sec. 6): 2p stages placed in a V, rank r holds stage r (chunk 0) and stage
 * 2p-1-r (chunk 1). Phases per rank (as in PyTorch's ScheduleZBVZeroBubble):
 *  warm-up: 2(p-r)-1 F of chunk 0; r times (F chunk 1, F chunk 0); p-r times (F, I, W of chunk 1);
 *  steady: (F, I, W of chunk 0), (F, I, W of chunk 1) until every forward is issued;
 *  cool-down: r times (I chunk 0, I chunk 1); p-r times (I, W chunk 0); then the remaining W of
 *  chunk 1, then of chunk 0.
 * The pattern is laid out for max(m, 2p-1) microbatches; actions of microbatches >= m are dropped.
 */
export function zbV(p: number, m: number): Schedule {
  checkPM(p, m);
  const S = 2 * p;
  const n = Math.max(2 * p - 1, m);
  const actions: Action[][] = [];
  for (let r = 0; r < p; r++) {
    const c0 = r, c1 = S - 1 - r;
    const l: Action[] = [];
    let f0 = 0, f1 = 0, b0 = 0, b1 = 0;
    const F0 = () => l.push(act(c0, 'F', f0++));
    const F1 = () => l.push(act(c1, 'F', f1++));
    for (let i = 0; i < 2 * (p - r) - 1; i++) F0();
    for (let i = 0; i < r; i++) { F1(); F0(); }
    for (let i = 0; i < p - r; i++) { F1(); l.push(act(c1, 'I', b1), act(c1, 'W', b1)); b1++; }
    while (f1 < f0 || f0 < n) {
      if (f0 < n) F0();
      l.push(act(c0, 'I', b0), act(c0, 'W', b0)); b0++;
      F1();
      l.push(act(c1, 'I', b1), act(c1, 'W', b1)); b1++;
    }
    let w0 = b0, w1 = b1;
    for (let i = 0; i < r; i++) { l.push(act(c0, 'I', b0++)); l.push(act(c1, 'I', b1++)); }
    for (let i = 0; i < p - r; i++) { l.push(act(c0, 'I', b0++)); l.push(act(c0, 'W', w0++)); }
    while (w1 < b1) l.push(act(c1, 'W', w1++));
    while (w0 < b0) l.push(act(c0, 'W', w0++));
    if (!(f0 === n && b0 === n && w0 === n && f1 === n && b1 === n && w1 === n)) {
      throw new Error(`zb-v generator: rank ${r} counts F ${f0}/${f1} I ${b0}/${b1} W ${w0}/${w1}, expected ${n}`);
    }
    actions.push(l.filter((a) => a.mb < m));
  }
  const stageToRank = range(S).map((s) => (s < p ? s : S - 1 - s));
  return { name: 'zb-v', ranks: p, stages: S, microbatches: m, stageToRank, actions };
}

/** Which generators need m >= p (the closed forms assume a full pipeline). */
export const NEEDS_M_GE_P: Record<ScheduleName, boolean> = { gpipe: false, '1f1b': false, interleaved: true, 'zb-h1': true, 'zb-v': true };

/** Stages per rank v of a generator (interleaved: the given v; zb-v: 2; others: 1). */
export function stagesPerRank(name: ScheduleName, v?: number): number {
  if (name === 'interleaved') return v ?? 2;
  if (name === 'zb-v') return 2;
  return 1;
}

/** Build a schedule by name. `v` applies to interleaved only (default 2); zb-v has v = 2. */
export function makeSchedule(name: string, p: number, m: number, v?: number): Schedule {
  if (!(SCHEDULE_NAMES as readonly string[]).includes(name)) {
    throw new ScheduleError(`unknown schedule '${name}' (known: ${SCHEDULE_NAMES.join(', ')})`);
  }
  const n = name as ScheduleName;
  checkPM(p, m);
  if (v !== undefined) {
    if (!Number.isInteger(v) || v < 1) throw new ScheduleError(`--virtual must be an integer >= 1 (got ${v})`);
    const fixed = n === 'interleaved' ? undefined : stagesPerRank(n);
    if (fixed !== undefined && v !== fixed) {
      throw new ScheduleError(`${n} places ${fixed} stage${fixed > 1 ? 's' : ''} per rank: --virtual ${v} does not apply (use --schedule interleaved)`);
    }
  }
  if (NEEDS_M_GE_P[n] && m < p) throw new ScheduleError(`${n} needs at least as many microbatches as pipeline ranks: m = ${m} < p = ${p}`);
  switch (n) {
    case 'gpipe': return gpipe(p, m);
    case '1f1b': return oneFOneB(p, m);
    case 'interleaved': return interleaved(p, m, v ?? 2);
    case 'zb-h1': return zbH1(p, m);
    case 'zb-v': return zbV(p, m);
  }
}

// ------------------------------------------------------------------ CSV

const CELL_RE = /^(\d+)([FIBW])(\d+)$/;
/** PyTorch action types that are not computation (communication, FSDP): skipped on import. */
const COMM_RE = /^\d+(SEND_F|RECV_F|SEND_B|RECV_B|UNSHARD|RESHARD|REDUCE_GRAD)\d*$/;

function parseCell(cell: string, where: string): Action[] {
  const c = cell.trim().replace(/^"(.*)"$/, '$1').trim();
  if (c === '') return [];
  const m = CELL_RE.exec(c);
  if (m) return [act(Number(m[1]), m[2] as ActionKind, Number(m[3]))];
  if (COMM_RE.test(c)) return [];
  const ov = /^\((.*)\)OVERLAP_F_B$/.exec(c);
  if (ov) return ov[1]!.split(';').flatMap((sub) => parseCell(sub, where));
  throw new ScheduleError(`${where}: cannot parse '${c}' (expected [stage][F|I|B|W][microbatch], e.g. 0F3, 2I0, 1B5; an empty cell is idle)`);
}

/** Parse PyTorch's pipeline schedule CSV. `where` names the source in error messages. */
export function fromCsv(text: string, where = 'csv'): Schedule {
  const lines = text.split(/\r?\n/);
  while (lines.length && lines[lines.length - 1]!.trim() === '') lines.pop();
  if (lines.length === 0) throw new ScheduleError(`${where}: no rows (expected one row per rank)`);
  const actions: Action[][] = [];
  const steps: number[][] = [];
  const owner = new Map<number, { rank: number; step: number }>();
  let maxStage = -1, maxMb = -1;
  for (let r = 0; r < lines.length; r++) {
    const cells = lines[r]!.split(',');
    const l: Action[] = [];
    const st: number[] = [];
    for (let c = 0; c < cells.length; c++) {
      for (const a of parseCell(cells[c]!, `${where}: rank ${r}, step ${c}`)) {
        const o = owner.get(a.stage);
        if (o === undefined) owner.set(a.stage, { rank: r, step: c });
        else if (o.rank !== r) {
          throw new ScheduleError(`${where}: rank ${r}, step ${c}: stage ${a.stage} (${actionString(a)}) also runs on rank ${o.rank} (step ${o.step}); a stage must live on one rank`);
        }
        maxStage = Math.max(maxStage, a.stage);
        maxMb = Math.max(maxMb, a.mb);
        l.push(a);
        st.push(c);
      }
    }
    if (l.length === 0) throw new ScheduleError(`${where}: rank ${r} (row ${r + 1}) has no actions`);
    actions.push(l);
    steps.push(st);
  }
  const stageToRank: number[] = [];
  for (let s = 0; s <= maxStage; s++) {
    const o = owner.get(s);
    if (!o) throw new ScheduleError(`${where}: stage ${s} has no actions on any rank (stages 0..${maxStage} appear)`);
    stageToRank.push(o.rank);
  }
  return { name: where, ranks: lines.length, stages: maxStage + 1, microbatches: maxMb + 1, stageToRank, actions, steps };
}

/** PyTorch CSV text: one row per rank; imported idle cells are kept at their columns. */
export function toCsv(s: Schedule): string {
  const rows = s.actions.map((l, r) => {
    if (!s.steps) return l.map(actionString).join(',');
    const width = l.length ? stepOf(s, r, l.length - 1) + 1 : 0;
    const cells: string[] = new Array(width).fill('');
    l.forEach((a, i) => { cells[stepOf(s, r, i)] = actionString(a); });
    return cells.join(',');
  });
  return rows.join('\n') + '\n';
}

// ------------------------------------------------------------------ validation

const key = (stage: number, mb: number) => `${stage}:${mb}`;

/** Cross-stage dependencies of an action, as (stage, mb, kinds that satisfy it). */
export function dependencies(a: Action, stages: number): { stage: number; mb: number; kinds: ActionKind[] }[] {
  switch (a.kind) {
    case 'F': return a.stage > 0 ? [{ stage: a.stage - 1, mb: a.mb, kinds: ['F'] }] : [];
    case 'B':
    case 'I': {
      const d = [{ stage: a.stage, mb: a.mb, kinds: ['F'] as ActionKind[] }];
      if (a.stage < stages - 1) d.push({ stage: a.stage + 1, mb: a.mb, kinds: ['B', 'I'] });
      return d;
    }
    case 'W': return [{ stage: a.stage, mb: a.mb, kinds: ['I'] }];
  }
}

/**
 * Check that a schedule is complete and runs to the end. Throws ScheduleError (one line) naming the
 * offending rank and step:
 *  - placement: every action of stage s runs on stageToRank[s];
 *  - completeness: a stage index or microbatch out of range, a duplicate action, a backward before
 *    the forward of the same (stage, microbatch) on its rank, W before its I, B mixed with I/W, and
 *    anything missing (a stage/microbatch without F, or without B or I+W);
 *  - deadlock: the ranks run their lists in order, each action waiting for its dependencies (see the
 *    module comment); if at some point no rank can run its next action, the error lists, for every
 *    unfinished rank, the step it is stuck at and what it waits for.
 */
export function validateSchedule(s: Schedule): void {
  const { stages: S, microbatches: m, ranks: p } = s;
  if (s.actions.length !== p) throw new ScheduleError(`${s.actions.length} action lists for ${p} ranks`);
  if (s.stageToRank.length !== S) throw new ScheduleError(`stageToRank has ${s.stageToRank.length} entries for ${S} stages`);
  for (let st = 0; st < S; st++) {
    const r = s.stageToRank[st]!;
    if (!Number.isInteger(r) || r < 0 || r >= p) throw new ScheduleError(`stage ${st} is placed on rank ${r}, not a rank in 0..${p - 1}`);
  }
  const at = (r: number, i: number) => `rank ${r}, step ${stepOf(s, r, i)} (${actionString(s.actions[r]![i]!)})`;
  const seen = new Map<string, string>(); // `${kind}${stage}:${mb}` -> where
  for (let r = 0; r < p; r++) {
    const l = s.actions[r]!;
    for (let i = 0; i < l.length; i++) {
      const a = l[i]!;
      if (!Number.isInteger(a.stage) || a.stage < 0 || a.stage >= S) throw new ScheduleError(`${at(r, i)}: stage ${a.stage} is not in 0..${S - 1}`);
      if (!Number.isInteger(a.mb) || a.mb < 0 || a.mb >= m) throw new ScheduleError(`${at(r, i)}: microbatch ${a.mb} is not in 0..${m - 1}`);
      if (!ACTION_KINDS.includes(a.kind)) throw new ScheduleError(`${at(r, i)}: unknown action kind '${String(a.kind)}'`);
      if (s.stageToRank[a.stage] !== r) throw new ScheduleError(`${at(r, i)}: stage ${a.stage} is placed on rank ${s.stageToRank[a.stage]}, not on rank ${r}`);
      const k = key(a.stage, a.mb);
      const prev = seen.get(a.kind + k);
      if (prev) throw new ScheduleError(`${at(r, i)}: duplicate: ${actionString(a)} already ran at ${prev}`);
      const has = (kind: ActionKind) => seen.has(kind + k);
      if (a.kind === 'B' && (has('I') || has('W'))) throw new ScheduleError(`${at(r, i)}: full backward B of stage ${a.stage} microbatch ${a.mb} after its split backward (I/W)`);
      if ((a.kind === 'I' || a.kind === 'W') && has('B')) throw new ScheduleError(`${at(r, i)}: split backward ${a.kind} of stage ${a.stage} microbatch ${a.mb} after its full backward B`);
      if (a.kind !== 'F' && !has('F')) throw new ScheduleError(`${at(r, i)}: backward (${a.kind}) of stage ${a.stage} microbatch ${a.mb} without a forward before it on rank ${r}`);
      if (a.kind === 'W' && !has('I')) throw new ScheduleError(`${at(r, i)}: weight gradient W of stage ${a.stage} microbatch ${a.mb} without an input gradient I before it on rank ${r}`);
      seen.set(a.kind + k, `rank ${r}, step ${stepOf(s, r, i)}`);
    }
  }
  for (let st = 0; st < S; st++) {
    const r = s.stageToRank[st]!;
    const end = `rank ${r}, step ${s.actions[r]!.length ? stepOf(s, r, s.actions[r]!.length - 1) + 1 : 0} (end of its list)`;
    for (let j = 0; j < m; j++) {
      const k = key(st, j);
      if (!seen.has('F' + k)) throw new ScheduleError(`${end}: incomplete: stage ${st} microbatch ${j} has no forward (${st}F${j})`);
      if (seen.has('I' + k) && !seen.has('W' + k)) throw new ScheduleError(`${end}: incomplete: stage ${st} microbatch ${j} has I but no W (${st}W${j})`);
      if (!seen.has('B' + k) && !seen.has('I' + k)) throw new ScheduleError(`${end}: incomplete: stage ${st} microbatch ${j} has no backward (${st}B${j}, or ${st}I${j} and ${st}W${j})`);
    }
  }
  const stuck = findDeadlock(s);
  if (stuck) throw new ScheduleError(stuck);
}

/**
 * Run the schedule in dependency order, without time: repeatedly, every rank runs its next action if
 * its dependencies are done. Returns a one-line deadlock report when no rank can move, else undefined.
 */
export function findDeadlock(s: Schedule): string | undefined {
  const p = s.ranks;
  const done = new Set<string>();
  const pc = new Array<number>(p).fill(0);
  const isDone = (d: { stage: number; mb: number; kinds: ActionKind[] }) => d.kinds.some((k) => done.has(k + key(d.stage, d.mb)));
  let remaining = s.actions.reduce((n, l) => n + l.length, 0);
  while (remaining > 0) {
    let progress = false;
    for (let r = 0; r < p; r++) {
      const l = s.actions[r]!;
      while (pc[r]! < l.length && dependencies(l[pc[r]!]!, s.stages).every(isDone)) {
        const a = l[pc[r]!++]!;
        done.add(a.kind + key(a.stage, a.mb));
        remaining--;
        progress = true;
      }
    }
    if (!progress) {
      const parts: string[] = [];
      for (let r = 0; r < p; r++) {
        const l = s.actions[r]!;
        if (pc[r]! >= l.length) continue;
        const a = l[pc[r]!]!;
        const what = dependencies(a, s.stages).filter((d) => !isDone(d))
          .map((d) => `${d.kinds.map((k) => `${d.stage}${k}${d.mb}`).join(' or ')} on rank ${s.stageToRank[d.stage]}`).join(' and ');
        parts.push(`rank ${r} at step ${stepOf(s, r, pc[r]!)} (${actionString(a)}) waits for ${what}`);
      }
      return `deadlock: every unfinished rank is stuck: ${parts.join('; ')}`;
    }
  }
  return undefined;
}

/**
 * Activations in flight per rank: a (stage, microbatch) counts from its F until its backward for
 * inputs (B, or I when split) has run; W only needs a smaller stash and is not counted. Returns, per
 * rank, the peak count of such stage activations and the same in microbatches of the rank's whole
 * model share (count / stages per rank), the unit of formulas.md's "peak in-flight microbatches".
 */
export function peakInflight(s: Schedule): { chunks: number[]; microbatches: number[] } {
  const chunks: number[] = [];
  const microbatches: number[] = [];
  for (let r = 0; r < s.ranks; r++) {
    let cur = 0, peak = 0;
    for (const a of s.actions[r]!) {
      if (a.kind === 'F') peak = Math.max(peak, ++cur);
      else if (a.kind === 'B' || a.kind === 'I') cur--;
    }
    const perRank = s.stageToRank.filter((x) => x === r).length || 1;
    chunks.push(peak);
    microbatches.push(peak / perRank);
  }
  return { chunks, microbatches };
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}
