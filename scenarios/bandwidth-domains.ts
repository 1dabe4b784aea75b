/**
 * Scenario `bandwidth-domains`: the same model and GPU count on three systems whose high-bandwidth
 * domain differs in size, the planner's best layout with and without pipeline parallelism.
 *
 * Question: does pipeline parallelism become unnecessary when the high-bandwidth domain is large
 * (a 72-GPU NVLink rack, a TPU slice whose ICI torus joins every chip), and does it pay when data-
 * parallel communication is the bottleneck?
 *
 * The research observation (calibration.md, "Seed observations"): large high-bandwidth domains (TPU
 * pods, GB200 NVL72) reach good MFU without pipeline parallelism; pipeline parallelism pays mainly
 * when data-parallel communication is the bottleneck.
 *
 * Setup: Llama 3 70B, 4,096-token sequences, 2,304 accelerators (the largest count below 2,500 that
 * is a whole number of HGX nodes, NVL72 racks and a v5p slice: 288 x 8, 32 x 72, 12 x 12 x 16):
 *  - HGX H100: 8 GPUs per NVLink 4 domain, one 400G NIC per GPU (cluster preset hgx-h100);
 *  - GB200 NVL72: 72 GPUs per NVLink 5 rack, one 800G NIC per GPU (gb200-nvl72);
 *  - TPU v5p: one slice, a 3D ICI torus (tpu-v5p).
 * Three global batches: 288, 576 and 1,152 sequences (512, 1,024 and 2,048 tokens per accelerator):
 * the smaller the batch per accelerator, the less backward there is to hide the data-parallel
 * reduction behind. "With PP" is the planner's best (PP allowed, chosen if it pays); "without PP"
 * is the best pp = 1 layout (bestWithoutPipeline: the planner's own pp = 1 candidates).
 */
import { plan, resolveCluster } from '../parallelism/predict/index.js';
import { bestWithoutPipeline, compactLayout, domainSize, fixed, int, overheadText, pct, renderTable, summarize, wrap, type LayoutSummary, type Scenario } from './common.js';

export const NAME = 'bandwidth-domains';
export const QUESTION = 'The same model on HGX H100 (8-GPU NVLink + InfiniBand), GB200 NVL72 and TPU v5p: is pipeline parallelism unnecessary when the high-bandwidth domain is large, and does it pay when data-parallel communication is the bottleneck?';

export interface System {
  name: string;
  gpu: string;
  cluster: string;
}

export const SYSTEMS: readonly System[] = [
  { name: 'HGX H100', gpu: 'h100', cluster: 'hgx-h100' },
  { name: 'GB200 NVL72', gpu: 'b200', cluster: 'gb200-nvl72' },
  { name: 'TPU v5p', gpu: 'tpu-v5p', cluster: 'tpu-v5p' },
];

export const SETUP = { model: 'llama3-70b', gpus: 2304, seq: 4096, batches: [288, 576, 1152], top: 3 };

export interface DomainRow {
  system: string;
  /** accelerators joined by the fast links (a node, a rack, the whole torus slice) */
  domain: number;
  global_batch: number;
  tokens_per_gpu: number;
  /** the planner's best (PP allowed) */
  best: LayoutSummary;
  /** the best layout without PP (undefined: none fits) */
  no_pp?: LayoutSummary;
  /** best MFU - no-PP MFU (fraction) */
  pp_gain: number;
  /**
   * Process groups of which some lie inside one high-bandwidth domain and others span two (a group
   * size that does not divide the rack, e.g. tp 16 on 72-GPU racks): `fraction` of the groups of
   * `dim` straddle two domains. predictStep prices every group of that shape as the slowest (the
   * step waits for it), so such layouts pay NIC speed for the whole dimension.
   */
  mispriced: { which: 'best' | 'no_pp'; dim: string; size: number; fraction: number }[];
}

/**
 * For a layout (mesh order [TP, CP, PP, DP], innermost first) on domains of `domain` consecutive
 * GPUs: the dimensions whose rank-0 group lies inside one domain while a fraction of the others span
 * several (that fraction).
 */
export function mispricedGroups(l: { tp: number; cp: number; pp: number; dp: number }, domain: number, gpus: number): { dim: string; size: number; fraction: number }[] {
  const out: { dim: string; size: number; fraction: number }[] = [];
  if (domain >= gpus) return out;
  const dims: [string, number][] = [['tp', l.tp], ['cp', l.cp], ['pp', l.pp], ['dp', l.dp]];
  let stride = 1;
  for (const [dim, n] of dims) {
    if (n > 1) {
      const spans = (base: number) => Math.floor(base / domain) !== Math.floor((base + (n - 1) * stride) / domain);
      if (!spans(0)) {
        let groups = 0, crossing = 0;
        // bases: the ranks whose coordinate along this dimension is 0
        for (let r = 0; r < gpus; r++) {
          if (Math.floor(r / stride) % n !== 0) continue;
          groups++;
          if (spans(r)) crossing++;
        }
        if (crossing > 0) out.push({ dim, size: n, fraction: crossing / groups });
      }
    }
    stride *= n;
  }
  return out;
}

export function domainRows(setup = SETUP, systems: readonly System[] = SYSTEMS): DomainRow[] {
  const rows: DomainRow[] = [];
  for (const globalBatch of setup.batches) {
    for (const sys of systems) {
      const w = { model: setup.model, gpu: sys.gpu, cluster: sys.cluster, gpus: setup.gpus, seq: setup.seq, globalBatch };
      const r = plan({ ...w, top: setup.top });
      const b = r.layouts[0];
      if (!b) throw new Error(`${NAME}: no layout of ${setup.model} fits on ${setup.gpus} x ${sys.gpu}`);
      const n = bestWithoutPipeline(w);
      const best = summarize(b);
      const noPp = n ? summarize(n) : undefined;
      const domain = domainSize(resolveCluster(sys.cluster, sys.gpu, setup.gpus));
      const mispriced: DomainRow['mispriced'] = [];
      for (const [which, l] of [['best', best], ['no_pp', noPp]] as const) {
        if (l) for (const m of mispricedGroups(l, domain, setup.gpus)) mispriced.push({ which, ...m });
      }
      rows.push({
        system: sys.name, domain, global_batch: globalBatch,
        tokens_per_gpu: (globalBatch * setup.seq) / setup.gpus, best, no_pp: noPp, pp_gain: best.mfu - (noPp?.mfu ?? 0), mispriced,
      });
    }
  }
  return rows;
}

export function formatDomains(rows: DomainRow[]): string[] {
  return renderTable(
    [{ header: 'system', left: true }, { header: 'domain' }, { header: 'tokens/GPU' }, { header: 'best layout (PP allowed)', left: true }, { header: 'MFU' },
      { header: 'best layout without PP', left: true }, { header: 'MFU' }, { header: 'its largest overheads', left: true }, { header: 'PP gain' }],
    rows.map((r) => [r.system, int(r.domain), int(r.tokens_per_gpu), compactLayout(r.best), pct(r.best.mfu), r.no_pp ? compactLayout(r.no_pp) : 'nothing fits',
      r.no_pp ? pct(r.no_pp.mfu) : '-', r.no_pp ? overheadText(r.no_pp, 2) : '-', `${fixed(100 * r.pp_gain, 1)} pts`]),
  );
}

export interface DomainFindings {
  /** per system: the smallest no-PP MFU over the batches */
  min_no_pp_mfu: Record<string, number>;
  /** per system: the largest PP gain (points as a fraction) and the batch and no-PP DP share there */
  max_pp_gain: Record<string, { gain: number; global_batch: number; no_pp_dp_share: number; no_pp_largest: string }>;
  /** rows where PP pays more than 2 points, with what limits their no-PP layout */
  pp_pays: { system: string; global_batch: number; gain: number; no_pp_largest: string; no_pp_dp_share: number }[];
}

export function domainFindings(rows: DomainRow[]): DomainFindings {
  const f: DomainFindings = { min_no_pp_mfu: {}, max_pp_gain: {}, pp_pays: [] };
  for (const r of rows) {
    const nm = r.no_pp?.mfu ?? 0;
    f.min_no_pp_mfu[r.system] = Math.min(f.min_no_pp_mfu[r.system] ?? Infinity, nm);
    const largest = r.no_pp?.overheads[0]?.part ?? 'none';
    const dpShare = r.no_pp?.shares.dp ?? 0;
    const cur = f.max_pp_gain[r.system];
    if (!cur || r.pp_gain > cur.gain) f.max_pp_gain[r.system] = { gain: r.pp_gain, global_batch: r.global_batch, no_pp_dp_share: dpShare, no_pp_largest: largest };
    if (r.pp_gain > 0.02) f.pp_pays.push({ system: r.system, global_batch: r.global_batch, gain: r.pp_gain, no_pp_largest: largest, no_pp_dp_share: dpShare });
  }
  return f;
}

function conclusions(rows: DomainRow[], f: DomainFindings): string[] {
  const out: string[] = [];
  const sys = [...new Set(rows.map((r) => r.system))];
  const dom = (s: string) => rows.find((r) => r.system === s)!.domain;
  const bySize = [...sys].sort((x, y) => dom(x) - dom(y));
  const rising = bySize.every((s, i) => i === 0 || f.min_no_pp_mfu[s]! > f.min_no_pp_mfu[bySize[i - 1]!]!);
  out.push(...wrap(`Without pipeline parallelism the worst MFU over the three batches is ${bySize.map((s) => `${pct(f.min_no_pp_mfu[s]!)} on ${s} (domain ${int(dom(s))})`).join(', ')}` +
    `${rising ? ': it rises with the size of the high-bandwidth domain' : ''}.`));
  for (const s of sys) {
    const g = f.max_pp_gain[s]!;
    const per = rows.filter((r) => r.system === s).map((r) => `${fixed(100 * r.pp_gain, 1)}`).join(' / ');
    out.push(...wrap(`${s}: PP gain ${per} points at ${SETUP.batches.map((b) => `${b}`).join(' / ')} sequences; ` +
      (g.gain > 0.02
        ? `largest at ${g.global_batch} sequences, where the best layout without PP loses most to ${g.no_pp_largest}${g.no_pp_largest === 'dp' ? ` (${pct(g.no_pp_dp_share, 0)} of its step is exposed data-parallel communication)` : ''}.`
        : 'pipeline parallelism never pays more than 2 points here.')));
  }
  if (f.pp_pays.length) {
    const dpBound = f.pp_pays.filter((x) => x.no_pp_largest === 'dp');
    out.push(...wrap(`PP pays more than 2 points in ${f.pp_pays.length} of ${rows.length} cases; in ${dpBound.length} of them the no-PP layout's largest overhead is ` +
      `data-parallel communication (${dpBound.map((x) => `${x.system} at ${x.global_batch}`).join(', ') || 'none'})` +
      (f.pp_pays.length > dpBound.length ? `, in the others ${f.pp_pays.filter((x) => x.no_pp_largest !== 'dp').map((x) => `${x.no_pp_largest} (${x.system} at ${x.global_batch})`).join(', ')}` : '') +
      '. With PP each data-parallel rank holds 1/pp of the layers, so its gradient ReduceScatter and parameter AllGather move pp times fewer bytes, once per step.'));
  }
  const small = bySize[0]!, g0 = f.max_pp_gain[small]!;
  const mostOnSmall = bySize.every((s) => f.max_pp_gain[s]!.gain <= g0.gain);
  out.push(...wrap(`Answer: the largest PP gain is ${bySize.map((s) => `${fixed(100 * f.max_pp_gain[s]!.gain, 1)} points on ${s}`).join(', ')}. ` +
    (mostOnSmall && g0.no_pp_largest === 'dp'
      ? `It is largest on the smallest domain (${small}), at ${g0.global_batch} sequences, where the layout without PP is bound by exposed data-parallel communication; `
      : '') +
    `on the larger domains the best layout without PP stays within ${fixed(100 * Math.max(...bySize.slice(1).map((s) => f.max_pp_gain[s]!.gain)), 1)} points of the best at every batch.`));
  const mis = rows.flatMap((r) => r.mispriced.map((x) => `${r.system} at ${r.global_batch} (${x.which === 'best' ? 'best' : 'no PP'}): ${x.dim} ${x.size}, ` +
    `${pct(x.fraction, 0)} of its groups`));
  if (mis.length) {
    out.push(...wrap(`Note: in some layouts a group size does not divide the ${[...new Set(rows.filter((r) => r.mispriced.length).map((r) => r.domain))].join(' / ')}-GPU domain, ` +
      `so some of its groups span two domains; the step waits for the slowest group, so the model prices the whole dimension at NIC speed: ${mis.join('; ')}.`));
  }
  out.push(...wrap('Why the domain size matters: inside a large domain tensor and context parallelism run on the fast links, so they (not PP) split the model ' +
    'and the data-parallel group shrinks; an 8-GPU NVLink node caps tp x cp at 8 before the links become the NICs.'));
  return out;
}

export const scenario: Scenario = {
  name: NAME,
  question: QUESTION,
  async run() {
    const rows = domainRows();
    const f = domainFindings(rows);
    const lines = [`scenario ${NAME}: ${QUESTION}`, '', `${SETUP.model}, ${int(SETUP.gpus)} accelerators, sequence ${int(SETUP.seq)}; global batch ${SETUP.batches.join(' / ')} sequences:`,
      ...formatDomains(rows), '  (mb = micro-batch, m = microbatches per step, SP = sequence parallelism; PP gain = best MFU - best MFU without PP)', '',
      ...conclusions(rows, f)];
    return { lines, json: { scenario: NAME, question: QUESTION, setup: SETUP, rows, findings: f } };
  },
};
