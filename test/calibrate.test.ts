/** `collemu calibrate`: parsing nccl-tests tables, fitting link alpha / bandwidth, the fitted topology round trip, bad input. */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ringAllreduce } from '../collectives/allreduce/ring.js';
import { countForSize, type Algorithm, type Collective } from '../collectives/types.js';
import { calibrate, parseNcclTable } from '../cli/calibrate.js';
import { makeTopology, Topology, topologyFromJson } from '../runtime/topology.js';

const BIN = join(import.meta.dirname, '..', 'bin', 'collemu');
function run(args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

const RESULTS = join(import.meta.dirname, '..', '..', 'shared', 'peers', 'results');
const NVLINK = join(RESULTS, 'smpi_allreduce_np8_nvlink.txt');
const IB64 = join(RESULTS, 'smpi_allreduce_np64_ib.txt');
const noNvlink = !existsSync(NVLINK);
const noIb64 = !existsSync(IB64);
if (noNvlink || noIb64) console.warn(`calibrate.test: ${RESULTS} is missing (../shared not checked out): the SMPI table tests are skipped`);

const dir = mkdtempSync(join(tmpdir(), 'collemu-cal-'));
const SIZES = [1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864];

/** A topology with link class k replaced. */
function withLink(t: Topology, k: number, latencyUs: number, bwGBps: number): Topology {
  const links = t.data.links.map((l, i) => (i === k ? { name: l.name, alpha: latencyUs * 1e-6, bw: bwGBps * 1e9 } : { ...l }));
  return new Topology({ ...t.data, links });
}

/** A table in the real nccl-tests layout (nThread/nGpus header, Rank lines, in-place columns) from a cost formula. */
function ncclTestsText(coll: Collective, algo: Algorithm, topo: Topology, o: { perf?: string; extra?: boolean } = {}): string {
  const p = topo.p;
  const lines = [
    `# Collective test starting: ${o.perf ?? 'all_reduce_perf'}`,
    `# nThread 1 nGpus 1 minBytes 1024 maxBytes 67108864 step: 4(factor) warmup iters: 5 iters: 20 agg iters: 1 validation: 1 graph: 0`,
    '#',
    '# Using devices',
    ...Array.from({ length: p }, (_, r) => `#  Rank ${String(r).padStart(2)} Group  0 Pid  ${1000 + r} on node${Math.floor(r / 8)} device  ${r % 8} [0x1b] NVIDIA H100 80GB HBM3`),
    'node0:1000:1000 [0] NCCL INFO Bootstrap : Using eth0:10.0.0.1<0>',
    '#',
    '#                                                              out-of-place                       in-place          ',
    '#       size         count      type   redop    root     time   algbw   busbw #wrong     time   algbw   busbw #wrong',
    '#        (B)    (elements)                               (us)  (GB/s)  (GB/s)            (us)  (GB/s)  (GB/s)       ',
  ];
  for (const size of SIZES) {
    const count = countForSize(coll, p, size);
    const t = algo.cost({ coll, p, count, op: 'sum', inPlace: false, root: 0 }, topo) * 1e6;
    const alg = size / 1e3 / t;
    const extra = o.extra ? '  12.5  extra' : '';
    lines.push(`${String(size).padStart(12)}  ${String(size / 4).padStart(12)}     float     sum      -1  ${t.toPrecision(12)}  ${alg.toFixed(2)}  ${alg.toFixed(2)}    N/A  ${t.toPrecision(12)}  ${alg.toFixed(2)}  ${alg.toFixed(2)}    N/A${extra}`);
  }
  lines.push('# Out of bounds values : 0 OK', '# Avg bus bandwidth    : 12.3 ', '#');
  return lines.join('\n') + '\n';
}

interface CalJson {
  collective: string; ranks: number; topology: string; method: string;
  fitted: { link: string; latency_us: number; bandwidth_GBps: number };
  rows: { size: number; measured_us: number; fitted_us: number; error_pct: number }[];
  max_abs_error_pct: number;
}
function calJson(args: string[]): CalJson {
  const r = run(['calibrate', ...args, '--json', '-']);
  expect(r.err).toBe('');
  expect(r.code).toBe(0);
  return JSON.parse(r.out) as CalJson;
}
const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);

describe('parsing nccl-tests tables', () => {
  it('reads the collective from "Collective test starting", the rank count from the Rank lines, and skips NCCL INFO lines', () => {
    const t = parseNcclTable(ncclTestsText('allreduce', ringAllreduce, makeTopology('flat', { ranks: 4 })), 'x.txt');
    expect(t.collective).toBe('allreduce');
    expect(t.ranks).toBe(4);
    expect(t.rows.map((r) => r.size)).toEqual(SIZES);
    expect(t.rows[0]!.type).toBe('float');
  });

  it('reads mpi_coll_bench / collemu headers, N/A times, extra columns, and the old layout without root', () => {
    const mpi = parseNcclTable([
      '# mpi_coll_bench allgather: nranks 6, minBytes 1024 maxBytes 4096 step: 4(factor)',
      '#       size         count      type   redop    root     time   algbw   busbw  #wrong    real',
      '        1024            42     float    none      -1     7.20    0.14    0.12       0    176.77',
      '        2048            84     float    none      -1      N/A     N/A     N/A     N/A    176.77',
      '        4096           170     float    none      -1     7.21    0.57    0.50     N/A    180.03',
    ].join('\n'), 'm.txt');
    expect(mpi.collective).toBe('allgather');
    expect(mpi.ranks).toBe(6);
    expect(mpi.rows.map((r) => r.time)).toEqual([7.2, 7.21]);
    expect(mpi.skipped).toBe(1);
    const old = parseNcclTable([
      '# nThread 1 nGpus 4 minBytes 8 maxBytes 16 step: 2(factor) warmup iters: 5 iters: 20 validation: 1',
      '#       size         count    type   redop     time   algbw   busbw  error     time   algbw   busbw  error',
      '           8             2   float     sum    30.00    0.00    0.00  0e+00    29.00    0.00    0.00  0e+00',
      '          16             4   float     sum    31.00    0.00    0.00  0e+00    30.00    0.00    0.00  0e+00',
    ].join('\n'), 'o.txt');
    expect(old.ranks).toBe(4); // nThread x nGpus, no Rank lines
    expect(old.collective).toBeUndefined();
    expect(old.rows.map((r) => r.time)).toEqual([30, 31]);
  });
});

describe('fitting synthetic tables made from collemu\'s own formulas (exact recovery)', () => {
  it('flat ring AllReduce, 8 ranks: linear fit recovers 2.5 us / 123.4 GB/s', () => {
    const file = join(dir, 'synthetic_flat.txt');
    writeFileSync(file, ncclTestsText('allreduce', ringAllreduce, makeTopology('flat', { ranks: 8, linkLatency: 2.5, linkBw: 123.4 }), { extra: true }));
    const j = calJson([file]);
    expect(j.collective).toBe('allreduce');
    expect(j.ranks).toBe(8);
    expect(j.topology).toBe('flat');
    expect(j.method).toBe('linear');
    expect(j.fitted.link).toBe('link');
    expect(rel(j.fitted.latency_us, 2.5)).toBeLessThan(1e-5);
    expect(rel(j.fitted.bandwidth_GBps, 123.4)).toBeLessThan(1e-5);
    expect(j.rows).toHaveLength(SIZES.length);
    expect(j.max_abs_error_pct).toBeLessThan(1e-3);
  });

  it('hgx-h100 with 2 nodes (ring cost is a max() of regimes): the optimizer recovers the inter-node link 7 us / 40 GB/s', () => {
    const base = makeTopology('hgx-h100', { nodes: 2 });
    const file = join(dir, 'synthetic_hgx2.txt');
    writeFileSync(file, ncclTestsText('allreduce', ringAllreduce, withLink(base, base.data.inter, 7, 40)));
    const r = run(['calibrate', file, '--topology', 'hgx-h100', '--nodes', '2']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/fitted link 'ib-ndr400' \(inter-node: .*kept 'nvlink4' at 450 GB\/s, 1 us/);
    const j = calJson([file, '--topology', 'hgx-h100', '--nodes', '2']);
    expect(j.method).toBe('optimizer');
    expect(j.fitted.link).toBe('ib-ndr400');
    expect(rel(j.fitted.latency_us, 7)).toBeLessThan(1e-3);
    expect(rel(j.fitted.bandwidth_GBps, 40)).toBeLessThan(1e-3);
    expect(j.max_abs_error_pct).toBeLessThan(0.01);
  });

  it('a single-node dgx-a100 run fits the intra-node link (and in-process functions agree)', () => {
    const base = makeTopology('dgx-a100', { ranks: 8 });
    const text = ncclTestsText('allreduce', ringAllreduce, withLink(base, base.data.intra, 1.7, 250));
    const res = calibrate(parseNcclTable(text, 'a.txt'), { file: 'a.txt', topology: 'dgx-a100' });
    expect(res.linkRole).toMatch(/^intra-node/);
    const l = res.topo.data.links[res.linkIndex]!;
    expect(l.name).toBe('nvlink3');
    expect(rel(l.alpha, 1.7e-6)).toBeLessThan(1e-5);
    expect(rel(l.bw, 250e9)).toBeLessThan(1e-5);
  });

  it('round trip: a `collemu bench` table calibrates back to its --link-latency / --link-bw', () => {
    const b = run(['bench', 'allreduce', '--algo', 'ring', '--topology', 'flat', '--ranks', '4', '--link-latency', '3', '--link-bw', '100', '-b', '1K', '-e', '16M', '-n', '1', '-w', '0', '-c', '0']);
    expect(b.code).toBe(0);
    const file = join(dir, 'bench_out.txt');
    writeFileSync(file, b.out);
    const j = calJson([file]); // collective and ranks from the '# collemu bench allreduce: nranks 4' header
    expect(j.ranks).toBe(4);
    expect(rel(j.fitted.latency_us, 3)).toBeLessThan(2e-3); // times are printed with 2 decimals
    expect(rel(j.fitted.bandwidth_GBps, 100)).toBeLessThan(2e-3);
  });

  it('--out writes a topology JSON that topologyFromJson and every command accept; bench on it reproduces the fitted times', () => {
    const file = join(dir, 'synthetic_rt.txt');
    writeFileSync(file, ncclTestsText('allreduce', ringAllreduce, makeTopology('flat', { ranks: 8, linkLatency: 1.3, linkBw: 310 })));
    const out = join(dir, 'fitted.json');
    const j = calJson([file, '--out', out]);
    const topoJson = JSON.parse(readFileSync(out, 'utf8')) as Record<string, unknown>;
    const t = topologyFromJson(topoJson, out);
    expect(t.p).toBe(8);
    expect(t.gamma).toBe(0);
    expect(t.data.links[0]!.alpha * 1e6).toBeCloseTo(j.fitted.latency_us, 9);
    expect(t.data.links[0]!.bw / 1e9).toBeCloseTo(j.fitted.bandwidth_GBps, 6);
    const td = run(['topology', '--topology', out]);
    expect(td.code).toBe(0);
    expect(td.out).toContain('8 ranks');
    const b = run(['bench', 'allreduce', '--algo', 'ring', '--topology', out, '-b', '1K', '-e', '4M', '-n', '1', '-w', '0', '--no-in-place', '--json', '-']);
    expect(b.err).toBe('');
    expect(b.code).toBe(0);
    const rows = JSON.parse(b.out) as { size: number; time: number }[];
    expect(rows).toHaveLength(7);
    for (const row of rows) {
      const want = j.rows.find((x) => x.size === row.size)!;
      expect(rel(row.time, want.fitted_us)).toBeLessThan(1e-5);
    }
    // the text output names the file and how to use it
    expect(run(['calibrate', file, '--out', out]).out).toContain(`# wrote ${out}: use it as  collemu bench allreduce --algo ring --topology ${out}`);
  });
});

describe('fitting the SimGrid SMPI peer tables', () => {
  it.skipIf(noNvlink)('np8 nvlink (platform 1 us, 450 GB/s, +0.2 us skew): ~1 us and ~450 GB/s, every size within 2%', () => {
    const r = run(['calibrate', NVLINK]);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^# fitted link 'link' \(the only link class\)$/m);
    expect(r.out).toMatch(/^#\s+latency 1\.0\d\d us, bandwidth 4[45]\d\.\d\d GB\/s$/m);
    const j = calJson([NVLINK]);
    expect(j.collective).toBe('allreduce');
    expect(j.ranks).toBe(8);
    expect(rel(j.fitted.latency_us, 1)).toBeLessThan(0.03); // the 0.2 us skew over 14 latencies: ~1.015
    expect(rel(j.fitted.bandwidth_GBps, 450)).toBeLessThan(0.03);
    expect(j.rows).toHaveLength(9);
    for (const row of j.rows) expect(Math.abs(row.error_pct), String(row.size)).toBeLessThan(2);
    expect(j.max_abs_error_pct).toBeLessThan(2);
  });

  it.skipIf(noIb64)('np64 ib (8 nodes x 8, inter-node 5 us / 50 GB/s): the ring\'s slowest link, fitted on flat, is ~5 us / ~50 GB/s', () => {
    const j = calJson([IB64]);
    expect(j.ranks).toBe(64);
    expect(rel(j.fitted.latency_us, 5)).toBeLessThan(0.03);
    expect(rel(j.fitted.bandwidth_GBps, 50)).toBeLessThan(0.03);
    expect(j.max_abs_error_pct).toBeLessThan(2);
  });

  it.skipIf(noIb64)('np64 ib with --topology hgx-h100 --nodes 8 fits the inter-node link, keeps NVLink, and warns when the model cannot match', () => {
    // SMPI's `lr` ring is MPI_Sendrecv in lock step, so every one of its 126 steps pays the 5 us
    // inter-node hop (631 us at 1 KB). collemu's ring (collectives/allreduce/ring.ts) pipelines its
    // sends, so only 16 of the 126 hops on the critical path cross nodes (190 us at 1 KB with 5 us);
    // no inter-node (alpha, bw) makes that formula match SMPI at every size, and calibrate says so.
    const r = run(['calibrate', IB64, '--topology', 'hgx-h100', '--nodes', '8']);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/fitted link 'ib-ndr400' \(inter-node: the run spans 8 nodes.*kept 'nvlink4' at 450 GB\/s, 1 us \(from hgx-h100\)\)/);
    const j = calJson([IB64, '--topology', 'hgx-h100', '--nodes', '8']);
    expect(j.ranks).toBe(64);
    expect(j.topology).toBe('hgx-h100');
    expect(j.fitted.link).toBe('ib-ndr400');
    expect(j.method).toBe('optimizer');
    if (j.max_abs_error_pct > 10) expect(r.out).toMatch(/^# warning: the ring model on hgx-h100 does not reproduce this table/m);
  });
});

describe('calibrate: bad input is one line, exit code 2', () => {
  const w = (name: string, text: string) => { const f = join(dir, name); writeFileSync(f, text); return f; };
  const good = w('good.txt', ncclTestsText('allreduce', ringAllreduce, makeTopology('flat', { ranks: 8 })));
  const row = (t: string) => `        1024           256     float     sum      -1    ${t}    0.07    0.13       0`;
  const cases: [string, string[], RegExp][] = [
    ['missing file', [join(dir, 'nope.txt')], /cannot read .*nope\.txt: no such file/],
    ['a directory', [dir], /cannot read .*: is a directory/],
    ['no data rows', [w('empty.txt', '# nThread 1 nGpus 8\n# only comments\n')], /no data rows/],
    ['only N/A rows', [w('na.txt', `# mpi_coll_bench allreduce: nranks 8,\n${row('N/A')}\n`)], /no usable data rows \(1 row/],
    ['too few columns', [w('short.txt', `# mpi_coll_bench allreduce: nranks 8,\n        1024           256     float     sum      -1    14.21\n`)], /short\.txt:2: a data row needs at least 9 columns/],
    ['inconsistent columns', [w('incons.txt', `# mpi_coll_bench allreduce: nranks 8,\n${row('14.21')}\n${row('14.30')}   0.5\n`)], /incons\.txt:3: inconsistent columns: this row has 10, the row on line 2 has 9/],
    ['non-numeric time', [w('nan.txt', `# mpi_coll_bench allreduce: nranks 8,\n${row('fast')}\n`)], /out-of-place time 'fast' is not a number/],
    ['no collective in the header', [w('nocoll.txt', `#  Rank  0 Group  0\n#  Rank  1 Group  0\n${row('14.21')}\n${row('20.00')}\n`)], /cannot tell the collective .*pass --collective/],
    ['no rank count', [w('noranks.txt', `# Collective test starting: all_reduce_perf\n${row('14.21')}\n${row('20.00')}\n`)], /cannot tell the rank count .*pass --ranks N/],
    ['unknown collective', [good, '--collective', 'allfoo'], /unknown collective 'allfoo'/],
    ['a collective collemu does not model', [w('gather.txt', `# Collective test starting: gather_perf\n#  Rank  0 Group  0\n#  Rank  1 Group  0\n${row('14.21')}\n${row('20.00')}\n`)], /gather\.txt:1: collective test 'gather_perf' is not one collemu models/],
    ['unknown algorithm', [good, '--algo', 'nope'], /unknown allreduce algorithm 'nope'/],
    ['unknown topology', [good, '--topology', 'nope'], /unknown topology 'nope'/],
    ['ranks vs nodes', [good, '--topology', 'hgx-h100', '--nodes', '2'], /is a 8-rank run .* but --topology hgx-h100 --nodes 2 has 16 ranks/],
    ['one size only', [w('one.txt', `# mpi_coll_bench allreduce: nranks 8,\n${row('14.21')}\n`)], /cannot be told apart/],
    ['times that do not grow', [w('flatline.txt', `# mpi_coll_bench allreduce: nranks 8,\n${row('14.21')}\n${row('14.21').replace('1024           256', '1048576        262144')}\n${row('14.20').replace('1024           256', '4194304       1048576')}\n`)], /cannot fit a bandwidth/],
    ['broadcast without --algo', [good, '--collective', 'broadcast'], /pick the one the measurement used with --algo/],
    ['bad --ranks', [good, '--ranks', 'x'], /--ranks must be an integer/],
  ];
  for (const [name, args, re] of cases) {
    it(name, () => {
      const r = run(['calibrate', ...args]);
      expect(r.code).toBe(2);
      expect(r.err).toMatch(re);
      expect(r.err.trim().split('\n').length).toBeLessThanOrEqual(2); // commander adds '(run with --help for usage)' for option errors
      expect(r.err).not.toMatch(/\n\s+at /);
      expect(r.out).toBe('');
    });
  }
});
