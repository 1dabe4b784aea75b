/**
 * `collemu bench <collective>`: an nccl-tests style sweep over message sizes, run on the worker
 * thread emulator with real Float32 data. time = virtual microseconds (deterministic), algbw and
 * busbw as in nccl-tests (doc/PERFORMANCE.md), #wrong from an exact pattern check, host(us) = host
 * wall time per iteration.
 */
import { Cluster } from '../runtime/cluster.js';
import { validateKernelOps } from '../runtime/compute.js';
import { IRError, REDUCE_OPS, validatePrograms, type Program, type ReduceOp } from '../runtime/ir.js';
import { OutOfMemoryError } from '../runtime/memory.js';
import { simulate } from '../runtime/simulate.js';
import { scaleTopology, type Topology } from '../runtime/topology.js';
import type { TraceEvent } from '../runtime/trace.js';
import { resolveAlgorithm } from '../collectives/registry.js';
import {
  busBwFactor, bufferSizes, COLLECTIVES, countForSize, ioSizes, isReducing, isRooted, ncclSize, type Algorithm, type CollSpec, type Collective,
} from '../collectives/types.js';

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export interface BenchOptions {
  coll: Collective;
  topo: Topology;
  /** 'auto', a registered name, or a user Algorithm object */
  algo: string | Algorithm;
  minBytes: number;
  maxBytes: number;
  factor: number;
  iters: number;
  warmup: number;
  check: boolean;
  op: ReduceOp;
  root: number;
  pace: number;
  trace?: boolean;
  /** run in-place too (default true) */
  inPlace?: boolean;
  simd?: boolean;
  /** scale-down factor k >= 1: run tensors / k on bandwidths / k (runtime/topology.ts scaleTopology) */
  scaleDown?: number;
  /** called once the options are checked (validateBench), before anything runs */
  onStart?: () => void;
  onRow?: (row: BenchRow) => void;
}

export interface BenchHalf {
  time: number; // us
  alg_bw: number; // GB/s
  bus_bw: number; // GB/s
  nwrong: number;
  host_time: number; // us
  algo: string;
  max_err: number;
}

export interface BenchRow {
  /** with --scale-down: the bytes the run actually moved per rank buffer, and the full-size
   * simulated time (us) of the out-of-place half, which the scaled time stands for */
  scaled?: { emulated_size: number; full_time: number };
  size: number;
  count: number;
  type: 'float';
  redop: string;
  root: number;
  oop: BenchHalf;
  ip?: BenchHalf;
}

export function parseBytes(s: string, what = 'size'): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)i?[bB]?\s*$/.exec(s);
  if (!m) throw new UsageError(`${what} '${s}' is not a byte count (e.g. 1024, 64K, 16M, 1G)`);
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[m[2]!.toLowerCase()]!;
  const v = Number(m[1]) * mult;
  if (!Number.isInteger(v)) throw new UsageError(`${what} '${s}' is not a whole number of bytes`);
  if (!Number.isSafeInteger(v)) throw new UsageError(`${what} '${s}' is too large`);
  return v;
}

export function sweepSizes(min: number, max: number, factor: number): number[] {
  if (min < 0 || max < 0) throw new UsageError('sizes must be >= 0');
  if (min > max) throw new UsageError(`--min-bytes (${min}) is larger than --max-bytes (${max})`);
  if (!(factor > 1) && min !== max) throw new UsageError(`--factor must be > 1 (got ${factor})`);
  const out: number[] = [];
  for (let s = min; s <= max; s = s === 0 ? 1 : Math.max(s + 1, Math.floor(s * factor))) {
    out.push(s);
    if (min === max) break;
  }
  return out;
}

/** Rank limits of the two executors: one worker thread per rank, or one event loop for all. */
export const EMULATOR_MAX_RANKS = 512;
export const SIMULATOR_MAX_RANKS = 1 << 20;

/**
 * A user-written algorithm's hook (--algo-file): what it throws, or a malformed result, is the
 * user's error (exit 2), not collemu's.
 */
function userCall<T>(algo: Algorithm, user: boolean, what: string, f: () => T): T {
  if (!user) return f();
  try {
    return f();
  } catch (e) {
    if (e instanceof IRError || e instanceof UsageError) throw e;
    const err = e as Error;
    throw new UsageError(`algorithm '${algo.name}' (--algo-file): ${what} threw ${err?.name ?? 'an error'}: ${String(err?.message ?? e).split('\n')[0]}`);
  }
}

/** The programs an algorithm builds for a spec, checked: one per rank, each an array of ops. */
export function buildChecked(algo: Algorithm, spec: CollSpec, topo: Topology, user: boolean): Program[] {
  const programs = userCall(algo, user, 'build()', () => algo.build(spec, topo));
  if (!Array.isArray(programs) || programs.length !== spec.p || !programs.every((x) => Array.isArray(x))) {
    const got = Array.isArray(programs) ? `${programs.length} entries${programs.every((x) => Array.isArray(x)) ? '' : ', not all arrays of ops'}` : typeof programs;
    throw new IRError(`algorithm '${algo.name}': build() must return one program (an array of ops) per rank, ${spec.p} in all; got ${got}`);
  }
  return programs;
}

export function validateBench(o: BenchOptions, executor: 'emulate' | 'simulate' = 'emulate'): void {
  if (!COLLECTIVES.includes(o.coll)) throw new UsageError(`unknown collective '${o.coll}' (known: ${COLLECTIVES.join(', ')})`);
  if (!REDUCE_OPS.includes(o.op)) throw new UsageError(`unknown --op '${o.op}' (known: ${REDUCE_OPS.join(', ')})`);
  if (!Number.isInteger(o.iters) || o.iters < 1) throw new UsageError(`--iters must be an integer >= 1 (got ${o.iters})`);
  if (!Number.isInteger(o.warmup) || o.warmup < 0) throw new UsageError(`--warmup must be an integer >= 0 (got ${o.warmup})`);
  if (isRooted(o.coll) && (!Number.isInteger(o.root) || o.root < 0 || o.root >= o.topo.p)) throw new UsageError(`--root must be a rank in 0..${o.topo.p - 1} (got ${o.root})`);
  if (!(o.pace >= 0) || !Number.isFinite(o.pace)) throw new UsageError(`--pace must be a dilation >= 0 (got ${o.pace})`);
  // before anything is printed or run: the rank count, the sizes (they fit the device memory and
  // survive the scale-down), and that the algorithm exists and can run every size of the sweep
  // (runSweep checks again on the scaled-down spec it actually runs)
  const p = o.topo.p;
  const maxRanks = executor === 'emulate' ? EMULATOR_MAX_RANKS : SIMULATOR_MAX_RANKS;
  if (p > maxRanks) {
    throw new UsageError(`${p} ranks is more than the ${executor === 'emulate' ? 'emulator (one worker thread per rank)' : 'one-thread simulator'} runs (at most ${maxRanks}`
      + `${executor === 'emulate' ? '; `collemu simulate` times up to ' + SIMULATOR_MAX_RANKS + ' ranks without data' : ''})`);
  }
  const k = o.scaleDown ?? 1;
  if (!(k >= 1)) throw new UsageError(`--scale-down must be a number >= 1 (got ${k})`);
  const user = typeof o.algo !== 'string';
  for (const bytes of sweepSizes(o.minBytes, o.maxBytes, o.factor)) {
    const count = countForSize(o.coll, p, bytes);
    for (const inPlace of o.inPlace === false ? [false] : [false, true]) {
      const full: CollSpec = { coll: o.coll, p, count, op: o.op, inPlace, root: o.root };
      const io = ioSizes(full);
      const need = (io.in + io.out) * 4;
      if (need > o.topo.data.memCapacity) {
        // what the emulated GPU would report when the run allocates them, before anything is built
        const cap = o.topo.data.memCapacity;
        throw new OutOfMemoryError(0, `the 'in' and 'out' buffers of a ${bytes} B ${o.coll}${inPlace ? ' (in-place)' : ''}`, need, cap, cap);
      }
      const algo = typeof o.algo === 'string' ? resolveAlgorithm(full, o.topo, o.algo) : o.algo;
      const why = userCall(algo, user, 'unsupported()', () => algo.unsupported?.(full, o.topo));
      if (why) throw new UsageError(`${o.coll} algorithm '${algo.name}' cannot run here: ${why}`);
    }
    if (k > 1 && count > 0 && countForSize(o.coll, p, Math.floor(ncclSize(o.coll, p, count) / k)) === 0) {
      throw new UsageError(`--scale-down ${k} leaves nothing of the ${bytes} B size to run (under one element per rank); use a smaller --scale-down or larger sizes`);
    }
  }
}

function half(spec: CollSpec, algo: Algorithm, r: { time: number; hostTime: number; wrong: number; maxErr: number }, check: boolean): BenchHalf {
  const size = ncclSize(spec.coll, spec.p, spec.count);
  const tUs = r.time * 1e6;
  const alg = tUs > 0 ? size / 1e3 / tUs : 0; // GB/s = bytes / 1e9 / s
  return {
    time: tUs, alg_bw: alg, bus_bw: alg * busBwFactor(spec.coll, spec.p), nwrong: check ? r.wrong : -1,
    host_time: r.hostTime * 1e6, algo: algo.name, max_err: r.maxErr,
  };
}

/** One executor run of one size: virtual time (s), host time per iteration (s), check results. */
type Exec = (spec: CollSpec, algo: Algorithm, programs: Program[], trace: boolean) => Promise<{ time: number; hostTime: number; wrong: number; maxErr: number; events?: TraceEvent[] }>;

/** The size sweep shared by `bench` (emulator) and `simulate` (one-thread simulator). */
async function runSweep(o: BenchOptions, exec: Exec, checked: boolean, topo: Topology): Promise<{ rows: BenchRow[]; events?: TraceEvent[] }> {
  // o was checked by validateBench (runBench, runSimulate)
  const p = o.topo.p;
  const k = o.scaleDown ?? 1;
  const sizes = sweepSizes(o.minBytes, o.maxBytes, o.factor);
  const rows: BenchRow[] = [];
  let events: TraceEvent[] | undefined;
  for (const bytes of sizes) {
    const count = countForSize(o.coll, p, bytes);
    // the run itself: tensors / k on the scaled topology (k = 1: the same)
    const runCount = countForSize(o.coll, p, Math.floor(ncclSize(o.coll, p, count) / k));
    const row: BenchRow = {
      size: ncclSize(o.coll, p, count), count, type: 'float',
      redop: isReducing(o.coll) ? o.op : 'none', root: isRooted(o.coll) ? o.root : -1,
    } as BenchRow;
    for (const inPlace of o.inPlace === false ? [false] : [false, true]) {
      const full: CollSpec = { coll: o.coll, p, count, op: o.op, inPlace, root: o.root };
      const spec: CollSpec = { ...full, count: runCount };
      const algo = typeof o.algo === 'string' ? resolveAlgorithm(full, o.topo, o.algo) : o.algo;
      const user = typeof o.algo !== 'string';
      const why = userCall(algo, user, 'unsupported()', () => algo.unsupported?.(spec, topo));
      if (why) throw new UsageError(`${o.coll} algorithm '${algo.name}' cannot run here: ${why}`);
      const programs = buildChecked(algo, spec, topo, user);
      const bufs = userCall(algo, user, 'tmpElems()', () => bufferSizes(spec, algo, topo));
      validatePrograms(programs, bufs);
      validateKernelOps(programs);
      const wantTrace = !!o.trace && bytes === sizes[sizes.length - 1] && !inPlace;
      const r = await exec(spec, algo, programs, wantTrace);
      if (wantTrace) events = r.events;
      const h = half(full, algo, r, checked && o.check);
      if (inPlace) row.ip = h;
      else row.oop = h;
      if (k > 1 && !inPlace) {
        const fullTime = simulate({ topo: o.topo, programs: buildChecked(algo, full, o.topo, user) }).time;
        row.scaled = { emulated_size: ncclSize(o.coll, p, runCount), full_time: fullTime * 1e6 };
      }
    }
    rows.push(row);
    o.onRow?.(row);
  }
  return { rows, events };
}

/** `collemu bench`: the worker-thread emulator with real data. */
export async function runBench(o: BenchOptions, cluster?: Cluster): Promise<{ rows: BenchRow[]; events?: TraceEvent[] }> {
  validateBench(o, 'emulate'); // before the workers start
  o.onStart?.();
  const topo = runTopology(o);
  const c = cluster ?? (await Cluster.start(topo, { simd: o.simd }));
  try {
    return await runSweep(o, (spec, algo, programs, trace) => c.run({
      programs, sizes: bufferSizes(spec, algo, topo), warmup: o.warmup, iters: o.iters,
      pattern: spec, check: o.check, trace, pace: o.pace,
    }), true, topo);
  } finally {
    if (!cluster) await c.close();
  }
}

/** `collemu simulate`: the one-thread discrete-event simulator, no data (host time = one run). */
export async function runSimulate(o: BenchOptions): Promise<{ rows: BenchRow[]; events?: TraceEvent[] }> {
  validateBench(o, 'simulate');
  o.onStart?.();
  const topo = runTopology(o);
  return runSweep(o, async (_spec, _algo, programs, trace) => {
    const t0 = performance.now();
    const r = simulate({ topo, programs, trace });
    return { time: r.time, hostTime: (performance.now() - t0) / 1000, wrong: 0, maxErr: 0, events: r.events };
  }, false, topo);
}

/** The topology a run executes on: the scaled-down one under --scale-down k. */
export function runTopology(o: BenchOptions): Topology {
  return (o.scaleDown ?? 1) > 1 ? scaleTopology(o.topo, o.scaleDown!) : o.topo;
}

/** Lines that show what a scale-down run stands for, next to the full-size simulation. */
export function scaleLines(o: BenchOptions, rows: BenchRow[]): string[] {
  const k = o.scaleDown ?? 1;
  if (k <= 1) return [];
  const st = runTopology(o);
  const links = st.data.links.map((l) => `${l.name} ${+(l.bw / 1e9).toPrecision(4)} GB/s`).join(', ');
  const out = [
    `# scale-down x${k}: each row ran tensors / ${k} on links / ${k} (${links}; reduce/copy costs x${k}; memory ${+(st.data.memCapacity / 1e9).toPrecision(4)} GB per rank).`,
    '# Bandwidth terms (bytes / bandwidth) are unchanged and latencies are kept, so the run stands for the full size on the real links:',
    '#       size   ran with(B)   scaled time(us)   full-size simulated(us)   diff',
  ];
  for (const r of rows) {
    if (!r.scaled) continue;
    const d = r.scaled.full_time > 0 ? ((r.oop.time - r.scaled.full_time) / r.scaled.full_time) * 100 : 0;
    out.push(`# ${String(r.size).padStart(10)}  ${String(r.scaled.emulated_size).padStart(12)}  ${r.oop.time.toFixed(2).padStart(16)}  ${r.scaled.full_time.toFixed(2).padStart(24)}  ${d.toFixed(3).padStart(6)}%`);
  }
  return out;
}

// ------------------------------------------------------------------ formatting (nccl-tests layout)
function fmtTime(us: number): string {
  if (us >= 10000) return us.toFixed(0).padStart(7);
  if (us >= 100) return us.toFixed(1).padStart(7);
  return us.toFixed(2).padStart(7);
}
const fmtBw = (x: number) => x.toFixed(2).padStart(6);
const fmtWrong = (n: number) => (n < 0 ? 'N/A' : String(n)).padStart(6);
const fmtHost = (us: number) => (us >= 1e5 ? us.toFixed(0) : us.toFixed(1)).padStart(9);

export function headerLines(title: string, o: Pick<BenchOptions, 'topo' | 'minBytes' | 'maxBytes' | 'factor' | 'warmup' | 'iters' | 'check' | 'pace'>, algo: string, simulated = false): string[] {
  const t = o.topo;
  const lines = [
    `# ${title}: nranks ${t.p}, minBytes ${o.minBytes} maxBytes ${o.maxBytes} step: ${o.factor}(factor) warmup iters: ${o.warmup} iters: ${o.iters} agg iters: 1 validation: ${o.check ? 1 : 0} graph: 0`,
    simulated
      ? `# collemu simulator (one thread, no data): ${t.describe()}; algo ${algo}; time = virtual us (deterministic); host(us) = simulator wall time`
      : `# collemu emulator: ${t.describe()}; algo ${algo}; time = virtual us (deterministic)${o.pace > 0 ? `; paced x${o.pace}` : ''}; host(us) = wall time per iteration`,
    '#',
  ];
  const show = Math.min(t.p, simulated ? 0 : 8);
  for (let r = 0; r < show; r++) lines.push(`#  Rank ${String(r).padStart(2)} Group  0 Node ${String(t.nodeOf(r)).padStart(3)} device ${String(r % t.data.gpusPerNode).padStart(2)} [emulated] ${t.hw.name}`);
  if (t.p > show && show > 0) lines.push(`#  ... ${t.p - show} more ranks`);
  if (show > 0) lines.push('#');
  lines.push('#                                                              out-of-place                       in-place          ');
  lines.push('#       size         count      type   redop    root     time   algbw   busbw #wrong     time   algbw   busbw #wrong   host(us)  in-host(us)  algo');
  lines.push('#        (B)    (elements)                               (us)  (GB/s)  (GB/s)            (us)  (GB/s)  (GB/s)                                   ');
  return lines;
}

export function formatRow(r: BenchRow): string {
  const lead = `${String(r.size).padStart(12)}  ${String(r.count).padStart(12)}  ${r.type.padStart(8)}  ${r.redop.padStart(6)}  ${String(r.root).padStart(6)}`;
  const h = (x: BenchHalf | undefined) => (x ? `  ${fmtTime(x.time)}  ${fmtBw(x.alg_bw)}  ${fmtBw(x.bus_bw)}${fmtWrong(x.nwrong)}` : `  ${'N/A'.padStart(7)}  ${'N/A'.padStart(6)}  ${'N/A'.padStart(6)}${'N/A'.padStart(6)}`);
  const algo = r.ip && r.ip.algo !== r.oop.algo ? `${r.oop.algo}/${r.ip.algo}` : r.oop.algo;
  return `${lead}${h(r.oop)}${h(r.ip)}  ${fmtHost(r.oop.host_time)}  ${r.ip ? fmtHost(r.ip.host_time) : 'N/A'.padStart(9)}    ${algo}`;
}

export function footerLines(rows: BenchRow[], check: boolean): string[] {
  let wrong = 0, sum = 0, n = 0;
  for (const r of rows) {
    for (const x of [r.oop, r.ip]) {
      if (!x) continue;
      if (x.nwrong > 0) wrong += x.nwrong;
      sum += x.bus_bw;
      n++;
    }
  }
  return [
    `# Out of bounds values : ${wrong} ${wrong === 0 ? 'OK' : 'FAILED'}${check ? '' : ' (not checked: -c 0)'}`,
    `# Avg bus bandwidth    : ${n ? (sum / n).toFixed(4) : '0'} `,
    '#',
  ];
}

/**
 * A user-written algorithm (--algo-file): its cost() next to the virtual time of every size
 * (out-of-place; under --scale-down the full-size time), so a formula can be checked against the
 * schedule it claims to describe.
 */
export function formulaLines(algo: Algorithm, o: Pick<BenchOptions, 'coll' | 'topo' | 'op' | 'root'>, rows: BenchRow[]): string[] {
  const out = [`# ${algo.name}: cost() against the virtual time, out-of-place (us)`];
  for (const r of rows) {
    const spec: CollSpec = { coll: o.coll, p: o.topo.p, count: r.count, op: o.op, inPlace: false, root: o.root };
    let c: number;
    try {
      c = algo.cost(spec, o.topo);
    } catch (e) {
      out.push(`#   ${r.size} B: cost() threw ${(e as Error)?.name ?? 'an error'}: ${String((e as Error)?.message ?? e).split('\n')[0]}`);
      continue;
    }
    const t = r.scaled ? r.scaled.full_time : r.oop.time;
    if (typeof c !== 'number' || !Number.isFinite(c) || c < 0) {
      out.push(`#   ${r.size} B: cost() returned ${String(c)}, not a time >= 0 in seconds (virtual ${t.toFixed(2)})`);
      continue;
    }
    const cu = c * 1e6;
    const d = t > 0 ? ((cu - t) / t) * 100 : 0;
    const diff = t > 0 ? (Math.abs(d) < 0.005 ? '0.00%' : `${d > 0 ? '+' : ''}${d.toFixed(2)}%`) : cu === 0 ? 'equal' : 'virtual 0';
    out.push(`#   ${String(r.size).padStart(12)} B: cost ${cu.toFixed(2).padStart(10)}, virtual ${t.toFixed(2).padStart(10)} (${diff})`);
  }
  return out;
}

/** JSON rows: nccl-tests keys, in-place keys prefixed with in_. */
export function jsonRows(rows: BenchRow[]): Record<string, unknown>[] {
  return rows.map((r) => {
    const o: Record<string, unknown> = { size: r.size, count: r.count, type: r.type, redop: r.redop, root: r.root };
    const put = (x: BenchHalf, pre: string) => {
      o[pre + 'time'] = x.time;
      o[pre + 'alg_bw'] = x.alg_bw;
      o[pre + 'bus_bw'] = x.bus_bw;
      o[pre + 'nwrong'] = x.nwrong < 0 ? null : x.nwrong;
      o[pre + 'host_time'] = x.host_time;
      o[pre + 'algo'] = x.algo;
    };
    put(r.oop, '');
    if (r.ip) put(r.ip, 'in_');
    if (r.scaled) {
      o.emulated_size = r.scaled.emulated_size;
      o.full_size_time = r.scaled.full_time;
    }
    return o;
  });
}
