/**
 * `collemu calibrate <nccl-tests-output.txt>`: fit a topology's link latency (alpha) and bandwidth
 * so that an algorithm's closed-form cost() reproduces a measured nccl-tests table.
 *
 *  - Parsing: the standard nccl-tests text layout (also what mpi_coll_bench and `collemu bench`
 *    print): '#' header lines, then rows `size count type redop root  time algbw busbw #wrong
 *    [in-place time algbw busbw #wrong] [extra columns]`. The collective and the rank count are
 *    read from the header when not given (`# Collective test starting: all_reduce_perf`,
 *    `# mpi_coll_bench allreduce: nranks 8,`, `#  Rank  3 Group ...` lines, `# nThread 1 nGpus 8`).
 *  - Fitting: one link class is fitted: the only one (flat), or the one the run is bottlenecked by
 *    on a two-class topology (inter-node when the run spans nodes, intra-node otherwise); the other
 *    class keeps its preset value. The objective is the sum of squared relative errors of the
 *    out-of-place times. With everything else fixed, cost() is normally affine in alpha and 1/bw,
 *    T_i = c0_i + ca_i alpha + cb_i / bw; the coefficients come from evaluating cost() at three
 *    parameter points, the affinity is checked at four more and at the solution, and the fit is
 *    then a 2x2 weighted linear least-squares problem. When cost() is not affine (max() of regimes,
 *    chunk counts that depend on alpha/bw), a Nelder-Mead search on (log alpha, log bw) is used.
 */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { algorithmsFor, getAlgorithm } from '../collectives/registry.js';
import { COLLECTIVES, countForSize, type Algorithm, type CollSpec, type Collective } from '../collectives/types.js';
import { copyCostPerByte, reduceCostPerByte } from '../runtime/hardware.js';
import { makeTopology, Topology, TopologyError, type LinkClass } from '../runtime/topology.js';
import { UsageError } from './bench.js';
import { writeOutput } from './output.js';

// ------------------------------------------------------------------ parsing

export interface MeasuredRow {
  /** 1-based line number in the file */
  line: number;
  size: number;
  count: number;
  type: string;
  redop: string;
  /** out-of-place time, microseconds */
  time: number;
}

export interface ParsedTable {
  rows: MeasuredRow[];
  /** rows skipped because the out-of-place time is N/A or 0 */
  skipped: number;
  collective?: Collective;
  /** where the collective came from (the header line, shortened) */
  collectiveFrom?: string;
  /** the header names a collective collemu does not model (an error unless --collective is given) */
  unknownCollective?: string;
  ranks?: number;
  ranksFrom?: string;
}

/** nccl-tests / MPI names of the collectives -> collemu names. */
function collectiveFromName(name: string): Collective | undefined {
  const k = name.toLowerCase().replace(/_perf$/, '').replace(/[_-]/g, '');
  const alias: Record<string, Collective> = { allreduce: 'allreduce', allgather: 'allgather', reducescatter: 'reducescatter', broadcast: 'broadcast', bcast: 'broadcast', reduce: 'reduce', alltoall: 'alltoall', sendrecv: 'sendrecv', barrier: 'barrier' };
  return alias[k];
}

const INT_RE = /^-?\d+$/;
const NUM_RE = /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/;

/** Parse an nccl-tests style table. Throws UsageError with a one-line message. */
export function parseNcclTable(text: string, where: string): ParsedTable {
  const lines = text.split(/\r?\n/);
  let hasRoot = true;
  let collective: Collective | undefined, collectiveFrom: string | undefined, unknownCollective: string | undefined;
  let headerRanks: number | undefined, headerRanksFrom: string | undefined;
  let maxRank = -1, moreRanks = 0;
  let threadGpus: number | undefined;
  const rows: MeasuredRow[] = [];
  let skipped = 0;
  let firstCols: { n: number; line: number } | undefined;
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!;
    const line = raw.trim();
    if (line === '') continue;
    if (line.startsWith('#')) {
      const body = line.replace(/^#+\s*/, '');
      let m: RegExpExecArray | null;
      if ((m = /^Collective test starting:\s*(\S+)/i.exec(body))) {
        const c = collectiveFromName(basename(m[1]!));
        if (!c) unknownCollective ??= `${where}:${i + 1}: collective test '${m[1]}' is not one collemu models (known: ${COLLECTIVES.join(', ')}); pass --collective to override`;
        else if (!collective) { collective = c; collectiveFrom = `'${body}'`; }
      } else if ((m = /^(.*?)\b([A-Za-z_-]+):\s*nranks\s+(\d+)/.exec(body))) {
        // mpi_coll_bench / collemu bench header: "# mpi_coll_bench allreduce: nranks 8, ..."
        const c = collectiveFromName(m[2]!);
        if (c && !collective) { collective = c; collectiveFrom = `'${body.slice(0, m[0].length)}'`; }
        if (headerRanks === undefined) { headerRanks = Number(m[3]); headerRanksFrom = `'${m[2]}: nranks ${m[3]}'`; }
      } else if ((m = /^Rank\s+(\d+)\b/.exec(body))) {
        maxRank = Math.max(maxRank, Number(m[1]));
      } else if ((m = /^\.\.\.\s+(\d+)\s+more ranks/.exec(body))) {
        moreRanks = Number(m[1]);
      } else if ((m = /\bnThread\s+(\d+)\s+nGpus\s+(\d+)/.exec(body))) {
        threadGpus = Number(m[1]) * Number(m[2]);
      } else {
        const toks = body.split(/\s+/);
        if (toks.includes('size') && toks.includes('count') && toks.includes('type')) hasRoot = toks.includes('root');
      }
      continue;
    }
    const t = line.split(/\s+/);
    // only rows that start with a byte count are data; other lines (NCCL INFO, warnings) are skipped
    if (!/^\d+$/.test(t[0]!)) continue;
    const lead = hasRoot ? 5 : 4;
    const need = lead + 4;
    const layout = `size count type redop${hasRoot ? ' root' : ''} time algbw busbw #wrong`;
    if (t.length < need) throw new UsageError(`${where}:${i + 1}: a data row needs at least ${need} columns (${layout}), got ${t.length}`);
    if (firstCols && t.length !== firstCols.n) {
      throw new UsageError(`${where}:${i + 1}: inconsistent columns: this row has ${t.length}, the row on line ${firstCols.line} has ${firstCols.n}`);
    }
    firstCols ??= { n: t.length, line: i + 1 };
    const size = Number(t[0]);
    if (!INT_RE.test(t[1]!)) throw new UsageError(`${where}:${i + 1}: count '${t[1]}' is not an integer (expected ${layout})`);
    if (NUM_RE.test(t[2]!) || NUM_RE.test(t[3]!)) throw new UsageError(`${where}:${i + 1}: expected ${layout}, but type/redop are '${t[2]}' '${t[3]}'`);
    if (hasRoot && !INT_RE.test(t[4]!)) throw new UsageError(`${where}:${i + 1}: root '${t[4]}' is not an integer (expected ${layout})`);
    const tt = t[lead]!;
    if (/^n\/?a$/i.test(tt)) { skipped++; continue; }
    if (!NUM_RE.test(tt)) throw new UsageError(`${where}:${i + 1}: out-of-place time '${tt}' is not a number (expected ${layout})`);
    const time = Number(tt);
    if (!(time > 0)) { skipped++; continue; }
    rows.push({ line: i + 1, size, count: Number(t[1]), type: t[2]!, redop: t[3]!, time });
  }
  if (rows.length === 0) {
    throw new UsageError(skipped > 0
      ? `${where}: no usable data rows (${skipped} row(s) with an N/A or zero out-of-place time)`
      : `${where}: no data rows (expected nccl-tests rows: size count type redop root time algbw busbw #wrong ...)`);
  }
  let ranks: number | undefined, ranksFrom: string | undefined;
  if (headerRanks !== undefined) { ranks = headerRanks; ranksFrom = headerRanksFrom; }
  else if (maxRank >= 0) { ranks = maxRank + 1 + moreRanks; ranksFrom = `the '# Rank' lines`; }
  else if (threadGpus !== undefined) { ranks = threadGpus; ranksFrom = `'nThread x nGpus' (one process)`; }
  return { rows, skipped, collective, collectiveFrom, unknownCollective, ranks, ranksFrom };
}

// ------------------------------------------------------------------ fitting

export interface CalibrateOptions {
  /** input file, for messages */
  file: string;
  collective?: string;
  ranks?: number;
  nodes?: number;
  /** preset name or JSON file (default flat) */
  topology?: string;
  /** algorithm name (default ring, or the collective's only algorithm) */
  algo?: string;
  reduceBw?: number;
  gpu?: string;
}

export interface FittedRow { size: number; measured_us: number; fitted_us: number; error_pct: number }

export interface CalibrationResult {
  file: string;
  collective: Collective;
  collectiveFrom: string;
  ranks: number;
  ranksFrom: string;
  algo: Algorithm;
  /** the topology with the fitted link */
  topo: Topology;
  /** index of the fitted link class */
  linkIndex: number;
  /** why this class was fitted */
  linkRole: string;
  method: 'linear' | 'optimizer';
  methodNote: string;
  rows: FittedRow[];
  maxAbsErrorPct: number;
  rmsErrorPct: number;
  skipped: number;
}

const sig = (x: number, n = 6) => (x === 0 ? 0 : Number(x.toPrecision(n)));

function defaultAlgo(coll: Collective): string {
  const as = algorithmsFor(coll);
  if (as.some((a) => a.name === 'ring')) return 'ring';
  if (as.length === 1) return as[0]!.name;
  throw new UsageError(`${coll} has several algorithms (${as.map((a) => a.name).join(', ')}): pick the one the measurement used with --algo`);
}

/** Evaluates an algorithm's cost with link class k set to (alpha seconds, x = 1/bw seconds per byte). */
class Model {
  private readonly base: Topology;
  constructor(readonly algo: Algorithm, base: Topology, readonly k: number, readonly specs: CollSpec[]) { this.base = base; }
  topoWith(alpha: number, x: number): Topology {
    const links = this.base.data.links.map((l, i): LinkClass => (i === this.k ? { name: l.name, alpha, bw: 1 / x } : { ...l }));
    return new Topology({ ...this.base.data, links });
  }
  /** per-row times in seconds */
  times(alpha: number, x: number): number[] {
    const t = this.topoWith(alpha, x);
    return this.specs.map((s) => this.algo.cost(s, t));
  }
}

const close = (a: number, b: number) => Math.abs(a - b) <= 1e-9 * Math.max(Math.abs(a), Math.abs(b)) + 1e-18;

/** Affine coefficients T_i = c0 + ca alpha + cb x, or undefined if cost() is not affine around (a0, x0). */
function affineCoefficients(m: Model, a0: number, x0: number): { c0: number; ca: number; cb: number }[] | undefined {
  const t0 = m.times(a0, x0), ta = m.times(2 * a0, x0), tb = m.times(a0, 2 * x0);
  const co = t0.map((v, i) => {
    const ca = (ta[i]! - v) / a0, cb = (tb[i]! - v) / x0;
    return { c0: v - ca * a0 - cb * x0, ca, cb };
  });
  for (const [a, x] of [[0.3 * a0, 5 * x0], [7 * a0, 0.2 * x0], [0, x0], [3 * a0, 3 * x0]] as const) {
    const t = m.times(a, x);
    if (!t.every((v, i) => close(v, co[i]!.c0 + co[i]!.ca * a + co[i]!.cb * x))) return undefined;
  }
  return co;
}

/**
 * Weighted least squares: minimize sum ((c0 + ca a + cb x - y) / y)^2 over a >= 0, x > 0.
 * Returns undefined when x cannot be positive (times do not grow with size) and throws when the two
 * parameters cannot be told apart.
 */
function linearFit(co: { c0: number; ca: number; cb: number }[], y: number[]): { a: number; x: number } | undefined {
  const A = co.map((c, i) => c.ca / y[i]!), B = co.map((c, i) => c.cb / y[i]!), r = co.map((c, i) => (y[i]! - c.c0) / y[i]!);
  const dot = (u: number[], v: number[]) => u.reduce((s, ui, i) => s + ui * v[i]!, 0);
  const na = Math.sqrt(dot(A, A)), nb = Math.sqrt(dot(B, B));
  if (!(nb > 0)) return undefined;
  const fitX = () => { const x = dot(B, r) / dot(B, B); return x > 0 ? { a: 0, x } : undefined; };
  if (!(na > 0)) return fitX();
  // normalized columns for conditioning
  const a1 = A.map((v) => v / na), b1 = B.map((v) => v / nb);
  const s11 = dot(a1, a1), s12 = dot(a1, b1), s22 = dot(b1, b1), t1 = dot(a1, r), t2 = dot(b1, r);
  const det = s11 * s22 - s12 * s12;
  if (det < 1e-12) {
    throw new UsageError('latency and bandwidth cannot be told apart from these rows: give a table with several message sizes, from latency-bound to bandwidth-bound');
  }
  const a = (t1 * s22 - t2 * s12) / det / na, x = (s11 * t2 - s12 * t1) / det / nb;
  if (a < 0) return fitX();
  if (!(x > 0)) return undefined;
  return { a, x };
}

/** Nelder-Mead on f(u, v) (2-D). */
function nelderMead(f: (p: number[]) => number, start: number[], step: number[], iters = 600): { p: number[]; v: number } {
  let s = [start, [start[0]! + step[0]!, start[1]!], [start[0]!, start[1]! + step[1]!]].map((p) => ({ p, v: f(p) }));
  for (let it = 0; it < iters; it++) {
    s.sort((a, b) => a.v - b.v);
    const [best, mid, worst] = s as [typeof s[0], typeof s[0], typeof s[0]];
    if (Math.abs(worst.v - best.v) <= 1e-15 * (1 + Math.abs(best.v)) && Math.hypot(worst.p[0]! - best.p[0]!, worst.p[1]! - best.p[1]!) < 1e-10) break;
    const c = [(best.p[0]! + mid.p[0]!) / 2, (best.p[1]! + mid.p[1]!) / 2];
    const at = (t: number) => { const p = [c[0]! + t * (worst.p[0]! - c[0]!), c[1]! + t * (worst.p[1]! - c[1]!)]; return { p, v: f(p) }; };
    const r = at(-1);
    if (r.v < best.v) { const e = at(-2); s = [best, mid, e.v < r.v ? e : r]; continue; }
    if (r.v < mid.v) { s = [best, mid, r]; continue; }
    const k = r.v < worst.v ? at(-0.5) : at(0.5);
    if (k.v < Math.min(r.v, worst.v)) { s = [best, mid, k]; continue; }
    s = [best, ...[mid, worst].map((q) => { const p = [(best.p[0]! + q.p[0]!) / 2, (best.p[1]! + q.p[1]!) / 2]; return { p, v: f(p) }; })];
  }
  s.sort((a, b) => a.v - b.v);
  return s[0]!;
}

export function calibrate(table: ParsedTable, o: CalibrateOptions): CalibrationResult {
  const where = o.file;
  // collective
  let coll: Collective, collectiveFrom: string;
  if (o.collective !== undefined) {
    const c = collectiveFromName(o.collective);
    if (!c) throw new UsageError(`unknown collective '${o.collective}' (known: ${COLLECTIVES.join(', ')})`);
    coll = c; collectiveFrom = '--collective';
  } else if (table.unknownCollective && !table.collective) {
    throw new UsageError(table.unknownCollective);
  } else if (table.collective) {
    coll = table.collective; collectiveFrom = `the header ${table.collectiveFrom}`;
  } else {
    throw new UsageError(`cannot tell the collective from ${where}'s header: pass --collective (${COLLECTIVES.join(', ')})`);
  }
  // ranks and topology
  let ranks = o.ranks, ranksFrom = '--ranks';
  if (ranks === undefined && table.ranks !== undefined && o.nodes === undefined) { ranks = table.ranks; ranksFrom = `the header: ${table.ranksFrom}`; }
  const topoName = o.topology ?? 'flat';
  if (ranks === undefined && o.nodes === undefined) {
    throw new UsageError(`cannot tell the rank count from ${where}'s header: pass --ranks N${topoName === 'flat' ? '' : ' or --nodes K'}`);
  }
  const base = makeTopology(topoName, { ranks, nodes: o.nodes, reduceBw: o.reduceBw, gpu: o.gpu });
  const p = base.p;
  if (o.ranks !== undefined && table.ranks !== undefined && table.ranks !== o.ranks) ranksFrom = `--ranks; the header says ${table.ranks}`;
  if (o.ranks === undefined) {
    if (o.nodes !== undefined) {
      ranksFrom = `--nodes ${o.nodes}`;
      if (table.ranks !== undefined && table.ranks !== p) {
        throw new UsageError(`${where} is a ${table.ranks}-rank run (${table.ranksFrom}), but --topology ${topoName} --nodes ${o.nodes} has ${p} ranks`);
      }
    }
  }
  if (p < 2) throw new UsageError(`calibration needs at least 2 ranks (got ${p}): a 1-rank run moves nothing over links`);
  // algorithm
  const algo = getAlgorithm(coll, o.algo ?? defaultAlgo(coll));
  const specs: CollSpec[] = table.rows.map((r) => ({ coll, p, count: countForSize(coll, p, r.size), op: (r.redop === 'avg' ? 'avg' : 'sum'), inPlace: false, root: 0 }));
  for (const s of specs) {
    const why = algo.unsupported?.(s, base);
    if (why) throw new UsageError(`${coll} algorithm '${algo.name}' cannot model this run: ${why}`);
  }
  // which link class
  const d = base.data;
  let k: number, linkRole: string;
  if (d.intra === d.inter || d.links.length === 1) {
    k = d.intra; linkRole = 'the only link class';
  } else if (base.nodes > 1) {
    k = d.inter; linkRole = `inter-node: the run spans ${base.nodes} nodes, so its traffic is bottlenecked by the inter-node link`;
  } else {
    k = d.intra; linkRole = 'intra-node: the run fits in one node, so its traffic uses only the intra-node link';
  }
  const fixedLinks = d.links.filter((_, i) => i !== k && (i === d.intra || i === d.inter));
  if (fixedLinks.length) linkRole += `; kept ${fixedLinks.map((l) => `'${l.name}' at ${fmt(l.bw / 1e9)} GB/s, ${fmt(l.alpha * 1e6)} us`).join(', ')} (from ${topoName})`;

  const model = new Model(algo, base, k, specs);
  const y = table.rows.map((r) => r.time * 1e-6);
  const a0 = Math.max(d.links[k]!.alpha, 1e-7), x0 = 1 / d.links[k]!.bw;
  const relSq = (t: number[]) => t.reduce((s, v, i) => s + ((v - y[i]!) / y[i]!) ** 2, 0);
  let fit: { a: number; x: number } | undefined;
  let method: 'linear' | 'optimizer' = 'linear';
  let methodNote = '';
  const co = affineCoefficients(model, a0, x0);
  if (co) {
    fit = linearFit(co, y);
    if (!fit) throw new UsageError(`${where}: cannot fit a bandwidth: the measured times do not grow with message size (include sizes large enough to be bandwidth-bound)`);
    const pred = co.map((c) => c.c0 + c.ca * fit!.a + c.cb * fit!.x);
    if (model.times(fit.a, fit.x).every((v, i) => close(v, pred[i]!))) {
      methodNote = `linear least squares on relative errors: ${algo.name}'s cost() is affine in alpha and 1/bw here (checked at 7 points and at the solution)`;
    } else {
      method = 'optimizer';
    }
  } else {
    method = 'optimizer';
  }
  if (method === 'optimizer') {
    // Nelder-Mead on (ln alpha, ln x); starts: the linear/local fit (if any), the preset, and spread points
    const f = (q: number[]) => { const v = relSq(model.times(Math.exp(q[0]!), Math.exp(q[1]!))); return Number.isFinite(v) ? v : Infinity; };
    const starts: number[][] = [[Math.log(a0), Math.log(x0)]];
    if (fit) starts.push([Math.log(Math.max(fit.a, 1e-12)), Math.log(fit.x)]);
    for (const [fa, fx] of [[10, 1], [0.1, 1], [1, 10], [1, 0.1], [10, 10], [0.1, 0.1]]) starts.push([Math.log(a0 * fa!), Math.log(x0 * fx!)]);
    let best = { p: starts[0]!, v: Infinity };
    for (const s of starts) {
      let r = nelderMead(f, s, [0.5, 0.5]);
      r = nelderMead(f, r.p, [0.05, 0.05]);
      if (r.v < best.v) best = r;
    }
    if (!Number.isFinite(best.v)) throw new UsageError(`${where}: the ${algo.name} model could not be fitted to these times`);
    fit = { a: Math.exp(best.p[0]!), x: Math.exp(best.p[1]!) };
    if (fit.a < 1e-12) fit.a = 0;
    methodNote = `Nelder-Mead on relative errors: ${algo.name}'s cost() is not affine in alpha and 1/bw on ${base.name} (e.g. a max() of regimes)`;
  }
  // round to 6 significant digits (what the JSON topology stores) and recompute with the real cost()
  const alphaUs = sig(fit!.a * 1e6), bwGBps = sig(1 / fit!.x / 1e9);
  if (!(bwGBps > 0) || !Number.isFinite(bwGBps)) throw new UsageError(`${where}: the fitted bandwidth is not a positive number`);
  const topo = model.topoWith(alphaUs * 1e-6, 1 / (bwGBps * 1e9));
  const rows: FittedRow[] = table.rows.map((r, i) => {
    const fitted = algo.cost(specs[i]!, topo) * 1e6;
    return { size: r.size, measured_us: r.time, fitted_us: fitted, error_pct: ((fitted - r.time) / r.time) * 100 };
  });
  const maxAbs = Math.max(...rows.map((r) => Math.abs(r.error_pct)));
  const rms = Math.sqrt(rows.reduce((s, r) => s + r.error_pct ** 2, 0) / rows.length);
  return {
    file: o.file, collective: coll, collectiveFrom, ranks: p, ranksFrom, algo, topo, linkIndex: k, linkRole, method, methodNote,
    rows, maxAbsErrorPct: maxAbs, rmsErrorPct: rms, skipped: table.skipped,
  };
}

const fmt = (x: number) => (Number.isInteger(x) ? String(x) : String(sig(x, 4)));

// ------------------------------------------------------------------ output

/** The fitted topology in the JSON format topologyFromJson accepts. */
export function fittedTopologyJson(r: CalibrationResult): Record<string, unknown> {
  const d = r.topo.data, hw = r.topo.hw;
  const used = [...new Set([d.intra, d.inter])];
  const links: Record<string, { latency_us: number; bandwidth_GBps: number }> = {};
  for (const i of used) links[d.links[i]!.name] = { latency_us: sig(d.links[i]!.alpha * 1e6), bandwidth_GBps: sig(d.links[i]!.bw / 1e9) };
  const j: Record<string, unknown> = {
    name: d.name.endsWith('-calibrated') ? d.name : `${basename(d.name).replace(/\.json$/, '')}-calibrated`,
    comment: `collemu calibrate ${basename(r.file)}: ${r.collective} ${r.algo.name}, ${r.ranks} ranks; fitted '${d.links[r.linkIndex]!.name}' (${r.method}); max |error| ${r.maxAbsErrorPct.toFixed(2)}%`,
    gpu: d.gpu,
    gpusPerNode: d.gpusPerNode,
    nodes: r.topo.nodes,
    links,
    intraNode: d.links[d.intra]!.name,
    interNode: d.links[d.inter]!.name,
  };
  // local reduce/copy cost: omitted = the GPU's HBM default; 0 = free (flat); otherwise 1/gamma
  const isDefault = close(d.gamma, reduceCostPerByte(hw)) && close(d.delta, copyCostPerByte(hw));
  if (!isDefault) {
    if (d.gamma === 0 && d.delta === 0) j.reduceBandwidth_GBps = 0;
    else if (close(d.gamma, d.delta)) j.reduceBandwidth_GBps = sig(1 / d.gamma / 1e9);
  }
  if (!close(d.memCapacity, hw.hbmBytes)) j.memoryCapacity_GB = d.memCapacity / 1e9;
  return j;
}

export function calibrationJson(r: CalibrationResult, out?: string): Record<string, unknown> {
  const l = r.topo.data.links[r.linkIndex]!;
  return {
    collective: r.collective,
    algo: r.algo.name,
    ranks: r.ranks,
    topology: r.topo.name,
    fitted: { link: l.name, latency_us: sig(l.alpha * 1e6), bandwidth_GBps: sig(l.bw / 1e9) },
    method: r.method,
    rows: r.rows.map((x) => ({ size: x.size, measured_us: x.measured_us, fitted_us: sig(x.fitted_us), error_pct: sig(x.error_pct, 4) })),
    max_abs_error_pct: sig(r.maxAbsErrorPct, 4),
    ...(out ? { out } : {}),
  };
}

export function formatCalibration(r: CalibrationResult, out?: string): string[] {
  const l = r.topo.data.links[r.linkIndex]!;
  const lines = [
    `# collemu calibrate: ${r.file}`,
    `# ${r.collective} (from ${r.collectiveFrom}), ${r.ranks} ranks (from ${r.ranksFrom}), ${r.rows.length} rows${r.skipped ? ` (${r.skipped} skipped: N/A or zero time)` : ''}`,
    `# model: ${r.collective} ${r.algo.name}, T = ${r.algo.formula}`,
    `# fitted topology ${r.topo.describe()}`,
    `# fitted link '${l.name}' (${r.linkRole})`,
    `#   latency ${(l.alpha * 1e6).toFixed(3)} us, bandwidth ${(l.bw / 1e9).toFixed(2)} GB/s`,
    `#   method: ${r.methodNote}`,
    '#',
    '#        size   measured   fitted    error',
    '#         (B)       (us)     (us)      (%)',
  ];
  const t = (us: number) => (us >= 1e5 ? us.toFixed(0) : us >= 1e4 ? us.toFixed(1) : us.toFixed(2)).padStart(9);
  for (const x of r.rows) {
    const e = x.error_pct;
    lines.push(`${String(x.size).padStart(13)}  ${t(x.measured_us)}${t(x.fitted_us)}  ${((e >= 0 ? '+' : '') + e.toFixed(2)).padStart(7)}`);
  }
  lines.push(`# max |error| ${r.maxAbsErrorPct.toFixed(2)}%, rms ${r.rmsErrorPct.toFixed(2)}%`);
  if (r.maxAbsErrorPct > 10) {
    lines.push(`# warning: the ${r.algo.name} model on ${r.topo.name} does not reproduce this table (max |error| ${r.maxAbsErrorPct.toFixed(1)}%): the measured algorithm or its synchronization differs from collemu's; try another --algo or --topology`);
  }
  if (out) lines.push(`# wrote ${out}: use it as  collemu bench ${r.collective} --algo ${r.algo.name} --topology ${out}`);
  return lines;
}

// ------------------------------------------------------------------ CLI

function intArg(what: string) {
  return (v: string) => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isInteger(n)) throw new InvalidArgumentError(`${what} must be an integer`);
    return n;
  };
}
function numArg(what: string) {
  return (v: string) => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError(`${what} must be a number`);
    return n;
  };
}

export function readTable(file: string): ParsedTable {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new UsageError(`cannot read ${file}: ${err.code === 'ENOENT' ? 'no such file' : err.code === 'EISDIR' ? 'is a directory' : err.message}`);
  }
  return parseNcclTable(text, file);
}

/** Registers `collemu calibrate` on the program. Errors are UsageError / TopologyError / AlgorithmError (exit 2 in main). */
export function registerCalibrate(program: Command): void {
  program
    .command('calibrate')
    .description('fit a link\'s latency and bandwidth so an algorithm\'s cost formula reproduces a measured nccl-tests table')
    .argument('<file>', 'nccl-tests output (text layout; also mpi_coll_bench / collemu bench tables)')
    .option('--topology <NAME|FILE>', 'topology whose link is fitted: flat, hgx-h100, dgx-a100, or a JSON file', 'flat')
    .option('--nodes <K>', 'nodes for hgx-h100 / dgx-a100 (8 GPUs each)', intArg('--nodes'))
    .option('--ranks <N>', 'rank count (default: from the file header)', intArg('--ranks'))
    .option('--collective <NAME>', `collective measured (default: from the file header): ${COLLECTIVES.join(', ')}`)
    .option('--algo <NAME>', 'algorithm whose cost() is fitted (default: ring)')
    .option('--reduce-bw <GB/s>', 'modeled local reduce/copy throughput (0 = free); default: the topology\'s', numArg('--reduce-bw'))
    .option('--gpu <NAME>', 'hardware profile: a100, h100, h200')
    .option('--out <FILE>', 'write the fitted topology as JSON (usable as --topology FILE)')
    .option('--json <FILE|->', 'write the result as JSON to FILE, or to stdout with -')
    .action((file: string, f: { topology: string; nodes?: number; ranks?: number; collective?: string; algo?: string; reduceBw?: number; gpu?: string; out?: string; json?: string }) => {
      const table = readTable(file);
      let r: CalibrationResult;
      try {
        r = calibrate(table, { file, collective: f.collective, ranks: f.ranks, nodes: f.nodes, topology: f.topology, algo: f.algo, reduceBw: f.reduceBw, gpu: f.gpu });
      } catch (e) {
        if (e instanceof Error && e.message.startsWith('unknown GPU')) throw new UsageError(e.message);
        if (e instanceof TopologyError && f.ranks === undefined && table.ranks !== undefined && f.nodes === undefined) {
          throw new TopologyError(`${e.message} (the rank count ${table.ranks} comes from ${file}'s header; pass --ranks or --nodes)`);
        }
        throw e;
      }
      if (f.out) {
        writeOutput(f.out, JSON.stringify(fittedTopologyJson(r), null, 2) + '\n', '--out');
      }
      const toStdout = f.json === '-';
      if (!toStdout) for (const l of formatCalibration(r, f.out)) process.stdout.write(l + '\n');
      if (f.json) {
        const text = JSON.stringify(calibrationJson(r, f.out), null, 2) + '\n';
        if (toStdout) process.stdout.write(text);
        else {
          writeOutput(f.json, text, '--json');
        }
      }
    });
}
