/**
 * Host speed and memory of the one-thread `simulate` executor at scale (the scale issue's targets):
 *  - ring AllReduce over 1,024 ranks on flat, the ordinary ring program (2(p-1) steps of a send and
 *    a receive per rank, 4.2 M ops): target <= 1 s host time;
 *  - hierarchical AllReduce over 16,384 ranks (hgx-h100, 2,048 nodes; 134.6 M ops): target <= 5 s;
 *  - memory under 4 GiB.
 * Programs are streamed (Algorithm.rankProgram: each rank's ops are generated as it executes);
 * one row runs the old way (build() arrays for every rank) for comparison.
 *
 * Each case runs in a fresh Node process, so its peak RSS is its own: first a warm-up (the same
 * algorithm on a small instance, so the timed run measures compiled code, not the JIT warming up),
 * then the timed run. `--cold` skips the warm-up. Columns: host s = wall time of simulate() (for
 * "arrays", build() + simulate()); ops/s = ops executed per host second; rss = process RSS after
 * the run (process.memoryUsage().rss); peak rss = the process's maximum RSS
 * (process.resourceUsage().maxRSS); err = |simulated - cost()| / cost().
 *
 *   node dist/bench/simulate.js [--cold] [--quick]      (or runSimulateBench(), which returns the table)
 */
import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { directAllreduce } from '../collectives/allreduce/direct.js';
import { hierarchicalAllreduce } from '../collectives/allreduce/hierarchical.js';
import { rhdAllreduce } from '../collectives/allreduce/rhd.js';
import { ringAllreduce } from '../collectives/allreduce/ring.js';
import type { Algorithm, CollSpec } from '../collectives/types.js';
import { simulate } from '../runtime/simulate.js';
import { makeTopology, type Topology } from '../runtime/topology.js';

interface Case {
  name: string;
  algo: Algorithm;
  topo: () => Topology;
  /** a small instance of the same kind, for the warm-up */
  warm: () => Topology;
  /** 'arrays': build() every rank's program first (the pre-streaming path) */
  mode: 'stream' | 'arrays';
  /** target host seconds, if any */
  target?: number;
  /** left out by --quick */
  slow?: boolean;
}

const COUNT = 1 << 24; // 64 MB of float32 per rank (virtual: no data moves)

const CASES: Case[] = [
  { name: 'ring-flat-1024', algo: ringAllreduce, topo: () => makeTopology('flat', { ranks: 1024 }), warm: () => makeTopology('flat', { ranks: 128 }), mode: 'stream', target: 1 },
  { name: 'ring-flat-1024-arrays', algo: ringAllreduce, topo: () => makeTopology('flat', { ranks: 1024 }), warm: () => makeTopology('flat', { ranks: 128 }), mode: 'arrays' },
  { name: 'ring-hgx-1024', algo: ringAllreduce, topo: () => makeTopology('hgx-h100', { nodes: 128 }), warm: () => makeTopology('hgx-h100', { nodes: 16 }), mode: 'stream' },
  { name: 'rhd-hgx-16384', algo: rhdAllreduce, topo: () => makeTopology('hgx-h100', { nodes: 2048 }), warm: () => makeTopology('hgx-h100', { nodes: 64 }), mode: 'stream' },
  { name: 'direct-flat-512', algo: directAllreduce, topo: () => makeTopology('flat', { ranks: 512 }), warm: () => makeTopology('flat', { ranks: 64 }), mode: 'stream' },
  { name: 'hier-hgx-2048', algo: hierarchicalAllreduce, topo: () => makeTopology('hgx-h100', { nodes: 256 }), warm: () => makeTopology('hgx-h100', { nodes: 32 }), mode: 'stream' },
  { name: 'hier-hgx-16384', algo: hierarchicalAllreduce, topo: () => makeTopology('hgx-h100', { nodes: 2048 }), warm: () => makeTopology('hgx-h100', { nodes: 64 }), mode: 'stream', target: 5, slow: true },
];

interface Measured { name: string; ranks: number; algo: string; topo: string; ops: number; seconds: number; rss: number; peakRss: number; err: number }

const spec = (p: number): CollSpec => ({ coll: 'allreduce', p, count: COUNT, op: 'sum', inPlace: false, root: 0 });

function runOnce(c: Case, topo: Topology): { ops: number; seconds: number; time: number } {
  const s = spec(topo.p);
  const t0 = performance.now();
  const programs = c.mode === 'arrays' ? c.algo.build(s, topo) : (r: number) => c.algo.rankProgram!(s, topo, r);
  const res = simulate({ topo, programs });
  const seconds = (performance.now() - t0) / 1e3;
  return { ops: res.ops, seconds, time: res.time };
}

/** Run one case in this process (the child side). */
export function runCase(name: string, cold = false): Measured {
  const c = CASES.find((x) => x.name === name);
  if (!c) throw new Error(`unknown case ${name} (known: ${CASES.map((x) => x.name).join(', ')})`);
  if (!cold) runOnce(c, c.warm());
  const topo = c.topo();
  const r = runOnce(c, topo);
  const f = c.algo.cost(spec(topo.p), topo);
  return {
    name, ranks: topo.p, algo: c.algo.name, topo: topo.name, ops: r.ops, seconds: r.seconds,
    rss: process.memoryUsage().rss, peakRss: process.resourceUsage().maxRSS * 1024, err: Math.abs(r.time - f) / f,
  };
}

const GiB = 1024 ** 3, MiB = 1024 ** 2;
const fmtBytes = (b: number) => (b >= GiB ? `${(b / GiB).toFixed(2)} GiB` : `${(b / MiB).toFixed(0)} MiB`);
const fmtRate = (x: number) => (x >= 1e6 ? `${(x / 1e6).toFixed(2)} M` : `${(x / 1e3).toFixed(1)} k`);

export async function runSimulateBench(opts: { cold?: boolean; quick?: boolean } = {}): Promise<string> {
  const self = fileURLToPath(import.meta.url);
  const lines: string[] = [];
  lines.push(`simulate executor at scale: AllReduce of ${COUNT * 4 / MiB} MB per rank (timing only), programs streamed per rank unless "arrays"; one fresh process per row${opts.cold ? ', no warm-up (cold JIT)' : ', after a small warm-up run'}`);
  const head = ['case', 'ranks', 'algo', 'topology', 'ops', 'host s', 'ops/s', 'rss', 'peak rss', 'err vs cost()', 'target'];
  const rows: string[][] = [];
  for (const c of CASES) {
    if (opts.quick && c.slow) continue;
    const args = [self, '--case', c.name];
    if (opts.cold) args.push('--cold');
    const out = execFileSync(process.execPath, args, { encoding: 'utf8', maxBuffer: 1 << 20 });
    const m = JSON.parse(out.trim().split('\n').pop()!) as Measured;
    const target = c.target === undefined ? '' : `<= ${c.target} s: ${m.seconds <= c.target ? 'met' : 'NOT met'}`;
    rows.push([m.name, String(m.ranks), m.algo, m.topo, String(m.ops), m.seconds.toFixed(2), fmtRate(m.ops / m.seconds), fmtBytes(m.rss), fmtBytes(m.peakRss), m.err.toExponential(1), target]);
  }
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const fmt = (r: string[]) => r.map((x, i) => (i === 0 || i === 2 || i === 3 || i === r.length - 1 ? x.padEnd(w[i]!) : x.padStart(w[i]!))).join('  ').trimEnd();
  lines.push(fmt(head));
  for (const r of rows) lines.push(fmt(r));
  return lines.join('\n');
}

const isMain = process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  const argv = process.argv.slice(2);
  const k = argv.indexOf('--case');
  if (k >= 0) console.log(JSON.stringify(runCase(argv[k + 1]!, argv.includes('--cold'))));
  else console.log(await runSimulateBench({ cold: argv.includes('--cold'), quick: argv.includes('--quick') }));
}
