/**
 * Host-speed benchmark of the emulator: wall time per AllReduce with real data, 8 ranks on this
 * machine, next to Open MPI over shared memory (../shared/peers). With `--peer live` it runs
 * `../shared/peers/run_openmpi.sh` in the same run (after `../shared/peers/setup.sh`); otherwise it
 * reads the recorded table in ../shared/peers/results/.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runBench, type BenchRow } from '../cli/bench.js';
import { parseNcclTable } from '../cli/calibrate.js';
import { Cluster } from '../runtime/cluster.js';
import { makeTopology } from '../runtime/topology.js';
import { NATIVE, YIELD } from '../runtime/native.js';
import { resolveAlgorithm } from '../collectives/registry.js';
import { memoryTraffic, parallelBandwidth } from './membw.js';

const REPEATS = 3;

const here = dirname(fileURLToPath(import.meta.url));
/** the repo root, from dist/bench or bench/ */
const repo = existsSync(join(here, '..', 'package.json')) ? resolve(here, '..') : resolve(here, '..', '..');
/** ../shared/peers, or COLLEMU_PEERS_DIR (a writable copy where ../shared is read-only: setup.sh builds into it) */
const peers = process.env.COLLEMU_PEERS_DIR ? resolve(process.env.COLLEMU_PEERS_DIR) : resolve(repo, '..', 'shared', 'peers');

/** size (bytes) -> out-of-place time (us) of an nccl-tests style table (the calibrate parser). */
export function parseTable(text: string, where = 'table'): Map<number, number> {
  return new Map(parseNcclTable(text, where).rows.map((r) => [r.size, r.time]));
}

function openMpiTimes(live: boolean, ranks: number, min: string, max: string): { times: Map<number, number>; source: string } {
  if (live) {
    const script = join(peers, 'run_openmpi.sh');
    let out: string;
    try {
      out = execFileSync(script, [String(ranks), 'allreduce', min, max], { encoding: 'utf8', cwd: peers, stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (e) {
      const x = e as { status?: number | null; stderr?: string; message: string };
      const why = (x.stderr ?? '').trim().split('\n').slice(-3).join(' / ') || x.message.split('\n')[0];
      throw new Error(`the live Open MPI run failed (${script}, exit ${x.status ?? '?'}): ${why}`);
    }
    return { times: parseTable(out, script), source: `live: ${script} ${ranks} allreduce ${min} ${max}` };
  }
  const file = join(peers, 'results', `openmpi_allreduce_np${ranks}.txt`);
  if (!existsSync(file)) return { times: new Map(), source: 'none (no recorded table)' };
  return { times: parseTable(readFileSync(file, 'utf8'), file), source: `recorded: ${file}` };
}

export async function runHostBench(opts: { live?: boolean; quick?: boolean } = {}): Promise<string> {
  const lines: string[] = [];
  const sizes = opts.quick ? [1024, 1 << 20, 16 << 20] : [1024, 1 << 20, 16 << 20, 64 << 20, 256 << 20];
  const topo = makeTopology('hgx-h100', { ranks: 8 });
  const mpi = openMpiTimes(!!opts.live, 8, '1K', opts.quick ? '16M' : '256M');
  lines.push(`AllReduce host wall time per call, 8 ranks, float32 sum, out-of-place, --algo auto on hgx-h100 (collemu) vs Open MPI 4.1 shared memory`);
  lines.push(`Open MPI figures: ${mpi.source}`);
  lines.push(`Host time: median of ${REPEATS} runs (range in brackets), each the mean of many iterations after a long warm-up: the workers' JIT and`);
  lines.push(`the host scheduler take thousands of iterations to settle at small sizes (1 KB: 430-450 us/call over the first 100, 35-70 us after 20,000).`);
  lines.push(`Native reduce/copy kernels: ${NATIVE ? 'on (native/kernels.c built)' : 'OFF (not built, or COLLEMU_NO_NATIVE_KERNELS set)'}.`);
  lines.push(`Waiting ranks yield-poll (sched_yield) before blocking: ${YIELD ? 'on (native/yieldwait.c built)' : 'OFF (native helper not built, or COLLEMU_NO_YIELD set)'}.`);
  lines.push(`${'size'.padStart(10)}  ${'algo'.padStart(12)}  ${'collemu(us)'.padStart(12)}  ${'range(us)'.padStart(19)}  ${'OpenMPI(us)'.padStart(12)}  ${'ratio'.padStart(6)}  ${'virtual(us)'.padStart(11)}  ${'#wrong'.padStart(6)}`);
  const c = await Cluster.start(topo);
  try {
    for (const s of sizes) {
      const [iters, warmup] = s >= 64 << 20 ? [5, 2] : s >= 16 << 20 ? [20, 5] : s >= 1 << 20 ? [200, 100] : [5000, 3000];
      const host: number[] = [];
      let last: BenchRow | undefined;
      for (let k = 0; k < REPEATS; k++) {
        const { rows } = await runBench({
          coll: 'allreduce', topo, algo: 'auto', minBytes: s, maxBytes: s, factor: 2, iters, warmup,
          check: k === 0, op: 'sum', root: 0, pace: 0, inPlace: false,
        }, c);
        last = rows[0]!;
        if (k === 0 && last.oop.nwrong !== 0) throw new Error(`${s} B: ${last.oop.nwrong} wrong`);
        host.push(last.oop.host_time);
      }
      host.sort((a, b) => a - b);
      const med = host[Math.floor(host.length / 2)]!;
      const r = last!;
      const m = mpi.times.get(s);
      const range = `[${host[0]!.toFixed(1)}..${host[host.length - 1]!.toFixed(1)}]`;
      lines.push(`${fmtSize(s).padStart(10)}  ${r.oop.algo.padStart(12)}  ${med.toFixed(1).padStart(12)}  ${range.padStart(19)}  ${(m === undefined ? '-' : m.toFixed(1)).padStart(12)}  ${(m === undefined ? '-' : (med / m).toFixed(2)).padStart(6)}  ${r.oop.time.toFixed(2).padStart(11)}  ${'0'.padStart(6)}`);
    }
  } finally {
    await c.close();
  }
  // 64 ranks, 64 MB, real data: median of REPEATS runs on one cluster, the first one checked
  if (!opts.quick) {
    const t64 = makeTopology('hgx-h100', { nodes: 8 });
    const bwBefore = await parallelBandwidth(10);
    const c64 = await Cluster.start(t64);
    try {
      const host: number[] = [];
      let first: BenchRow | undefined;
      for (let k = 0; k < REPEATS; k++) {
        const { rows } = await runBench({
          coll: 'allreduce', topo: t64, algo: 'auto', minBytes: 64 << 20, maxBytes: 64 << 20, factor: 2, iters: 3, warmup: 1,
          check: k === 0, op: 'sum', root: 0, pace: 0, inPlace: false,
        }, c64);
        first ??= rows[0]!;
        host.push(rows[0]!.oop.host_time / 1e3);
      }
      host.sort((a, b) => a - b);
      const r = first!;
      await c64.close(); // its 8 GB freed before measuring the bandwidth again (close() again below is a no-op)
      const bwAfter = await parallelBandwidth(10);
      const spec = { coll: 'allreduce' as const, p: 64, count: (64 << 20) / 4, op: 'sum' as const, inPlace: false, root: 0 };
      const traffic = memoryTraffic(resolveAlgorithm(spec, t64, r.oop.algo).build(spec, t64)) / 1e9;
      const med = host[Math.floor(host.length / 2)]!;
      const sum = (g: number[] | undefined) => (g ? `${g.reduce((a, b) => a + b, 0).toFixed(1)} GB/s` : 'n/a (native kernels not built)');
      lines.push('');
      lines.push(`64 ranks (8 x hgx-h100), 64 MB AllReduce, real data: host ${med.toFixed(1)} ms per call [${host[0]!.toFixed(1)}..${host[host.length - 1]!.toFixed(1)}] (target <= 500 ms; SimGrid SMPI 2.33 s), algo ${r.oop.algo}, virtual ${r.oop.time.toFixed(1)} us, #wrong ${r.oop.nwrong}`);
      lines.push(`  memory traffic per call ${traffic.toFixed(1)} GB (reads + writes of its receives: bench/membw.ts), ${(traffic / (med / 1e3)).toFixed(1)} GB/s at the median;`);
      lines.push(`  both cores streaming a reduce on this host just before / after: ${sum(bwBefore)} / ${sum(bwAfter)} (a shared VM: it varies from minute to minute)`);
    } finally {
      await c64.close();
    }
  }
  return lines.join('\n');
}

function fmtSize(b: number): string {
  if (b >= 1 << 20) return `${b / (1 << 20)} MB`;
  if (b >= 1024) return `${b / 1024} KB`;
  return `${b} B`;
}
