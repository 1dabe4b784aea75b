/**
 * The scenarios of scenarios/ (`collemu scenario`): each scenario's qualitative conclusion, checked
 * on the numbers its run produces (so a change in the models that breaks a conclusion fails here),
 * and the CLI (cli/scenario.ts).
 */
import { Command } from 'commander';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { registerScenarioCommands, UsageError } from '../cli/scenario.js';
import { domainFindings, domainRows, mispricedGroups, SETUP, type DomainRow } from '../scenarios/bandwidth-domains.js';
import { fullProfiles, smallProfiles, SMALL_LAYOUTS, type FullProfile, type SmallProfile } from '../scenarios/comm-profile.js';
import { diminishingFindings, diminishingReturnsRows, type DiminishingRow } from '../scenarios/diminishing-returns.js';
import { SCENARIOS } from '../scenarios/index.js';
import { llama3Rows, PUBLISHED, type Llama3Row } from '../scenarios/llama3-405b.js';

const report: string[] = [];
const say = (s: string) => report.push(s);

describe('diminishing-returns: naive data parallelism versus the planner, 8 -> 2,048 H100s', () => {
  let rows: DiminishingRow[];
  beforeAll(() => {
    const t0 = performance.now();
    rows = diminishingReturnsRows();
    say(`diminishing-returns rows in ${((performance.now() - t0) / 1000).toFixed(1)} s: naive MFU ${rows.map((r) => `${r.gpus}:${(100 * (r.naive?.mfu ?? 0)).toFixed(1)}`).join(' ')}; ` +
      `on hgx-h100 ${rows.map((r) => `${r.gpus}:${(100 * (r.naive_contrast?.mfu ?? 0)).toFixed(1)}`).join(' ')}; ` +
      `planner ${rows.map((r) => `${r.gpus}:${(100 * r.best.mfu).toFixed(1)}`).join(' ')}`);
  });
  const at = (nodes: number) => rows.find((r) => r.nodes === nodes)!;
  const naiveRows = () => rows.filter((r) => r.naive);

  it('every GPU count from 1 node to 2,048 GPUs has a planned row; naive runs wherever the batch divides (not at 2,048: 1,024 sequences)', () => {
    expect(rows.map((r) => r.gpus)).toEqual([8, 16, 32, 64, 128, 256, 512, 1024, 2048]);
    for (const r of rows.slice(0, -1)) expect(r.naive, String(r.gpus)).toBeDefined();
    expect(rows[rows.length - 1]!.naive).toBeUndefined();
    expect(rows[rows.length - 1]!.naive_missing).toMatch(/1024 sequences < 2048 replicas/);
  });

  it('the research observation on the one-NIC-per-node cluster: ~40% on 2 nodes, below 15% on 32 nodes, falling monotonically', () => {
    const f = diminishingFindings(rows);
    expect(at(1).naive!.mfu).toBeGreaterThan(0.45);
    // "about 40%" on 2 nodes (measured here: 48.1%; 38.5% on 4 nodes), below 15% on 32 nodes
    expect(f.naive_mfu_2_nodes!).toBeGreaterThan(0.35);
    expect(f.naive_mfu_2_nodes!).toBeLessThan(0.5);
    expect(f.naive_mfu_32_nodes!).toBeLessThan(0.15);
    expect(f.naive_mfu_32_nodes! / f.naive_mfu_2_nodes!).toBeLessThan(0.25);
    const n = naiveRows();
    for (let i = 1; i < n.length; i++) expect(n[i]!.naive!.mfu).toBeLessThanOrEqual(n[i - 1]!.naive!.mfu + 1e-9);
    expect(f.naive_mfu_max_gpus!).toBeLessThan(0.05);
  });

  it('the overhead is exposed data-parallel communication: none on one node, past a quarter of the step from ~4 nodes on', () => {
    const f = diminishingFindings(rows);
    expect(at(1).naive!.shares.dp).toBeLessThan(0.01);
    expect(at(2).naive!.shares.dp).toBeLessThan(0.25);
    expect(f.overhead_quarter_from_gpus).toBeGreaterThanOrEqual(32);
    expect(f.overhead_quarter_from_gpus).toBeLessThanOrEqual(64);
    for (const r of naiveRows().filter((x) => x.nodes >= 8)) expect(r.naive!.overheads[0]!.part).toBe('dp');
  });

  it('why: DP collective time per step stays near constant while compute per GPU shrinks, so naive throughput saturates', () => {
    const f = diminishingFindings(rows);
    expect(f.naive_dp_comm_s[1] / f.naive_dp_comm_s[0]).toBeLessThan(2);
    const big = naiveRows().filter((r) => r.nodes >= 8).map((r) => r.naive!.dp_comm_s);
    expect(Math.max(...big) / Math.min(...big)).toBeLessThan(1.15);
    expect(at(2).naive!.compute_s / at(32).naive!.compute_s).toBeGreaterThan(8);
    // 4x the GPUs beyond 32 nodes, no more tokens/s (within 5%)
    expect(f.naive_throughput_gain_beyond_32_nodes!).toBeLessThan(1.05);
    expect(f.naive_throughput_gain_beyond_32_nodes!).toBeGreaterThan(0.9);
  });

  it('on the rail-optimized hgx-h100 (8x the scale-out bandwidth per node) the collapse comes 8x later', () => {
    const f = diminishingFindings(rows);
    for (const r of naiveRows()) expect(r.naive_contrast!.mfu).toBeGreaterThanOrEqual(r.naive!.mfu - 1e-9);
    expect(f.contrast_mfu_32_nodes!).toBeGreaterThan(0.3);
    expect(f.contrast_overhead_quarter_from_gpus!).toBeGreaterThanOrEqual(8 * f.overhead_quarter_from_gpus!);
  });

  it('the planner is never worse, holds up better at 32 nodes and keeps scaling throughput to 2,048 GPUs with TP / PP', () => {
    for (const r of naiveRows()) expect(r.best.mfu).toBeGreaterThanOrEqual(r.naive!.mfu - 1e-9);
    expect(at(32).best.mfu).toBeGreaterThan(1.5 * at(32).naive!.mfu);
    const last = rows[rows.length - 1]!;
    expect(last.best.tp * last.best.pp).toBeGreaterThan(1);
    expect(last.best.tokens_per_s).toBeGreaterThan(2 * at(32).best.tokens_per_s);
    const lastNaive = naiveRows()[naiveRows().length - 1]!;
    expect(lastNaive.best.tokens_per_s).toBeGreaterThan(3 * lastNaive.naive!.tokens_per_s);
  });
});

describe('llama3-405b: the three layouts of the Llama 3 paper', () => {
  let rows: Llama3Row[];
  beforeAll(() => {
    rows = llama3Rows();
    say(`llama3-405b: predicted MFU ${rows.map((r) => `${(100 * r.predicted.mfu).toFixed(1)}% (paper ${100 * r.published.mfu}%)`).join(', ')}`);
  });

  it('predicted MFU within 3 points of the published one on every row, in the published order', () => {
    expect(rows).toHaveLength(PUBLISHED.length);
    for (const r of rows) expect(Math.abs(r.predicted.mfu - r.published.mfu)).toBeLessThanOrEqual(0.03);
    expect(rows[0]!.predicted.mfu).toBeGreaterThan(rows[1]!.predicted.mfu);
    expect(rows[1]!.predicted.mfu).toBeGreaterThan(rows[2]!.predicted.mfu);
  });

  it('the published layouts fit in an H100 (lean activation accounting)', () => {
    for (const r of rows) expect(r.predicted.fits_in_memory, String(r.published.gpus)).toBe(true);
  });

  it('8K -> 16K GPUs: half the batch per DP group, the bubble share grows (the paper\'s explanation)', () => {
    expect(rows[1]!.predicted.microbatches).toBe(rows[0]!.predicted.microbatches / 2);
    expect(rows[1]!.predicted.shares.bubble).toBeGreaterThan(1.5 * rows[0]!.predicted.shares.bubble);
  });

  it('128K context: CP and the pod-crossing DP reduction appear among the limits', () => {
    const [a, , c] = rows as [Llama3Row, Llama3Row, Llama3Row];
    expect(c.predicted.shares.cp).toBeGreaterThan(0.01);
    expect(c.predicted.shares.dp).toBeGreaterThan(3 * a.predicted.shares.dp);
    const rs = (r: Llama3Row) => r.collectives.find((x) => x.group === 'dp' && x.op.startsWith('reducescatter'))!;
    expect(rs(c).time_s).toBeGreaterThan(2 * rs(a).time_s);
  });

  it('limits are the non-compute parts of the step, largest first; the shares add up to the step', () => {
    for (const r of rows) {
      const o = r.predicted.overheads;
      expect(o.length).toBeGreaterThan(0);
      for (let i = 1; i < o.length; i++) expect(o[i]!.share).toBeLessThanOrEqual(o[i - 1]!.share);
      expect(o.every((x) => x.part !== 'compute')).toBe(true);
      expect(Object.values(r.predicted.shares).reduce((s, x) => s + x, 0)).toBeCloseTo(1, 9);
    }
    // the 8K-context rows: exposed TP is the largest overhead
    expect(rows[0]!.predicted.overheads[0]!.part).toBe('tp');
  });
});

describe('bandwidth-domains: PP on HGX H100, GB200 NVL72 and TPU v5p', () => {
  let rows: DomainRow[];
  beforeAll(() => {
    const t0 = performance.now();
    rows = domainRows();
    say(`bandwidth-domains in ${((performance.now() - t0) / 1000).toFixed(1)} s: ` +
      rows.map((r) => `${r.system}@${r.global_batch}: ${(100 * r.best.mfu).toFixed(1)} / no PP ${(100 * (r.no_pp?.mfu ?? 0)).toFixed(1)}`).join('; '));
  });
  const get = (system: string, batch: number) => rows.find((r) => r.system === system && r.global_batch === batch)!;
  const small = () => SETUP.batches[0]!, large = () => SETUP.batches[SETUP.batches.length - 1]!;

  it('the pp = 1 search never beats the planner (the same candidates), and finds a layout everywhere', () => {
    expect(rows).toHaveLength(3 * SETUP.batches.length);
    for (const r of rows) {
      expect(r.no_pp).toBeDefined();
      expect(r.no_pp!.pp).toBe(1);
      expect(r.no_pp!.mfu).toBeLessThanOrEqual(r.best.mfu + 1e-9);
    }
  });

  it('without PP, the worst MFU over the batches rises with the size of the high-bandwidth domain', () => {
    const f = domainFindings(rows);
    const sizes = [...new Set(rows.map((r) => r.system))].sort((a, b) => get(a, small()).domain - get(b, small()).domain);
    expect(sizes).toEqual(['HGX H100', 'GB200 NVL72', 'TPU v5p']);
    expect(f.min_no_pp_mfu['GB200 NVL72']!).toBeGreaterThan(f.min_no_pp_mfu['HGX H100']!);
    expect(f.min_no_pp_mfu['TPU v5p']!).toBeGreaterThan(f.min_no_pp_mfu['GB200 NVL72']!);
    expect(f.min_no_pp_mfu['TPU v5p']!).toBeGreaterThan(0.45);
  });

  it('PP pays on the 8-GPU domain when data-parallel communication is the bottleneck of the layout without it', () => {
    const h = get('HGX H100', small());
    expect(h.pp_gain).toBeGreaterThan(0.05);
    expect(h.best.pp).toBeGreaterThan(1);
    expect(h.no_pp!.overheads[0]!.part).toBe('dp');
    expect(h.no_pp!.shares.dp).toBeGreaterThan(0.3);
    const f = domainFindings(rows);
    expect(f.max_pp_gain['HGX H100']!.gain).toBeGreaterThan(f.max_pp_gain['GB200 NVL72']!.gain);
    expect(f.max_pp_gain['HGX H100']!.gain).toBeGreaterThan(f.max_pp_gain['TPU v5p']!.gain);
  });

  it('flags groups that the model prices as inside a rack although some of them span two (tp 16 on 72-GPU racks)', () => {
    expect(mispricedGroups({ tp: 16, cp: 1, pp: 1, dp: 144 }, 72, 2304)).toEqual([{ dim: 'tp', size: 16, fraction: 1 / 9 }]);
    expect(mispricedGroups({ tp: 8, cp: 2, pp: 9, dp: 16 }, 8, 2304)).toEqual([]);
    expect(mispricedGroups({ tp: 8, cp: 1, pp: 9, dp: 32 }, 72, 2304)).toEqual([]);
    for (const r of rows.filter((x) => x.system !== 'GB200 NVL72')) expect(r.mispriced).toEqual([]);
  });

  it('on the large domains the best layout without PP stays within 5 points, and with enough tokens per GPU PP is unnecessary on H100 and TPU v5p', () => {
    for (const s of ['GB200 NVL72', 'TPU v5p']) for (const b of SETUP.batches) expect(get(s, b).pp_gain).toBeLessThan(0.05);
    for (const s of ['HGX H100', 'TPU v5p']) expect(get(s, large()).pp_gain).toBeLessThan(0.01);
    // on GB200 a short pipeline inside the 72-GPU rack (tp 4 x pp 3 = 12 divides 72) still trims TP traffic
    expect(get('GB200 NVL72', large()).no_pp!.mfu).toBeGreaterThan(0.4);
  });
});

describe('comm-profile: collectives of a step under DP, FSDP, TP, PP, CP, EP', () => {
  let small: SmallProfile[];
  let full: FullProfile[];
  beforeAll(async () => {
    const t0 = performance.now();
    small = await smallProfiles('simulate');
    full = fullProfiles();
    say(`comm-profile (simulate) in ${((performance.now() - t0) / 1000).toFixed(1)} s: ` +
      small.map((r) => `${r.layout.name} ${Object.entries(r.wire_bytes).map(([l, b]) => `${l} ${b}`).join(' ')}`).join('; '));
  });
  const get = (n: string) => small.find((r) => r.layout.name === n)!;
  const wire = (r: SmallProfile) => Object.values(r.wire_bytes).reduce((a, b) => a + b, 0);
  const ib = (r: SmallProfile) => r.wire_bytes['ib-ndr400'] ?? 0;

  it('every layout is a real training step: parity with the serial run', () => {
    expect(small.map((r) => r.layout.name)).toEqual(['DP', 'FSDP', 'TP', 'PP', 'CP', 'EP']);
    for (const r of small) {
      expect(r.world).toBe(8);
      expect(r.parity_max_rel_err).toBeLessThan(1e-5);
    }
  });

  it('operation types: DP all-reduces, FSDP all-gathers twice and reduce-scatters, moving ~1.5x the bytes', () => {
    expect(get('DP').ops.map((o) => o.coll)).toEqual(['allreduce']);
    const f = get('FSDP');
    expect(f.ops.map((o) => o.coll).sort()).toEqual(['allgather', 'reducescatter']);
    const ag = f.ops.find((o) => o.coll === 'allgather')!, rs = f.ops.find((o) => o.coll === 'reducescatter')!;
    expect(ag.calls).toBeGreaterThan(1.5 * rs.calls);
    expect(ag.calls).toBeLessThanOrEqual(2 * rs.calls);
    expect(wire(f) / wire(get('DP'))).toBeGreaterThan(1.3);
    expect(wire(f) / wire(get('DP'))).toBeLessThan(1.6);
    expect(get('PP').ops.some((o) => o.coll === 'sendrecv' && o.group === 'pp')).toBe(true);
    expect(get('CP').ops.some((o) => o.coll === 'sendrecv' && o.group === 'cp')).toBe(true);
    expect(get('EP').ops.some((o) => o.coll === 'alltoall' && o.group === 'ep')).toBe(true);
  });

  it('message sizes: TP issues more and smaller collectives than DP', () => {
    const tp = get('TP').ops.filter((o) => o.group === 'tp'), dp = get('DP').ops;
    const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
    expect(tp.reduce((s, o) => s + o.calls_per_rank, 0)).toBeGreaterThan(2 * dp.reduce((s, o) => s + o.calls_per_rank, 0));
    expect(med(tp.flatMap((o) => o.sizes))).toBeLessThan(med(dp.flatMap((o) => o.sizes)));
    for (const r of small) expect(r.histogram.reduce((a, b) => a + b, 0)).toBe(r.ops.reduce((s, o) => s + o.calls, 0));
  });

  it('link classes: groups inside a node stay on NVLink; an 8-rank ring puts 2 of 8 hops on InfiniBand', () => {
    for (const r of small) for (const o of r.ops) expect(o.crosses_nodes).toBe(o.group_size > 4 || o.group.startsWith('dp'));
    expect(ib(get('DP')) / wire(get('DP'))).toBeCloseTo(0.25, 2);
    // TP and PP: the only traffic between the nodes is the 2-rank gradient AllReduce (a 2-rank ring sends each rank's payload once)
    for (const n of ['TP', 'PP']) {
      const r = get(n);
      const dpPayload = r.ops.filter((o) => o.crosses_nodes).reduce((s, o) => s + o.bytes, 0);
      expect(Math.abs(ib(r) - dpPayload) / dpPayload).toBeLessThan(0.01);
      expect(r.wire_bytes['nvlink4']!).toBeGreaterThan(0);
    }
  });

  it('the emulator (worker threads) gives the same profile as the simulator', async () => {
    const ep = SMALL_LAYOUTS.find((l) => l.name === 'EP')!;
    const [em] = await smallProfiles('emulate', [ep]);
    const sim = get('EP');
    expect(em!.wire_bytes).toEqual(sim.wire_bytes);
    expect(em!.ops).toEqual(sim.ops);
    expect(em!.virtual_step_time_s).toBe(sim.virtual_step_time_s);
  });

  it('full scale: TP on NVLink only, DP / CP / EP across the network, TP calls many and small', () => {
    const by = (n: string) => full.find((r) => r.layout.name === n)!;
    for (const n of ['TP+PP+DP', 'TP+CP+PP+DP']) {
      const r = by(n);
      const tp = r.collectives.filter((c) => c.group === 'tp'), dp = r.collectives.filter((c) => c.group === 'dp');
      for (const c of tp) expect(c.links).toEqual(['nvlink4']);
      for (const c of dp) expect(c.links.some((l) => l.startsWith('roce'))).toBe(true);
      expect(tp.reduce((s, c) => s + c.calls, 0)).toBeGreaterThan(100 * dp.reduce((s, c) => s + c.calls, 0));
      expect(Math.max(...tp.map((c) => c.bytes))).toBeLessThan(Math.min(...dp.map((c) => c.bytes)));
    }
    for (const c of by('TP+CP+PP+DP').collectives.filter((x) => x.group === 'cp')) expect(c.links.some((l) => l.startsWith('roce'))).toBe(true);
    expect(by('EP').collectives.find((c) => c.group === 'ep' && c.op === 'alltoall')!.links).toContain('ib-ndr400');
    // FSDP without PP: parameters gathered forward and backward, gradients reduce-scattered, every microbatch
    const f = by('FSDP').collectives;
    const calls = (op: string) => f.find((c) => c.op.startsWith(op))!.calls;
    expect(calls('allgather (params, forward)')).toBe(calls('reducescatter'));
    expect(calls('allgather (params, backward)')).toBe(calls('reducescatter'));
  });
});

describe('CLI: collemu scenario (registerScenarioCommands)', () => {
  const run = async (args: string[]): Promise<string> => {
    const program = new Command();
    program.exitOverride();
    program.configureOutput({ writeErr: () => {} });
    registerScenarioCommands(program);
    for (const c of program.commands) c.exitOverride();
    let out = '';
    const spy = vi.spyOn(process.stdout, 'write').mockImplementation((s: string | Uint8Array) => {
      out += String(s);
      return true;
    });
    const log = vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => {
      out += a.join(' ') + '\n';
    });
    try {
      await program.parseAsync(['node', 'collemu', ...args]);
    } finally {
      spy.mockRestore();
      log.mockRestore();
    }
    return out;
  };

  it('scenario list names every scenario with its question; --json - prints only JSON', async () => {
    const text = await run(['scenario', 'list']);
    for (const s of SCENARIOS) expect(text).toContain(s.name);
    const j = JSON.parse(await run(['scenario', 'list', '--json', '-'])) as { name: string; question: string }[];
    expect(j.map((x) => x.name)).toEqual(['diminishing-returns', 'llama3-405b', 'bandwidth-domains', 'comm-profile']);
    for (const x of j) expect(x.question.length).toBeGreaterThan(20);
  });

  it('scenario run llama3-405b prints a table; --json - the same numbers as JSON', async () => {
    const text = await run(['scenario', 'run', 'llama3-405b']);
    expect(text).toMatch(/MFU pred/);
    expect(text.split('\n').filter((l) => /^\s+(8,192|16,384)\s+tp 8/.test(l))).toHaveLength(3);
    const j = JSON.parse(await run(['scenario', 'run', 'llama3-405b', '--json', '-'])) as { rows: Llama3Row[] };
    expect(j.rows.map((r) => r.predicted.mfu)).toEqual(llama3Rows().map((r) => r.predicted.mfu));
  });

  it('bad input is a UsageError', async () => {
    await expect(run(['scenario', 'run', 'no-such-scenario'])).rejects.toThrow(UsageError);
    await expect(run(['scenario', 'run', 'llama3-405b', '--executor', 'simulate'])).rejects.toThrow(/--executor applies to comm-profile/);
    await expect(run(['scenario', 'run', 'comm-profile', '--executor', 'gpu'])).rejects.toThrow(/--executor must be emulate or simulate/);
  });
});

describe('report', () => {
  it('prints the headline numbers', () => {
    console.log(report.join('\n'));
    expect(report.length).toBeGreaterThan(0);
  });
});
