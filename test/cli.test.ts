/** The collemu CLI as a user runs it: table layout, JSON keys, formula agreement, bad input. */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ringAllreduce } from '../collectives/allreduce/ring.js';
import { makeTopology } from '../runtime/topology.js';

const BIN = join(import.meta.dirname, '..', 'bin', 'collemu');
function run(args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('collemu bench', () => {
  it('8-rank ring AllReduce on flat 450 GB/s, 1 us reports the formula time in the nccl-tests layout', () => {
    const r = run(['bench', 'allreduce', '--ranks', '8', '--algo', 'ring', '--topology', 'flat', '--link-bw', '450', '--link-latency', '1', '-b', '1K', '-e', '4M', '-f', '4', '-n', '2', '-w', '1']);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const lines = r.out.split('\n');
    expect(lines).toContain('#       size         count      type   redop    root     time   algbw   busbw #wrong     time   algbw   busbw #wrong   host(us)  in-host(us)  algo');
    const rows = lines.filter((l) => /^\s+\d/.test(l)).map((l) => l.trim().split(/\s+/));
    expect(rows.map((f) => Number(f[0]))).toEqual([1024, 4096, 16384, 65536, 262144, 1048576, 4194304]);
    const topo = makeTopology('flat', { ranks: 8, linkBw: 450, linkLatency: 1 });
    for (const f of rows) {
      const count = Number(f[1]);
      const want = ringAllreduce.cost({ coll: 'allreduce', p: 8, count, op: 'sum', inPlace: false, root: 0 }, topo) * 1e6;
      expect(Number(f[5])).toBeCloseTo(want, 1); // time column, printed with 2 decimals
      expect(f[8]).toBe('0'); // #wrong
      expect(f[12]).toBe('0'); // in-place #wrong
      expect(f[f.length - 1]).toBe('ring');
      // busbw = algbw * 2(p-1)/p
      expect(Number(f[7])).toBeCloseTo(Number(f[6]) * 1.75, 1);
    }
    // the SMPI peer (shared/peers/results) prints 18.28 us at 1 MB with +0.2 us barrier skew; alpha-beta: 18.08
    expect(rows[5]![5]).toBe('18.08');
    expect(lines).toContain('# Out of bounds values : 0 OK');
    expect(lines.some((l) => /^# Avg bus bandwidth {4}: \d+\.\d{4} $/.test(l))).toBe(true);
  });

  it('writes JSON rows with the nccl-tests keys (in-place prefixed in_)', () => {
    const r = run(['bench', 'reducescatter', '--ranks', '4', '--topology', 'flat', '-b', '4K', '-e', '16K', '-n', '1', '-w', '0', '--json', '-']);
    expect(r.code).toBe(0);
    const rows = JSON.parse(r.out) as Record<string, unknown>[];
    expect(rows).toHaveLength(2);
    for (const k of ['size', 'count', 'type', 'redop', 'root', 'time', 'alg_bw', 'bus_bw', 'nwrong', 'host_time', 'algo', 'in_time', 'in_alg_bw', 'in_bus_bw', 'in_nwrong', 'in_host_time', 'in_algo']) {
      expect(rows[0]).toHaveProperty(k);
    }
    expect(rows[0]!.size).toBe(4096);
    expect(rows[0]!.count).toBe(256);
    expect(rows[0]!.nwrong).toBe(0);
  });

  it('runs every collective with a check', () => {
    for (const coll of ['allgather', 'broadcast', 'reduce', 'alltoall', 'sendrecv']) {
      const r = run(['bench', coll, '--ranks', '5', '--topology', 'flat', '-b', '1K', '-e', '64K', '-f', '8', '-n', '1', '-w', '0', '--root', '2']);
      expect(r.err, coll).toBe('');
      expect(r.code, coll).toBe(0);
      expect(r.out).toContain('# Out of bounds values : 0 OK');
    }
  });

  it('runs a user-written algorithm from a file', () => {
    const r = run(['bench', 'allgather', '--algo-file', join(import.meta.dirname, '..', 'collectives', 'examples', 'reverse-ring-allgather.mjs'), '--topology', 'flat', '--ranks', '8', '-b', '8K', '-e', '8K', '-n', '1', '-w', '0']);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/reverse-ring\s*$/m);
    expect(r.out).toContain('# Out of bounds values : 0 OK');
  });

  it('writes a Chrome trace', () => {
    const dir = mkdtempSync(join(tmpdir(), 'collemu-'));
    const file = join(dir, 't.json');
    const r = run(['bench', 'allreduce', '--ranks', '4', '--algo', 'ring', '-b', '1K', '-e', '1K', '-n', '1', '-w', '0', '--trace', file]);
    expect(r.code).toBe(0);
    const t = JSON.parse(readFileSync(file, 'utf8')) as { traceEvents: { ph: string }[] };
    expect(t.traceEvents.filter((e) => e.ph === 'X').length).toBe(4 * 12);
    expect(t.traceEvents.some((e) => e.ph === 's')).toBe(true);
  });
});

describe('collemu simulate', () => {
  it('prints the same layout with N/A for #wrong and the emulator\'s virtual times', () => {
    const args = ['allreduce', '--ranks', '16', '--topology', 'hgx-h100', '-b', '1K', '-e', '16M', '-f', '16', '--algo', 'ring'];
    const sim = run(['simulate', ...args, '--json', '-']);
    expect(sim.err).toBe('');
    expect(sim.code).toBe(0);
    const emu = run(['bench', ...args, '-n', '1', '-w', '0', '--json', '-']);
    expect(emu.code).toBe(0);
    const s = JSON.parse(sim.out) as Record<string, unknown>[];
    const e = JSON.parse(emu.out) as Record<string, unknown>[];
    expect(s.map((r) => r.time)).toEqual(e.map((r) => r.time));
    expect(s.map((r) => r.in_time)).toEqual(e.map((r) => r.in_time));
    expect(s[0]!.nwrong).toBeNull();
    const table = run(['simulate', ...args]);
    expect(table.out).toMatch(/^\s+1024\s+256\s+float\s+sum\s+-1\s+\S+\s+\S+\s+\S+\s+N\/A/m);
  });

  it('runs far more ranks than the emulator would (4,096 ranks)', () => {
    const r = run(['simulate', 'allreduce', '--topology', 'hgx-h100', '--nodes', '512', '-b', '1M', '-e', '1M', '--algo', 'hierarchical', '--no-in-place', '--json', '-']);
    expect(r.code).toBe(0);
    const rows = JSON.parse(r.out) as { time: number; algo: string }[];
    expect(rows[0]!.algo).toBe('hierarchical');
    expect(rows[0]!.time).toBeGreaterThan(0);
  });
});

describe('scale-down rule', () => {
  it('a real-data run of tensors / k on links / k has the full-size virtual time, and prints both', () => {
    const r = run(['bench', 'allreduce', '--topology', 'hgx-h100', '--nodes', '2', '--scale-down', '32', '-b', '2M', '-e', '32M', '-f', '16', '-n', '1', '-w', '0', '--no-in-place', '--json', '-']);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const rows = JSON.parse(r.out) as { size: number; time: number; nwrong: number; emulated_size: number; full_size_time: number }[];
    expect(rows.map((x) => x.size)).toEqual([2 << 20, 32 << 20]);
    for (const x of rows) {
      expect(x.emulated_size).toBe(x.size / 32);
      expect(x.nwrong).toBe(0);
      expect(Math.abs(x.time - x.full_size_time) / x.full_size_time).toBeLessThan(1e-9);
    }
    // and the full-size time is what an unscaled simulation reports
    const sim = run(['simulate', 'allreduce', '--topology', 'hgx-h100', '--nodes', '2', '-b', '2M', '-e', '32M', '-f', '16', '--no-in-place', '--json', '-']);
    expect((JSON.parse(sim.out) as { time: number }[]).map((x) => x.time)).toEqual(rows.map((x) => x.full_size_time));
    const table = run(['bench', 'allreduce', '--topology', 'flat', '--ranks', '4', '--scale-down', '8', '-b', '1M', '-e', '1M', '-n', '1', '-w', '0']);
    expect(table.out).toMatch(/# scale-down x8: each row ran tensors \/ 8 on links \/ 8 \(link 56\.25 GB\/s/);
    expect(table.out).toMatch(/#\s+1048576\s+131072\s+\S+\s+\S+\s+0\.000%/);
  });
});

describe('bad input: one-line error, exit code 2', () => {
  const dir = mkdtempSync(join(tmpdir(), 'collemu-'));
  const badJson = join(dir, 'bad.json');
  writeFileSync(badJson, '{ "gpusPerNode": 8, "links": { "nv": { "latency_us": 1 } } ');
  const goodTopo = join(dir, 'good.json');
  writeFileSync(goodTopo, JSON.stringify({ name: 'c4x2', gpusPerNode: 4, nodes: 2, links: { nv: { latency_us: 1, bandwidth_GBps: 450 }, ib: { latency_us: 5, bandwidth_GBps: 50 } }, intraNode: 'nv', interNode: 'ib' }));
  const namedTopo = join(dir, 'name5.json');
  writeFileSync(namedTopo, JSON.stringify({ name: 5, gpusPerNode: 4, links: { nv: { latency_us: 1, bandwidth_GBps: 450 } } }));
  // user algorithms (--algo-file) that go wrong in each of their hooks
  const algo = (name: string, body: string, cost = 'cost() { return 0; }'): string => {
    const f = join(dir, `${name}.mjs`);
    writeFileSync(f, `export default { coll: 'allgather', name: '${name}', summary: 'x', formula: 'x', ${cost}, ${body} };\n`);
    return f;
  };
  const ring = `build(spec) { const { p, count: c, inPlace } = spec; return Array.from({ length: p }, (_, r) => [
    ...(inPlace ? [] : [{ k: 'copy', src: { buf: 'in', off: 0, len: c }, dst: { buf: 'out', off: r * c, len: c } }]),
    ...Array.from({ length: p - 1 }, (_, s) => [
      { k: 'send', peer: (r + 1) % p, src: { buf: 'out', off: ((r - s + p) % p) * c, len: c } },
      { k: 'recv', peer: (r - 1 + p) % p, dst: { buf: 'out', off: ((r - s - 1 + p) % p) * c, len: c }, OP }]).flat()]); }`;
  const throws = algo('throws', "build() { throw new Error('boom in build'); }");
  const fewProgs = algo('fewprogs', 'build() { return [[]]; }');
  const badTmp = algo('badtmp', 'tmpElems() { return NaN; }, build(spec) { return Array.from({ length: spec.p }, () => []); }');
  const badOp = algo('badop', ring.replace('OP', "op: 'xor'"));
  const hugeModel = join(dir, 'huge-model.json');
  writeFileSync(hugeModel, JSON.stringify({ layers: 1e300, hidden: 1024, ffn: 4096, heads: 16, kv_heads: 4, vocab: 32000, activation: 'swiglu' }));
  const textModel = join(dir, 'text-model.json');
  writeFileSync(textModel, 'hello\n');
  const csv2 = join(dir, 'two-ranks.csv');
  writeFileSync(csv2, '0F0,0F1,0B0,0B1\n1F0,1B0,1F1,1B1\n');
  const badTopo = join(dir, 'bad2.json');
  writeFileSync(badTopo, JSON.stringify({ gpusPerNode: 4, links: { nv: { latency_us: 1, bandwidth_GBps: -3 } } }));
  const cases: [string, string[], RegExp][] = [
    ['unknown algorithm', ['bench', 'allreduce', '--algo', 'nope'], /unknown allreduce algorithm 'nope' \(known: .*ring.*\)/],
    ['ranks < 1', ['bench', 'allreduce', '--ranks', '0', '--topology', 'flat'], /--ranks must be an integer >= 1/],
    ['negative size', ['bench', 'allreduce', '-b', '-5'], /error/i],
    ['min > max', ['bench', 'allreduce', '-b', '1M', '-e', '1K'], /--min-bytes \(1048576\) is larger than --max-bytes \(1024\)/],
    ['malformed topology JSON', ['bench', 'allreduce', '--topology', badJson], /not valid JSON/],
    ['invalid topology values', ['bench', 'allreduce', '--topology', badTopo], /bandwidth_GBps must be a finite number > 0/],
    ['missing topology file', ['bench', 'allreduce', '--topology', join(dir, 'none.json')], /cannot read topology file/],
    ['unknown collective', ['bench', 'allfoo'], /unknown collective 'allfoo'/],
    ['unknown op', ['bench', 'allreduce', '--op', 'xor', '--topology', 'flat', '--ranks', '2'], /unknown --op 'xor'/],
    ['impossible ranks/nodes', ['bench', 'allreduce', '--topology', 'hgx-h100', '--nodes', '2', '--ranks', '12'], /has 16 GPUs, but --ranks is 12/],
    ['link-bw on a preset', ['bench', 'allreduce', '--topology', 'hgx-h100', '--link-bw', '100'], /apply to the flat topology/],
    ['bad root', ['bench', 'broadcast', '--ranks', '4', '--topology', 'flat', '--root', '9'], /--root must be a rank in 0\.\.3/],
    ['a fraction of a byte', ['bench', 'allreduce', '-b', '1.5'], /--min-bytes '1\.5' is not a whole number of bytes/],
    ['an unknown --gpu', ['topology', '--topology', 'hgx-h100', '--gpu', 'foo'], /unknown GPU 'foo' \(known: a100, h100/],
    ['GPUs on a TPU cluster', ['predict', '--model', 'llama3-8b', '--gpu', 'h100', '--cluster', 'tpu-v5p', '--gpus', '8', '--seq', '4096', '--global-batch', '8'], /cluster tpu-v5p is made of TPU chips: --gpu h100 cannot run on it/],
    ['sequence parallelism without tensor parallelism', ['predict', '--model', 'llama3-8b', '--gpu', 'h100', '--gpus', '8', '--seq', '4096', '--global-batch', '8', '--sequence-parallel'], /--sequence-parallel needs --tp > 1/],
    ['--grad-bytes other than 2 or 4', ['predict', '--model', 'llama3-8b', '--gpu', 'h100', '--gpus', '64', '--tp', '8', '--dp', '8', '--seq', '4096', '--global-batch', '64', '--grad-bytes', '-1'], /--grad-bytes must be 2 \(bf16 gradients\) or 4/],
    ['plan with --grad-bytes 3', ['plan', '--model', 'llama3-8b', '--gpu', 'h100', '--gpus', '8', '--seq', '4096', '--global-batch', '8', '--grad-bytes', '3'], /--grad-bytes must be 2/],
    ['a model beyond the modeled sizes', ['plan', '--model', hugeModel, '--gpu', 'h100', '--gpus', '8', '--seq', '2048', '--global-batch', '8'], /layers 1e\+300 is beyond what collemu models \(at most 100000\)/],
    ['a model file that is not JSON, on one line', ['predict', '--model', textModel, '--gpu', 'h100', '--gpus', '8', '--seq', '1024', '--global-batch', '8'], /^collemu: error: model file .*text-model\.json is not valid JSON: [^\n]*\n$/],
    ['a pipeline too large to schedule', ['pipeline', '--schedule', '1f1b', '--stages', '100000', '--microbatches', '100000'], /is 10000000000 forward passes to schedule: more than the 1000000/],
    ['train --microbatches against --from-csv', ['train', '--mesh', 'pp=2', '--from-csv', csv2, '--microbatches', '4', '--steps', '1'], /--microbatches conflicts with --from-csv/],
    ['train --schedule against --from-csv', ['train', '--mesh', 'pp=2', '--from-csv', csv2, '--schedule', 'gpipe', '--steps', '1'], /--schedule conflicts with --from-csv/],
    ['a training that diverges', ['train', '--lr', '1e30', '--steps', '3'], /training diverged: the loss is NaN at step \d+, as in the serial reference; lower --lr/],
    ['a train topology that cannot hold the mesh', ['train', '--mesh', 'dp=2', '--topology', 'tpu-v4', '--steps', '1'], /--topology tpu-v4 cannot hold the mesh dp=2 \(2 ranks\): .*the mesh's rank count 2 must be 64 or a cube k\^3 <= 64 \(a k x k x k slice\)$/m],
    ['out of memory', ['bench', 'allreduce', '--ranks', '2', '--topology', 'flat', '--mem-capacity', '1M', '-b', '1M', '-e', '1M'], /rank 0: out of device memory/],
    ['algo for another collective', ['bench', 'allgather', '--algo', 'rhd', '--topology', 'flat', '--ranks', '2'], /unknown allgather algorithm 'rhd'/],
    ['check not 0/1', ['bench', 'allreduce', '-c', '3'], /--check must be 0 or 1/],
    ['factor 1', ['bench', 'allreduce', '-f', '1'], /--factor must be > 1 \(got 1\)/],
    ['missing --algo-file', ['bench', 'allreduce', '--algo-file', join(dir, 'none.mjs')], /cannot read --algo-file .*none\.mjs: no such file/],
    ['--algo-file that is not JavaScript', ['bench', 'allreduce', '--algo-file', badJson], /--algo-file .*bad\.json: cannot load it as a JavaScript module: \w*Error/],
    ['algorithm that cannot run one of the sizes', ['bench', 'allreduce', '--algo', 'nvls', '--topology', 'hgx-h100', '--nodes', '2'], /algorithm 'nvls' cannot run here: NVLS needs one NVSwitch node/],
    ['--json into a missing directory', ['bench', 'allreduce', '-e', '1K', '--json', join(dir, 'no', 'x.json')], /--json .*x\.json: directory .*no does not exist/],
    ['--trace onto a directory', ['simulate', 'allreduce', '-e', '1K', '--trace', dir], /--trace .*: is a directory/],
    ['--csv-out into a missing directory', ['pipeline', '--schedule', '1f1b', '--stages', '4', '--microbatches', '8', '--csv-out', join(dir, 'no', 's.csv')], /--csv-out .*s\.csv: directory .* does not exist/],
    ['scenario --json into a missing directory', ['scenario', 'list', '--json', join(dir, 'no', 'l.json')], /--json .*l\.json: directory .* does not exist/],
    ['--trace to stdout', ['bench', 'allreduce', '-e', '1K', '--trace', '-'], /--trace needs a file name \('-', stdout, is for --json only\)/],
    ['--json and --trace into one file', ['bench', 'allreduce', '-e', '1K', '--trace', join(dir, 't.json'), '--json', join(dir, 't.json')], /--json and --trace name the same file/],
    ['--link-bw with a JSON topology', ['bench', 'allreduce', '--topology', goodTopo, '--link-bw', '3'], /--link-bw \/ --link-latency apply to the flat topology; .*good\.json gives its links/],
    ['a JSON topology whose name is not a string', ['bench', 'allreduce', '--topology', namedTopo], /"name" must be a string/],
    ['--ranks that contradict the file\'s nodes', ['bench', 'allreduce', '--topology', goodTopo, '--ranks', '6'], /c4x2 with "nodes": 2 x "gpusPerNode": 4 has 8 GPUs, but --ranks is 6/],
    ['a size beyond the device memory', ['simulate', 'allreduce', '--ranks', '2', '--topology', 'flat', '-b', '1T', '-e', '1T'], /rank 0: out of device memory allocating the 'in' and 'out' buffers of a 1099511627776 B allreduce: requested 2199\.02 GB \(2199023255552 B\), free 80\.00 GB/],
    ['more ranks than the emulator runs', ['bench', 'allreduce', '--topology', 'flat', '--ranks', '100000', '-e', '1K'], /100000 ranks is more than the emulator .*at most 512/],
    ['more ranks than the simulator runs', ['simulate', 'allreduce', '--topology', 'flat', '--ranks', '2000000', '-e', '1K'], /2000000 ranks is more than the one-thread simulator runs \(at most 1048576\)/],
    ['a scale-down that leaves nothing', ['bench', 'allreduce', '--ranks', '3', '--topology', 'flat', '-b', '1K', '-e', '4K', '--scale-down', '1e9'], /--scale-down 1000000000 leaves nothing of the 1024 B size/],
    ['a user build() that throws', ['simulate', 'allgather', '--algo-file', throws, '--ranks', '4', '--topology', 'flat', '-e', '1K'], /algorithm 'throws' \(--algo-file\): build\(\) threw Error: boom in build/],
    ['a user build() with too few programs', ['bench', 'allgather', '--algo-file', fewProgs, '--ranks', '4', '--topology', 'flat', '-e', '1K'], /build\(\) must return one program \(an array of ops\) per rank, 4 in all; got 1 entries/],
    ['a user tmpElems() that is not a count', ['bench', 'allgather', '--algo-file', badTmp, '--ranks', '4', '--topology', 'flat', '-e', '1K'], /tmpElems\(\) must return .* an integer >= 0 \(got NaN\)/],
    ['an unknown reduction op in a user program (emulator)', ['bench', 'allgather', '--algo-file', badOp, '--ranks', '3', '--topology', 'flat', '-e', '1K'], /rank 0 op 2: unknown reduction op "xor"/],
    ['an unknown reduction op in a user program (simulator)', ['simulate', 'allgather', '--algo-file', badOp, '--ranks', '3', '--topology', 'flat', '-e', '1K'], /rank 0 op 2: unknown reduction op "xor"/],
  ];
  for (const [name, args, re] of cases) {
    it(name, () => {
      const r = run(args);
      expect(r.code).toBe(2);
      expect(r.err).toMatch(re);
      expect(r.err.trim().split('\n').length).toBeLessThanOrEqual(2);
      expect(r.err).not.toMatch(/\n\s+at /); // no stack trace
      // found before anything runs: no partial table on stdout (running out of device memory is
      // a run-time error of the emulated GPU, after the header, as on a real one; a user
      // algorithm's programs are built and checked size by size, after the header)
      if (name !== 'out of memory' && !args.includes('--algo-file') && !['a training that diverges'].includes(name)) expect(r.out).toBe('');
    });
  }

  it('a deadlock found by the simulator is reported like the emulator\'s: each rank\'s pending op, exit 1, no stack', () => {
    // every rank receives before it sends
    const f = algo('recvfirst', `build(spec) { const { p, count: c } = spec; return Array.from({ length: p }, (_, r) => [
      { k: 'recv', peer: (r - 1 + p) % p, dst: { buf: 'out', off: 0, len: c } },
      { k: 'send', peer: (r + 1) % p, src: { buf: 'out', off: 0, len: c } }]); }`);
    for (const ex of ['simulate', 'bench']) {
      const r = run([ex, 'allgather', '--algo-file', f, '--ranks', '3', '--topology', 'flat', '-e', '1K', ...(ex === 'bench' ? ['-n', '1', '-w', '0'] : [])]);
      expect(r.code, ex).toBe(1);
      expect(r.err, ex).toMatch(/^collemu: deadlock: every unfinished rank is blocked/);
      expect(r.err, ex).toMatch(/rank 2 at op 0 \(recv .*from rank 1\): waits for (a )?message (#0 )?from rank 1/);
      expect(r.err, ex).not.toMatch(/\n\s+at /);
    }
  });

  it('--gpu overrides a JSON topology\'s GPU, as it does a preset\'s', () => {
    const r = run(['topology', '--topology', goodTopo, '--gpu', 'a100']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/c4x2: 8 ranks, 2 node\(s\) x 4 GPU\(s\); .*A100 SXM 80GB/);
  });

  it('a user algorithm\'s cost() is printed against the virtual time of every size', () => {
    const ok = algo('ringcost', ring.replace(', OP', ''), 'cost(spec, topo) { const l = topo.slowestLink(); return spec.count * 4 * topo.delta + (spec.p - 1) * (l.alpha + spec.count * 4 / l.bw); }');
    const r = run(['simulate', 'allgather', '--algo-file', ok, '--ranks', '4', '--topology', 'flat', '-b', '1K', '-e', '16K', '-f', '4']);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/# ringcost: cost\(\) against the virtual time, out-of-place \(us\)/);
    const lines = r.out.split('\n').filter((l) => /^#\s+\d+ B: cost/.test(l));
    expect(lines).toHaveLength(3);
    for (const l of lines) expect(l).toMatch(/\(0\.00%\)$/);
    // a formula that is off shows by how much; one that throws says so
    const off = algo('offcost', ring.replace(', OP', ''), 'cost() { return 1e-3; }');
    const r2 = run(['simulate', 'allgather', '--algo-file', off, '--ranks', '4', '--topology', 'flat', '-b', '1K', '-e', '1K']);
    expect(r2.out).toMatch(/#\s+1024 B: cost\s+1000\.00, virtual\s+[\d.]+ \(\+\d+\.\d\d%\)/);
    const bad = algo('throwcost', ring.replace(', OP', ''), "cost() { throw new Error('no formula'); }");
    const r3 = run(['simulate', 'allgather', '--algo-file', bad, '--ranks', '4', '--topology', 'flat', '-b', '1K', '-e', '1K']);
    expect(r3.code).toBe(0);
    expect(r3.out).toMatch(/#\s+1024 B: cost\(\) threw Error: no formula/);
  });

  it('train --from-csv names the schedule after its file', () => {
    const r = run(['train', '--mesh', 'pp=2', '--from-csv', csv2, '--steps', '1']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/schedule .*two-ranks\.csv \(2 stages, 2 microbatches\)/);
  });

  it('plan exits 1 when no layout fits, with the table or with --json -', () => {
    const args = ['plan', '--model', 'llama3-405b', '--gpu', 'h100', '--gpus', '8', '--seq', '8192', '--global-batch', '8'];
    const t = run(args);
    expect(t.code).toBe(1);
    expect(t.out).toMatch(/no layout/);
    const j = run([...args, '--json', '-']);
    expect(j.code).toBe(1);
    expect(JSON.parse(j.out)).toEqual([]);
  });

  it('--root is checked only for the collectives that have one', () => {
    const r = run(['simulate', 'allreduce', '--ranks', '2', '--topology', 'flat', '-e', '1K', '--root', '20']);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
  });

  it('a write that fails after the run (the check cannot see it) is a one-line error too', () => {
    // /proc/<new file> passes the directory check as root or not, and cannot be created
    const r = run(['simulate', 'allreduce', '-e', '1K', '--json', '/proc/collemu-test.json']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/^collemu: error: (--json: cannot write \/proc\/collemu-test\.json: |--json \/proc\/collemu-test\.json: directory \/proc is not writable)/);
    expect(r.err).not.toMatch(/\n\s+at /);
  });
});
