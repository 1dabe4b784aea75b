/**
 * Scenario `comm-profile`: the collective profile of a training step under DP, FSDP, TP, PP, CP and
 * EP, as NCCL logs are profiled in the research (operation types, call counts, message-size
 * histogram, bytes per link class), twice:
 *
 *  1. measured: one real training step of the small Llama model (parallelism/train runTraining) on
 *     8 emulated H100s in 2 nodes of 4 (NVLink 4 inside a node, NDR InfiniBand between them: the
 *     hgx-h100 preset's links with 4 GPUs per node, so that 4-rank groups stay in a node and the
 *     data-parallel groups cross nodes). Every call a rank makes is counted as it is emitted, every
 *     message on the wire is traced with its link class.
 *  2. predicted at full scale: the collectives predictStep prices for one step of big models
 *     (Llama 3 8B under FSDP, the Llama 3 405B layouts of the paper, Mixtral 8x7B with EP).
 *
 * Question: which collectives does each kind of parallelism issue, how many and how large, and
 * which links carry them?
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DeviceMesh, MESH_DIMS, type MeshDim } from '../parallelism/mesh.js';
import { predictStep, type PredictInput } from '../parallelism/predict/index.js';
import { runTraining } from '../parallelism/train/train.js';
import { makeTopology } from '../runtime/topology.js';
import { bytes, fixed, int, pct, renderTable, seconds, summarize, wrap, type Scenario, type ScenarioRunOptions } from './common.js';
import { PUBLISHED, predictInput } from './llama3-405b.js';

export const NAME = 'comm-profile';
export const QUESTION = 'Which collectives does a training step issue under DP, FSDP, TP, PP, CP and EP (types, call counts, message sizes), and which links carry the bytes: measured on 8 emulated GPUs, predicted at full scale?';

// ------------------------------------------------------------------ measured, small scale

export interface SmallLayout {
  name: string;
  what: string;
  model: 'small' | 'tiny-moe';
  mesh: string;
  zero?: number;
  microbatches?: number;
  cpMode?: 'ring' | 'ulysses';
}

/** 8 ranks each; the inner dimension (4) inside a node, DP (2) across the two nodes. */
export const SMALL_LAYOUTS: readonly SmallLayout[] = [
  { name: 'DP', what: 'DDP (ZeRO-0), 8 replicas', model: 'small', mesh: 'dp=8', zero: 0 },
  { name: 'FSDP', what: 'ZeRO-3 over 8 ranks', model: 'small', mesh: 'dp=8', zero: 3 },
  { name: 'TP', what: 'tensor parallel 4 x DP 2', model: 'small', mesh: 'tp=4,dp=2' },
  { name: 'PP', what: '1F1B, 4 stages x DP 2, 4 microbatches', model: 'small', mesh: 'pp=4,dp=2', microbatches: 4 },
  { name: 'CP', what: 'ring attention 4 x DP 2', model: 'small', mesh: 'cp=4,dp=2', cpMode: 'ring' },
  { name: 'EP', what: 'MoE, 4 experts over EP 4 x DP 2', model: 'tiny-moe', mesh: 'ep=4,dp=2' },
];

/** sequences per step, the same for every layout */
export const SMALL_BATCH = 16;
/** message-size bins of the small runs: upper bounds in bytes (the last bin is open) */
export const SMALL_BINS = [1024, 4096, 16384, 65536, 262144, 1048576];

export interface OpProfile {
  coll: string;
  /** mesh dimensions of the process group ('tp', 'pp', 'dp+cp', ...) */
  group: string;
  /** ranks per group, and whether some group of this kind has members on both nodes */
  group_size: number;
  crosses_nodes: boolean;
  /** over all ranks */
  calls: number;
  bytes: number;
  /** the busiest rank's calls */
  calls_per_rank: number;
  /** median payload per call */
  median_bytes: number;
  /** payload of every call of every rank */
  sizes: number[];
}

export interface SmallProfile {
  layout: SmallLayout;
  world: number;
  ops: OpProfile[];
  /** calls per size bin (SMALL_BINS), all ranks, all collectives and sends */
  histogram: number[];
  /** bytes and messages on the wire per link class (every traced send) */
  wire_bytes: Record<string, number>;
  wire_messages: Record<string, number>;
  virtual_step_time_s: number;
  /** max relative error of every parameter and loss against the serial run */
  parity_max_rel_err: number;
  host_seconds: number;
}

export function histogram(sizes: { bytes: number; count: number }[], bins: readonly number[]): number[] {
  const h = new Array<number>(bins.length + 1).fill(0);
  for (const s of sizes) {
    let i = bins.findIndex((b) => s.bytes < b);
    if (i < 0) i = bins.length;
    h[i]! += s.count;
  }
  return h;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)]! : 0;
};

/** GPUs per node of the small runs' topology (2 nodes) */
export const GPUS_PER_NODE = 4;

/** The group size of a CommStat's dims ('dp+cp' = dp_shard x dp x cp) and whether any such group spans two nodes. */
function groupPlacement(mesh: DeviceMesh, dims: string): { size: number; crosses: boolean } {
  const ds = dims.split('+').flatMap((d) => (d === 'dp' ? ['dp_shard', 'dp'] : [d])).filter((d): d is MeshDim => (MESH_DIMS as readonly string[]).includes(d));
  const groups = mesh.groups(ds);
  const crosses = groups.some((g) => new Set(g.map((r) => Math.floor(r / GPUS_PER_NODE))).size > 1);
  return { size: groups[0]?.length ?? 1, crosses };
}

/** A topology file: the hgx-h100 preset's two link classes, 4 GPUs per node, 2 nodes. */
function writeTwoNodeTopology(dir: string): string {
  const h = makeTopology('hgx-h100', { nodes: 1 }).data;
  const links: Record<string, unknown> = {};
  for (const l of h.links) {
    links[l.name] = { latency_us: l.alpha * 1e6, bandwidth_GBps: l.bw / 1e9, ...(l.kind ? { kind: l.kind } : {}), ...(l.efficiency ? { efficiency: l.efficiency } : {}) };
  }
  const file = join(dir, 'hgx-h100-2x4.json');
  writeFileSync(file, JSON.stringify({
    name: 'hgx-h100 2 nodes x 4', gpu: h.gpu, gpusPerNode: GPUS_PER_NODE, nodes: 2, links,
    intraNode: h.links[h.intra]!.name, interNode: h.links[h.inter]!.name,
  }));
  return file;
}

/** One training step per layout on 8 ranks (2 nodes x 4), profiled. */
export async function smallProfiles(executor: 'emulate' | 'simulate' = 'emulate', layouts: readonly SmallLayout[] = SMALL_LAYOUTS): Promise<SmallProfile[]> {
  const dir = mkdtempSync(join(tmpdir(), 'collemu-scenario-'));
  try {
    const topology = writeTwoNodeTopology(dir);
    const out: SmallProfile[] = [];
    for (const L of layouts) {
      const r = await runTraining({
        model: L.model, mesh: L.mesh, zero: L.zero ?? 0, microbatches: L.microbatches, cpMode: L.cpMode, batch: SMALL_BATCH,
        steps: 1, optimizer: { kind: 'sgd', lr: 0.1 }, executor, topology, trace: true,
      });
      const mesh = DeviceMesh.parse(L.mesh);
      const ops = new Map<string, OpProfile>();
      for (const rank of r.comm_per_rank) {
        for (const s of rank) {
          const k = `${s.coll}/${s.dims}`;
          let o = ops.get(k);
          if (!o) {
            const g = groupPlacement(mesh, s.dims);
            o = { coll: s.coll, group: s.dims, group_size: g.size, crosses_nodes: g.crosses, calls: 0, bytes: 0, calls_per_rank: 0, median_bytes: 0, sizes: [] };
            ops.set(k, o);
          }
          o.calls += s.calls;
          o.bytes += s.bytes;
          o.calls_per_rank = Math.max(o.calls_per_rank, s.calls);
          o.sizes.push(...s.sizes);
        }
      }
      const all = [...ops.values()];
      for (const o of all) o.median_bytes = median(o.sizes);
      const wire: Record<string, number> = {}, msgs: Record<string, number> = {};
      for (const name of r.links) { wire[name] = 0; msgs[name] = 0; }
      for (const e of r.events ?? []) {
        if (e.kind !== 'send' || e.link < 0) continue;
        const name = r.links[e.link]!;
        wire[name]! += e.bytes;
        msgs[name]! += 1;
      }
      out.push({
        layout: L, world: r.world,
        ops: all,
        histogram: histogram(all.flatMap((o) => o.sizes.map((b) => ({ bytes: b, count: 1 }))), SMALL_BINS),
        wire_bytes: wire, wire_messages: msgs, virtual_step_time_s: r.virtual_step_time_s,
        parity_max_rel_err: r.parity?.max_rel_err ?? NaN, host_seconds: r.host_seconds,
      });
    }
    return out;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const binLabels = (bins: readonly number[], unit: (b: number) => string) =>
  [`<${unit(bins[0]!)}`, ...bins.slice(1).map((b, i) => `${unit(bins[i]!)}-${unit(b)}`), `>=${unit(bins[bins.length - 1]!)}`];
const kib = (b: number) => (b >= 1048576 ? `${b / 1048576}M` : `${b / 1024}K`);

export function formatSmall(rows: SmallProfile[]): string[] {
  const out: string[] = [];
  out.push('operations of one step, all 8 ranks (payload = nccl-tests size of a call; sendrecv = point-to-point messages):');
  out.push(...renderTable(
    [{ header: 'layout', left: true }, { header: 'mesh', left: true }, { header: 'op', left: true }, { header: 'group', left: true }, { header: 'ranks' },
      { header: 'spans', left: true }, { header: 'calls' }, { header: 'calls/rank' }, { header: 'payload' }, { header: 'median/call' }],
    rows.flatMap((r) => r.ops.map((o, i) => [i === 0 ? r.layout.name : '', i === 0 ? r.layout.mesh + (r.layout.zero ? `, zero ${r.layout.zero}` : '') : '',
      o.coll, o.group, String(o.group_size), o.crosses_nodes ? '2 nodes' : '1 node', int(o.calls), int(o.calls_per_rank), bytes(o.bytes), bytes(o.median_bytes)])),
  ));
  out.push('');
  out.push('message-size histogram (calls of all ranks by payload per call):');
  out.push(...renderTable(
    [{ header: 'layout', left: true }, ...binLabels(SMALL_BINS, kib).map((h) => ({ header: h }))],
    rows.map((r) => [r.layout.name, ...r.histogram.map((n) => (n ? int(n) : '.'))]),
  ));
  out.push('');
  const links = [...new Set(rows.flatMap((r) => Object.keys(r.wire_bytes)))];
  out.push('bytes on the wire per link class (every message the ranks sent, from the trace), virtual step time, parity with the serial run:');
  out.push(...renderTable(
    [{ header: 'layout', left: true }, { header: 'what', left: true }, ...links.flatMap((l) => [{ header: l }, { header: 'msgs' }]), { header: `${links[links.length - 1]} share` },
      { header: 'step (virtual)' }, { header: 'parity' }],
    rows.map((r) => {
      const tot = links.reduce((s, l) => s + (r.wire_bytes[l] ?? 0), 0);
      return [r.layout.name, r.layout.what, ...links.flatMap((l) => [bytes(r.wire_bytes[l] ?? 0), int(r.wire_messages[l] ?? 0)]),
        pct(tot ? (r.wire_bytes[links[links.length - 1]!] ?? 0) / tot : 0, 0), seconds(r.virtual_step_time_s), r.parity_max_rel_err.toExponential(1)];
    }),
  ));
  return out;
}

// ------------------------------------------------------------------ predicted, full scale

export interface FullLayout {
  name: string;
  what: string;
  input: PredictInput;
}

export const FULL_LAYOUTS: readonly FullLayout[] = [
  {
    name: 'FSDP', what: 'Llama 3 8B on 256 H100 (32 HGX nodes), ZeRO-3, seq 4,096, 4M tokens',
    input: { model: 'llama3-8b', gpu: 'h100', cluster: 'hgx-h100', gpus: 256, seq: 4096, globalBatch: 1024, zero: 3, microBatch: 2 },
  },
  { name: 'TP+PP+DP', what: 'Llama 3 405B on 8,192 H100 (paper Table 4 row 1)', input: predictInput(PUBLISHED[0]!) },
  { name: 'TP+CP+PP+DP', what: 'Llama 3 405B on 16,384 H100, 128K context (row 3)', input: predictInput(PUBLISHED[2]!) },
  {
    name: 'EP', what: 'Mixtral 8x7B on 256 H100, TP 2 x EP 8 (carved from DP 128), ZeRO-1',
    input: { model: 'mixtral-8x7b', gpu: 'h100', cluster: 'hgx-h100', gpus: 256, tp: 2, ep: 8, seq: 4096, globalBatch: 1024, zero: 1, sequenceParallel: true, microBatch: 1 },
  },
];

/** full-scale size bins: upper bounds in bytes */
export const FULL_BINS = [2 ** 20, 2 ** 24, 2 ** 28, 2 ** 32];

export interface FullCollective {
  group: string;
  size: number;
  stride: number;
  op: string;
  bytes: number;
  calls: number;
  algo: string;
  links: string[];
  time_s: number;
  exposed_s: number;
}

export interface FullProfile {
  layout: FullLayout;
  mfu: number;
  step_time_s: number;
  fits_in_memory: boolean;
  collectives: FullCollective[];
  /** payload bytes per step on the critical rank, attributed to the outermost link class each group crosses */
  bytes_by_link: Record<string, number>;
  histogram: number[];
}

export function fullProfiles(layouts: readonly FullLayout[] = FULL_LAYOUTS): FullProfile[] {
  return layouts.map((L) => {
    const p = predictStep(L.input);
    const collectives = p.collectives.map((c) => ({ group: c.group, size: c.size, stride: c.stride, op: c.op, bytes: c.bytes, calls: c.calls, algo: c.algo, links: c.links, time_s: c.time_s, exposed_s: c.exposed_s }));
    const byLink: Record<string, number> = {};
    for (const c of collectives) {
      const l = c.links[c.links.length - 1] ?? 'local';
      byLink[l] = (byLink[l] ?? 0) + c.bytes * c.calls;
    }
    return {
      layout: L, mfu: summarize(p).mfu, step_time_s: p.step_time_s, fits_in_memory: p.fits_in_memory, collectives, bytes_by_link: byLink,
      histogram: histogram(collectives.map((c) => ({ bytes: c.bytes, count: c.calls })), FULL_BINS),
    };
  });
}

const mib = (b: number) => (b >= 2 ** 30 ? `${b / 2 ** 30}G` : `${b / 2 ** 20}M`);

export function formatFull(rows: FullProfile[]): string[] {
  const out: string[] = [];
  out.push('predicted collectives of one step on the critical rank (predictStep; size = nccl-tests size of a call, time = closed form of the algorithm):');
  out.push(...renderTable(
    [{ header: 'layout', left: true }, { header: 'group', left: true }, { header: 'ranks' }, { header: 'op', left: true }, { header: 'size/call' }, { header: 'calls' },
      { header: 'algorithm', left: true }, { header: 'links', left: true }, { header: 'time/call' }, { header: 'exposed/step' }],
    rows.flatMap((r) => r.collectives.map((c, i) => [i === 0 ? r.layout.name : '', c.group, int(c.size), c.op, bytes(c.bytes), int(c.calls), c.algo,
      c.links.join(' + '), seconds(c.time_s), seconds(c.exposed_s)])),
  ));
  out.push('');
  out.push('per layout: MFU, calls by size per call, payload per step by the outermost link class its group crosses:');
  out.push(...renderTable(
    [{ header: 'layout', left: true }, { header: 'what', left: true }, { header: 'MFU' }, ...binLabels(FULL_BINS, mib).map((h) => ({ header: h })), { header: 'payload per step by link', left: true }],
    rows.map((r) => [r.layout.name, r.layout.what, pct(r.mfu), ...r.histogram.map((n) => (n ? int(n) : '.')),
      Object.entries(r.bytes_by_link).sort((a, b) => b[1] - a[1]).map(([l, b]) => `${l} ${bytes(b)}`).join(', ')]),
  ));
  return out;
}

// ------------------------------------------------------------------ the scenario

function conclusions(small: SmallProfile[], full: FullProfile[]): string[] {
  const out: string[] = [];
  const get = (n: string) => small.find((r) => r.layout.name === n);
  const wireTotal = (r?: SmallProfile) => (r ? Object.values(r.wire_bytes).reduce((a, b) => a + b, 0) : 0);
  const dp = get('DP'), fsdp = get('FSDP'), tp = get('TP');
  const inter = small[0] ? Object.keys(small[0].wire_bytes).pop() ?? '' : '';
  if (dp && fsdp) {
    out.push(...wrap(`FSDP puts ${fixed(wireTotal(fsdp) / wireTotal(dp), 2)}x DDP's bytes on the wire (ZeRO-3: an AllGather of the parameters before the forward and ` +
      `again before the backward, a ReduceScatter of the gradients, against one AllReduce), in ${int(fsdp.ops.reduce((s, o) => s + o.calls, 0))} calls instead of ` +
      `${int(dp.ops.reduce((s, o) => s + o.calls, 0))} (all ranks).`));
  }
  if (tp && dp) {
    const tpOps = tp.ops.filter((o) => o.group === 'tp');
    out.push(...wrap(`TP issues many small collectives: ${int(tpOps.reduce((s, o) => s + o.calls_per_rank, 0))} per rank with a median payload of ` +
      `${bytes(median(tpOps.flatMap((o) => o.sizes)))} (activations), against ${int(dp.ops.reduce((s, o) => s + o.calls_per_rank, 0))} gradient AllReduces per rank of median ` +
      `${bytes(median(dp.ops.flatMap((o) => o.sizes)))} under DP.`));
  }
  if (inter) {
    const parts = small.map((r) => {
      const cross = r.ops.filter((o) => o.crosses_nodes).map((o) => `${o.coll} ${o.group}`);
      return `${r.layout.name} ${pct((r.wire_bytes[inter] ?? 0) / wireTotal(r), 0)}${cross.length ? ` (${cross.join(', ')})` : ''}`;
    });
    const local = [...new Set(small.flatMap((r) => r.ops.filter((o) => !o.crosses_nodes).map((o) => o.group)))];
    const intra = Object.keys(small[0]!.wire_bytes)[0] ?? '';
    out.push(...wrap(`Link classes: ${inter} carries ${parts.join('; ')} of the bytes on the wire: the traffic of the groups that span both nodes (in parentheses), ` +
      `while the groups inside a node (${local.join(', ')}) stay on ${intra}. A ring over 8 ranks crosses the node boundary on 2 of its 8 hops` +
      `${dp ? ` (${pct((dp.wire_bytes[inter] ?? 0) / wireTotal(dp), 0)} of DDP's bytes)` : ''}.`));
  }
  for (const r of full) {
    const groups = [...new Set(r.collectives.map((c) => c.group))];
    const desc = groups.map((g) => {
      const cs = r.collectives.filter((c) => c.group === g);
      const links = [...new Set(cs.flatMap((c) => c.links))];
      const lo = Math.min(...cs.map((c) => c.bytes)), hi = Math.max(...cs.map((c) => c.bytes));
      return `${g} ${int(cs.reduce((s, c) => s + c.calls, 0))} calls of ${bytes(lo)}${hi > lo ? `-${bytes(hi)}` : ''} on ${links.join(' + ')}`;
    });
    out.push(...wrap(`${r.layout.name} (${r.layout.what}): ${desc.join('; ')}.`));
  }
  return out;
}

export const scenario: Scenario = {
  name: NAME,
  question: QUESTION,
  async run(opts: ScenarioRunOptions = {}) {
    const executor = opts.executor ?? 'emulate';
    const small = await smallProfiles(executor);
    const full = fullProfiles();
    const lines = [
      `scenario ${NAME}: ${QUESTION}`, '',
      `1. measured: one training step on 8 ${executor === 'emulate' ? 'emulated (worker threads)' : 'simulated'} H100s, 2 nodes x 4 (NVLink 4 inside, NDR InfiniBand between); ` +
        `small Llama model (tiny-moe for EP), ${SMALL_BATCH} sequences per step`,
      ...formatSmall(small), '',
      '2. predicted at full scale:',
      ...formatFull(full), '',
      ...conclusions(small, full),
    ];
    return { lines, json: { scenario: NAME, question: QUESTION, executor, small, full } };
  },
};
