/**
 * Scenario `diminishing-returns`: strong scaling of a fixed workload, naive data parallelism versus
 * the planner's best layout (parallelism/predict: predictStep, plan).
 *
 * Question: with the model and the global batch fixed, what happens to MFU and throughput from one
 * node to 32 nodes and on to 2,048 GPUs when every GPU is simply another data-parallel replica, and
 * how far does the best layout of the planner hold up?
 *
 * The research observation (calibration.md, "Seed observations"): naive data parallelism ran at about
 * 40% MFU on 2 nodes and below 15% on 32 nodes, overheads appearing beyond ~4 nodes, because the work
 * per GPU shrinks while the communication does not.
 *
 * Cluster (default): `h100-1nic`, 8x H100 per node on NVLink 4 with ONE 400G NIC per node (47 GB/s
 * achieved) shared by the node's 8 GPUs: the scale-out bandwidth per GPU of a cluster that is not
 * rail-optimized, as many cloud and Ethernet clusters are. The same rows are also predicted on
 * `hgx-h100` (one 400G NIC per GPU, rail-optimized: 8x the scale-out bandwidth per node), the
 * contrast column: there the rail-optimized collectives (hierarchical ReduceScatter / AllGather,
 * collectives/basic/*-hier.ts) keep naive data parallelism near its one-node MFU to 32 nodes, and the
 * collapse comes 8x later. The observation is about a cluster like the first.
 *
 * Workload (default): Llama 3 8B, 512-token sequences, a global batch of 1,024 sequences (524,288
 * tokens, GPT-3's batch for its small models), so every GPU count from 8 to 1,024 divides it. At
 * 2,048 GPUs naive data parallelism cannot run at all (fewer sequences than replicas): the global
 * batch caps the data-parallel degree, the other limit of strong scaling; the planner still can
 * (tensor / pipeline parallelism). The gradient ReduceScatter / parameter AllGather of ZeRO cost the
 * same at any data-parallel size, while the work per GPU is tokens / GPUs.
 *
 * Naive: tp = cp = pp = 1 and dp = GPUs, with the best ZeRO level, micro-batch and recompute policy
 * that fits in memory (bestWithoutPipeline with dataOnly: the planner's own candidates with
 * tp = cp = pp = 1), so "naive" gets its best shot and the planner can never be worse.
 */
import { plan, resolveCluster } from '../parallelism/predict/index.js';
import { bestWithoutPipeline, compactLayout, fixed, int, overheadText, pct, renderTable, summarize, wrap, type LayoutSummary, type Scenario, type Workload } from './common.js';

export const NAME = 'diminishing-returns';
export const QUESTION = 'Strong scaling a fixed model and global batch from 1 node to 32 nodes and on to 2,048 GPUs: how fast does naive data parallelism lose MFU, why, and how far does the planner\'s best layout hold up?';

export interface DiminishingOptions {
  model?: string;
  gpu?: string;
  cluster?: string;
  seq?: number;
  /** sequences per step; must be divisible by every GPU count */
  globalBatch?: number;
  gpuCounts?: number[];
  /** layouts the planner re-predicts in full (plan's top; default 3) */
  top?: number;
  /** the contrast cluster for the naive layout ('' for none) */
  contrastCluster?: string;
}

export const DEFAULTS: Required<DiminishingOptions> = {
  model: 'llama3-8b', gpu: 'h100', cluster: 'h100-1nic', seq: 512, globalBatch: 1024,
  gpuCounts: [8, 16, 32, 64, 128, 256, 512, 1024, 2048], top: 3, contrastCluster: 'hgx-h100',
};

export interface DiminishingSide extends LayoutSummary {
  /** seconds per step of forward + backward (+ recompute) kernels on one GPU */
  compute_s: number;
  /** seconds per step of the data-parallel collectives (hidden or not), and the exposed part */
  dp_comm_s: number;
  dp_exposed_s: number;
}

export interface DiminishingRow {
  gpus: number;
  nodes: number;
  tokens_per_gpu: number;
  /** naive data parallelism (undefined: nothing fits, or fewer sequences than GPUs) */
  naive?: DiminishingSide;
  /** why there is no naive layout (when naive is undefined) */
  naive_missing?: string;
  /** the same on the contrast cluster (rail-optimized hgx-h100 by default) */
  naive_contrast?: DiminishingSide;
  /** the planner's best layout */
  best: DiminishingSide;
  /** best / naive throughput */
  speedup?: number;
}

function side(p: Parameters<typeof summarize>[0]): DiminishingSide {
  const dpColl = p.collectives.filter((c) => c.group === 'dp' || c.group === 'dp-expert');
  return {
    ...summarize(p),
    compute_s: p.breakdown_s.compute + p.breakdown_s.recompute,
    dp_comm_s: dpColl.reduce((s, c) => s + c.time_s * c.calls, 0),
    dp_exposed_s: p.breakdown_s.dp,
  };
}

/** The rows of the scenario (the tour prints them): one per GPU count, naive and planned. */
export function diminishingReturnsRows(opts: DiminishingOptions = {}): DiminishingRow[] {
  const o = { ...DEFAULTS, ...opts };
  const rows: DiminishingRow[] = [];
  for (const gpus of o.gpuCounts) {
    const w: Workload = { model: o.model, gpu: o.gpu, cluster: o.cluster, gpus, seq: o.seq, globalBatch: o.globalBatch };
    const perNode = resolveCluster(o.cluster, o.gpu, gpus).levels[0]!.size;
    const divides = o.globalBatch % gpus === 0;
    const naiveP = divides ? bestWithoutPipeline(w, { dataOnly: true }) : undefined;
    const contrastP = divides && o.contrastCluster ? bestWithoutPipeline({ ...w, cluster: o.contrastCluster }, { dataOnly: true }) : undefined;
    const r = plan({ model: o.model, gpu: o.gpu, cluster: o.cluster, gpus, seq: o.seq, globalBatch: o.globalBatch, top: o.top });
    const bestP = r.layouts[0];
    if (!bestP) throw new Error(`${NAME}: no layout of ${o.model} fits on ${gpus} x ${o.gpu}`);
    const naive = naiveP ? side(naiveP) : undefined;
    const best = side(bestP);
    rows.push({
      gpus, nodes: gpus / perNode, tokens_per_gpu: (o.globalBatch * o.seq) / gpus, naive,
      ...(naive ? {} : { naive_missing: !divides ? (gpus > o.globalBatch ? `${o.globalBatch} sequences < ${gpus} replicas` : `${o.globalBatch} sequences do not divide by ${gpus}`) : 'nothing fits' }),
      naive_contrast: contrastP ? side(contrastP) : undefined, best,
      speedup: naive ? best.tokens_per_s / naive.tokens_per_s : undefined,
    });
  }
  return rows;
}

/** Naive layout in a few characters: "zero 1, mb 8 (m 4)" (+ ", recompute full"). */
const naiveText = (s: DiminishingSide) => `zero ${s.zero}, mb ${s.micro_batch} (m ${s.microbatches})${s.recompute !== 'none' ? `, recompute ${s.recompute}` : ''}`;

/** The two tables: naive data parallelism (with the contrast cluster's MFU), then the planner's layouts. */
export function formatDiminishingReturns(rows: DiminishingRow[], o: Required<DiminishingOptions> = DEFAULTS): string[] {
  const out: string[] = [];
  const contrast = o.contrastCluster ? [{ header: `MFU on ${o.contrastCluster}` }] : [];
  out.push(`naive data parallelism on ${o.cluster} (tp = cp = pp = 1; best ZeRO level / micro-batch / recompute that fits)` +
    (o.contrastCluster ? `; last column: the same on ${o.contrastCluster}` : '') + ':');
  out.push(...renderTable(
    [{ header: 'GPUs' }, { header: 'nodes' }, { header: 'tokens/GPU' }, { header: 'layout', left: true }, { header: 'MFU' }, { header: 'TFLOP/s/GPU' },
      { header: 'tokens/s' }, { header: 'tokens/s/GPU' }, { header: 'compute s' }, { header: 'DP comm s' }, { header: 'DP exposed' }, ...contrast],
    rows.map((r) => {
      const n = r.naive;
      const c = o.contrastCluster ? [r.naive_contrast ? pct(r.naive_contrast.mfu) : '-'] : [];
      if (!n) return [String(r.gpus), fixed(r.nodes, 0), int(r.tokens_per_gpu), `- (${r.naive_missing ?? 'nothing fits'})`, '-', '-', '-', '-', '-', '-', '-', ...c];
      return [String(r.gpus), fixed(r.nodes, 0), int(r.tokens_per_gpu), naiveText(n), pct(n.mfu), fixed(n.tflops_per_gpu, 0),
        int(n.tokens_per_s), int(n.tokens_per_s_per_gpu), fixed(n.compute_s, 3), fixed(n.dp_comm_s, 3), pct(n.shares.dp, 0), ...c];
    }),
  ));
  out.push('');
  out.push(`the planner's best layout on ${o.cluster} (collemu plan; mb = micro-batch, m = microbatches per step, SP = sequence parallelism):`);
  out.push(...renderTable(
    [{ header: 'GPUs' }, { header: 'layout', left: true }, { header: 'MFU' }, { header: 'TFLOP/s/GPU' }, { header: 'tokens/s' },
      { header: 'tokens/s/GPU' }, { header: 'largest overheads', left: true }, { header: 'vs naive' }],
    rows.map((r) => [String(r.gpus), compactLayout(r.best), pct(r.best.mfu), fixed(r.best.tflops_per_gpu, 0), int(r.best.tokens_per_s),
      int(r.best.tokens_per_s_per_gpu), overheadText(r.best, 2), r.speedup ? `${fixed(r.speedup, 2)}x` : '-']),
  ));
  return out;
}

export interface DiminishingFindings {
  naive_mfu_1_node?: number;
  naive_mfu_2_nodes?: number;
  naive_mfu_4_nodes?: number;
  naive_mfu_32_nodes?: number;
  /** the largest GPU count naive data parallelism runs at, and its MFU there */
  naive_max_gpus?: number;
  naive_mfu_max_gpus?: number;
  /** first GPU count whose naive step is more than a quarter exposed DP communication */
  overhead_quarter_from_gpus?: number;
  /** naive tokens/s at its largest scale over tokens/s at 32 nodes */
  naive_throughput_gain_beyond_32_nodes?: number;
  best_mfu_32_nodes?: number;
  best_mfu_max_gpus: number;
  /** range of the naive DP collective time per step over the multi-node rows */
  naive_dp_comm_s: [number, number];
  /** the contrast cluster: naive MFU at 32 nodes and where its exposed DP passes a quarter */
  contrast_mfu_32_nodes?: number;
  contrast_overhead_quarter_from_gpus?: number;
}

export function diminishingFindings(rows: DiminishingRow[]): DiminishingFindings {
  const at = (nodes: number) => rows.find((r) => r.nodes === nodes);
  const last = rows[rows.length - 1]!;
  const lastNaive = [...rows].reverse().find((r) => r.naive);
  const n32 = at(32);
  const multi = rows.filter((r) => r.nodes > 1 && r.naive).map((r) => r.naive!.dp_comm_s);
  return {
    naive_mfu_1_node: at(1)?.naive?.mfu,
    naive_mfu_2_nodes: at(2)?.naive?.mfu,
    naive_mfu_4_nodes: at(4)?.naive?.mfu,
    naive_mfu_32_nodes: n32?.naive?.mfu,
    naive_max_gpus: lastNaive?.gpus,
    naive_mfu_max_gpus: lastNaive?.naive?.mfu,
    overhead_quarter_from_gpus: rows.find((r) => r.naive && r.naive.shares.dp > 0.25)?.gpus,
    naive_throughput_gain_beyond_32_nodes: n32?.naive && lastNaive?.naive ? lastNaive.naive.tokens_per_s / n32.naive.tokens_per_s : undefined,
    best_mfu_32_nodes: n32?.best.mfu,
    best_mfu_max_gpus: last.best.mfu,
    naive_dp_comm_s: [Math.min(...multi), Math.max(...multi)],
    contrast_mfu_32_nodes: n32?.naive_contrast?.mfu,
    contrast_overhead_quarter_from_gpus: rows.find((r) => r.naive_contrast && r.naive_contrast.shares.dp > 0.25)?.gpus,
  };
}

function conclusions(rows: DiminishingRow[], f: DiminishingFindings, o: Required<DiminishingOptions>): string[] {
  const out: string[] = [];
  const last = rows[rows.length - 1]!;
  const two = rows.find((r) => r.nodes === 2), n32 = rows.find((r) => r.nodes === 32);
  const p = (x?: number) => (x === undefined ? '-' : pct(x));
  const matches = f.naive_mfu_2_nodes !== undefined && f.naive_mfu_32_nodes !== undefined && f.naive_mfu_32_nodes < 0.15 && Math.abs(f.naive_mfu_2_nodes - 0.4) < 0.1;
  out.push(...wrap(`Naive data parallelism on ${o.cluster}: MFU ${p(f.naive_mfu_1_node)} on 1 node, ${p(f.naive_mfu_2_nodes)} on 2 nodes, ${p(f.naive_mfu_4_nodes)} on 4, ` +
    `${p(f.naive_mfu_32_nodes)} on 32 nodes, ${p(f.naive_mfu_max_gpus)} on ${int(f.naive_max_gpus ?? 0)} GPUs (the research: about 40% on 2 nodes, below 15% on 32 nodes): ` +
    (matches ? 'the model reproduces the observation.' : 'the model does NOT reproduce the observation with this workload.')));
  if (f.overhead_quarter_from_gpus !== undefined) {
    const r = rows.find((x) => x.gpus === f.overhead_quarter_from_gpus)!;
    out.push(...wrap(`Exposed data-parallel communication passes a quarter of the step at ${int(r.gpus)} GPUs (${r.nodes} nodes); on one node (NVLink only) ` +
      `it is ${rows[0]!.naive ? pct(rows[0]!.naive.shares.dp, 0) : '-'} of the step.`));
  }
  out.push(...wrap(`Why: the DP collectives (ZeRO's gradient ReduceScatter and parameter AllGather over the NICs, ${fixed(f.naive_dp_comm_s[0], 2)}-${fixed(f.naive_dp_comm_s[1], 2)} s per step ` +
    `on every multi-node row) do not shrink with more GPUs, while the compute per GPU does (${two?.naive ? fixed(two.naive.compute_s, 2) : '-'} s on 2 nodes, ` +
    `${n32?.naive ? fixed(n32.naive.compute_s, 2) : '-'} s on 32 nodes). Once the backward is shorter than the ReduceScatter the rest is exposed, and the step stops getting shorter: ` +
    `from 32 nodes to ${int(f.naive_max_gpus ?? 0)} GPUs naive throughput changes by x${f.naive_throughput_gain_beyond_32_nodes !== undefined ? fixed(f.naive_throughput_gain_beyond_32_nodes, 2) : '-'} for ` +
    `${n32 && f.naive_max_gpus ? fixed(f.naive_max_gpus / n32.gpus, 0) : '-'}x the GPUs` +
    (last.naive ? '.' : `; at ${int(last.gpus)} GPUs it cannot run at all (${last.naive_missing}).`)));
  if (o.contrastCluster) {
    out.push(...wrap(`On ${o.contrastCluster} (one NIC per GPU, rail-optimized: 8x the scale-out bandwidth per node) naive data parallelism holds ` +
      `${p(f.contrast_mfu_32_nodes)} on 32 nodes; its exposed DP passes a quarter of the step only at ` +
      `${f.contrast_overhead_quarter_from_gpus !== undefined ? `${int(f.contrast_overhead_quarter_from_gpus)} GPUs` : 'none of these scales'}. ` +
      'The collapse is a matter of scale-out bandwidth per unit of work: the research\'s figures fit the first kind of cluster.'));
  }
  const dims = (l: DiminishingSide) => [l.tp > 1 ? 'tensor' : '', l.cp > 1 ? 'context' : '', l.pp > 1 ? 'pipeline' : ''].filter(Boolean);
  const used = [...new Set(rows.flatMap((r) => dims(r.best)))];
  out.push(...wrap(`The planner holds ${p(f.best_mfu_32_nodes)} on 32 nodes (${n32 ? compactLayout(n32.best) : '-'}) and ${p(f.best_mfu_max_gpus)} on ${int(last.gpus)} GPUs ` +
    `(${compactLayout(last.best)})` + (used.length ? `: ${used.join(' and ').replace(/ and (?=.* and )/g, ', ')} parallelism shrink the data-parallel group and the parameters each DP rank reduces, ` +
      'so the same batch keeps more work per data-parallel rank' : '') +
    `; its remaining overheads at ${int(last.gpus)} GPUs are ${overheadText(last.best)}.`));
  out.push(...wrap(`Workload: ${o.model}, ${o.cluster} (${o.gpu}), sequence ${o.seq}, global batch ${o.globalBatch} sequences (${int(o.globalBatch * o.seq)} tokens) at every scale.`));
  return out;
}

export const scenario: Scenario = {
  name: NAME,
  question: QUESTION,
  async run() {
    const rows = diminishingReturnsRows();
    const f = diminishingFindings(rows);
    const lines = [`scenario ${NAME}: ${QUESTION}`, '', ...formatDiminishingReturns(rows, DEFAULTS), '', ...conclusions(rows, f, DEFAULTS)];
    return { lines, json: { scenario: NAME, question: QUESTION, workload: { ...DEFAULTS }, rows, findings: f } };
  },
};
