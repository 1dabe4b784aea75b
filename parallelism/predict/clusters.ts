/**
 * Clusters for prediction, and what a process group's collectives cost on them.
 *
 * A cluster is a hierarchy of levels, innermost first. Level i is a domain of `size` GPUs (a node
 * on NVLink, a pod at full bisection, the whole cluster), entered through a per-GPU link of
 * `bw` bytes/s per direction and `alpha` seconds of latency, with `oversub` >= 1: traffic leaving a
 * domain of the level below shares an uplink of (GPUs of that domain) x bw / oversub.
 * Bandwidths are what a collective achieves (nccl-tests bus bandwidth), not line rate:
 *  - NVLink 4 (H100, H200): 370 of 450 GB/s, the ring AllReduce busbw of 8x H100 (nccl-tests #212);
 *    NCCL's NVLS would reach ~480 for AllReduce; the model keeps the ring figure.
 *  - NVLink 3 (A100): 235 of 300 GB/s (8x A100 AllReduce busbw, hardware.md, 2nd source).
 *  - NVLink 5 (B200): 900 x 370/450 = 740 GB/s (derived: NVLink 4's efficiency; no measurement).
 *  - NICs: 47 of 50 GB/s for 400G (NDR / RoCE, 46-48 measured, nccl-tests #290); HDR 200G and
 *    800G scaled by the same 0.94 (derived).
 *  - TPU ICI: the link figures of runtime/topology.ts as they are (no measurement to derate by).
 * Latencies: 1 us NVLink, 5 us through the NIC (runtime/topology.ts); Llama 3's inter-pod level 10 us
 * (hardware.md: "latency on outer dims up to tens of us").
 *
 * Presets (`--cluster`; without it, a GPU kind gets the first one listed for it):
 *  - dgx-a100 (a100): DGX A100 nodes, 8 GPUs on NVLink 3, one HDR 200G NIC per GPU, full fat tree
 *    (Selene, Narayanan et al. 2021). Topology: makeTopology('dgx-a100', nodes).
 *  - hgx-h100 (h100), hgx-h200 (h200): 8 GPUs on NVLink 4, one 400G NIC per GPU, full bisection.
 *    Topology: makeTopology('hgx-h100', nodes[, gpu h200]).
 *  - h100-1nic: the same nodes with ONE 400G NIC per node instead of one per GPU (a cluster that is
 *    not rail-optimized, as many cloud and Ethernet clusters are): the node's 8 GPUs share 47 GB/s
 *    of scale-out, a level-1 oversubscription of 8 (every GPU's traffic leaving the node shares
 *    8 x 47 / 8 GB/s). The same per-GPU link figures as hgx-h100 otherwise.
 *  - gb200-nvl72 (b200): 72-GPU NVLink 5 racks, one 800G NIC per GPU. makeTopology('gb200-nvl72');
 *    a GPU count that is not a multiple of 72 leaves the last rack partly used.
 *  - llama3-h100 (alias llama3): the Llama 3 training cluster (Llama 3 paper sec. 3.3.1,
 *    hardware.md): H100 80GB, 8 per server on NVLink, RoCE 400 Gb/s per GPU, 16 GPUs per rack,
 *    pods of 3,072 GPUs at full bisection, 1:7 oversubscription between pods. Topology: hgx-h100 with
 *    the RoCE figures; the pod level is modeled on top of it (below).
 *  - tpu-v4, tpu-v5p (and tpu-v5e, tpu-v6e): one slice of the TPU torus preset, its shape chosen
 *    for the chip count (axes as equal as possible, multiples of 4 so that they wrap around).
 * A JSON file: { "name", "gpu", "levels": [ { "name", "size", "bandwidth_GBps", "latency_us",
 * "oversubscription" }, ... ] } with sizes nested (each divides the next; the last may be omitted =
 * the whole cluster); bandwidths as achieved.
 *
 * Process groups (the mesh order [TP, CP, PP, DP], innermost first): the group of rank 0 along a
 * dimension of stride s has ranks 0, s, 2s, ..., (n-1)s. Its collectives are priced with the
 * collectives' own closed forms (collectives/registry.ts autoSelect: the cheapest algorithm, each
 * Algorithm.cost) on a Topology made for the group: the group's ranks renamed 0..n-1, its
 * members per node as gpusPerNode, the intra-node link class of the cluster, and as inter-node link
 * the one of the outermost level it crosses (cluster.topo.linkClassesOf names the classes). On a
 * torus, a group that is a box of the torus becomes that sub-torus (so the torus AllReduce applies);
 * other groups a ring of multi-hop ICI routes.
 * Modeled on top of runtime/topology.ts (which has two link classes): levels above the second one
 * and their oversubscription. A group that spans several domains of a level with oversubscription o
 * gets bw_eff = min(bw, domain GPUs x bw / (o x flows)), where flows is how many of the
 * concurrently running groups' streams leave one domain: for ring-type collectives one per group
 * member per node of each group present in the domain (NCCL runs one ring channel per NIC), for
 * all-to-all every GPU's crossing share of its traffic.
 */
import { readFileSync } from 'node:fs';
import { autoSelect } from '../../collectives/registry.js';
import type { Collective, CollSpec } from '../../collectives/types.js';
import { HARDWARE } from '../../runtime/hardware.js';
import { makeTopology, Topology, TopologyError, type LinkClass, type TopologyData } from '../../runtime/topology.js';
import { PredictError } from './errors.js';

export interface ClusterLevel {
  name: string;
  /** GPUs per domain of this level (Infinity: the whole cluster) */
  size: number;
  /** achieved bandwidth per GPU per direction, bytes/s */
  bw: number;
  /** latency, seconds */
  alpha: number;
  /** >= 1; traffic entering this level from a domain of the level below shares size_below x bw / oversub */
  oversub: number;
}

export interface Cluster {
  name: string;
  gpu: string;
  gpus: number;
  levels: ClusterLevel[];
  /** the runtime Topology of all GPUs (levels 0-1; a torus for TPUs), achieved bandwidths */
  topo: Topology;
  torus: boolean;
  /** one line */
  description: string;
}

export const CLUSTER_PRESETS = ['dgx-a100', 'hgx-h100', 'hgx-h200', 'h100-1nic', 'gb200-nvl72', 'llama3-h100', 'tpu-v4', 'tpu-v5p', 'tpu-v5e', 'tpu-v6e'] as const;

const DEFAULT_CLUSTER: Record<string, string> = {
  a100: 'dgx-a100', h100: 'hgx-h100', h200: 'hgx-h200', b200: 'gb200-nvl72',
  'tpu-v4': 'tpu-v4', 'tpu-v5p': 'tpu-v5p', 'tpu-v5e': 'tpu-v5e', 'tpu-v6e': 'tpu-v6e',
};

export const GPU_KINDS = Object.keys(DEFAULT_CLUSTER);

/** achieved / line-rate bandwidth per link class name of the runtime presets (see the header) */
const LINK_EFFICIENCY: Record<string, number> = {
  nvlink3: 235 / 300,
  nvlink4: 370 / 450,
  nvlink5: 370 / 450,
  'ib-hdr200': 0.94,
  'ib-ndr400': 0.94,
  'nic-800g': 0.94,
};

export function defaultClusterName(gpu: string): string {
  const c = DEFAULT_CLUSTER[gpu];
  if (!c) throw new PredictError(`unknown GPU '${gpu}' (known: ${GPU_KINDS.join(', ')})`);
  return c;
}

function derate(t: Topology, rename?: Record<string, string>, bwOverride?: Record<string, number>): Topology {
  const links: LinkClass[] = t.data.links.map((l) => ({
    name: rename?.[l.name] ?? l.name,
    alpha: l.alpha,
    bw: bwOverride?.[l.name] ?? l.bw * (LINK_EFFICIENCY[l.name] ?? 1),
  }));
  return new Topology({ ...t.data, links });
}

function levelsOfTwoLevel(t: Topology, gpusPerNode: number): ClusterLevel[] {
  const intra = t.data.links[t.data.intra]!, inter = t.data.links[t.data.inter]!;
  return [
    { name: intra.name, size: gpusPerNode, bw: intra.bw, alpha: intra.alpha, oversub: 1 },
    { name: inter.name, size: Infinity, bw: inter.bw, alpha: inter.alpha, oversub: 1 },
  ];
}

const wrapTopo = <T>(f: () => T): T => {
  try {
    return f();
  } catch (e) {
    if (e instanceof TopologyError) throw new PredictError(e.message);
    throw e;
  }
};

/** Torus shape for n chips: 3 (or 2) axes <= maxAxis, multiples of 4 preferred, as equal as possible. */
export function torusShape(n: number, axes: number, maxAxis: number): number[] | undefined {
  let best: number[] | undefined;
  let bestScore = Infinity;
  const consider = (d: number[]) => {
    if (d.some((x) => x > maxAxis)) return;
    const mult4 = d.every((x) => x % 4 === 0) ? 0 : 1;
    const score = mult4 * 1e6 + Math.max(...d) / Math.min(...d);
    if (score < bestScore) { bestScore = score; best = d; }
  };
  if (axes === 2) {
    for (let a = 1; a * a <= n; a++) if (n % a === 0) consider([a, n / a]);
  } else {
    for (let a = 1; a * a * a <= n; a++) {
      if (n % a !== 0) continue;
      for (let b = a; a * b * b <= n; b++) if ((n / a) % b === 0) consider([a, b, n / a / b]);
    }
  }
  return best;
}

const TPU_LIMITS: Record<string, { axes: number; maxAxis: number; maxChips: number }> = {
  'tpu-v4': { axes: 3, maxAxis: 16, maxChips: 4096 },
  'tpu-v5p': { axes: 3, maxAxis: 28, maxChips: 8960 },
  'tpu-v5e': { axes: 2, maxAxis: 16, maxChips: 256 },
  'tpu-v6e': { axes: 2, maxAxis: 16, maxChips: 256 },
};

/** A preset cluster of `gpus` GPUs (the GPU kind may override the preset's). */
export function presetCluster(name: string, gpus: number, gpu?: string): Cluster {
  const key = name === 'llama3' ? 'llama3-h100' : name;
  if (!Number.isInteger(gpus) || gpus < 1) throw new PredictError(`--gpus must be an integer >= 1 (got ${gpus})`);
  // a TPU slice is made of TPU chips, the GPU clusters of GPUs (the kind may change within each)
  const tpuCluster = key.startsWith('tpu-');
  if (gpu !== undefined && (CLUSTER_PRESETS as readonly string[]).concat('llama3-h100').includes(key) && tpuCluster !== gpu.startsWith('tpu-')) {
    throw new PredictError(`cluster ${name} is made of ${tpuCluster ? 'TPU chips' : 'GPUs'}: --gpu ${gpu} cannot run on it`);
  }
  switch (key) {
    case 'dgx-a100':
    case 'hgx-h100':
    case 'hgx-h200': {
      const g = gpu ?? (key === 'dgx-a100' ? 'a100' : key === 'hgx-h100' ? 'h100' : 'h200');
      const base = wrapTopo(() => makeTopology(key === 'dgx-a100' ? 'dgx-a100' : 'hgx-h100', { ranks: gpus, gpu: g, ranksName: '--gpus' }));
      const topo = derate(base);
      const levels = levelsOfTwoLevel(topo, 8);
      return { name: key, gpu: g, gpus, levels, topo, torus: false, description: describeLevels(key, g, gpus, levels) };
    }
    case 'h100-1nic': {
      const g = gpu ?? 'h100';
      const topo = derate(wrapTopo(() => makeTopology('hgx-h100', { ranks: gpus, gpu: g, ranksName: '--gpus' })), { 'ib-ndr400': 'nic-400g (1 per node)' });
      const [l0, l1] = levelsOfTwoLevel(topo, 8);
      const levels: ClusterLevel[] = [l0!, { ...l1!, oversub: 8 }];
      return { name: key, gpu: g, gpus, levels, topo, torus: false, description: describeLevels(key, g, gpus, levels) };
    }
    case 'gb200-nvl72': {
      const g = gpu ?? 'b200';
      let base: Topology;
      if (gpus <= 72 || gpus % 72 === 0) base = wrapTopo(() => makeTopology('gb200-nvl72', { ranks: gpus, gpu: g, ranksName: '--gpus' }));
      else {
        const one = makeTopology('gb200-nvl72', { nodes: 1, gpu: g });
        base = new Topology({ ...one.data, p: gpus });
      }
      const topo = derate(base);
      const levels = levelsOfTwoLevel(topo, 72);
      return { name: key, gpu: g, gpus, levels, topo, torus: false, description: describeLevels(key, g, gpus, levels) };
    }
    case 'llama3-h100': {
      const g = gpu ?? 'h100';
      const base = wrapTopo(() => makeTopology('hgx-h100', { ranks: gpus, gpu: g, ranksName: '--gpus' }));
      const topo = derate(base, { 'ib-ndr400': 'roce-400g' }, { 'ib-ndr400': 47e9 });
      const nv = topo.data.links[0]!, roce = topo.data.links[1]!;
      const levels: ClusterLevel[] = [
        { name: nv.name, size: 8, bw: nv.bw, alpha: nv.alpha, oversub: 1 },
        { name: 'roce-400g (pod of 3072)', size: 3072, bw: roce.bw, alpha: roce.alpha, oversub: 1 },
        { name: 'roce-400g (between pods, 1:7)', size: Infinity, bw: roce.bw, alpha: 10e-6, oversub: 7 },
      ];
      return { name: 'llama3-h100', gpu: g, gpus, levels, topo, torus: false, description: describeLevels('llama3-h100', g, gpus, levels) };
    }
    case 'tpu-v4':
    case 'tpu-v5p':
    case 'tpu-v5e':
    case 'tpu-v6e': {
      const lim = TPU_LIMITS[key]!;
      if (gpus > lim.maxChips) throw new PredictError(`a ${key} slice has at most ${lim.maxChips} chips (got --gpus ${gpus}); multi-slice (DCN) training is not modeled`);
      const dims = torusShape(gpus, lim.axes, lim.maxAxis);
      if (!dims) throw new PredictError(`${gpus} chips do not form a ${key} slice (${lim.axes} axes of at most ${lim.maxAxis} chips)`);
      const topo = wrapTopo(() => makeTopology(key, { torus: dims.join('x'), gpu }));
      const l = topo.data.links[0]!;
      const levels: ClusterLevel[] = [{ name: `ici ${topo.shapeString()}`, size: Infinity, bw: l.bw, alpha: l.alpha, oversub: 1 }];
      return { name: key, gpu: topo.data.gpu, gpus, levels, topo, torus: true, description: `${key}: ${gpus} chips, ${topo.shapeString()}; ici ${l.bw / 1e9} GB/s per link per direction, ${l.alpha * 1e6} us per hop; ${topo.hw.name}` };
    }
    default:
      throw new PredictError(`unknown cluster '${name}' (presets: ${CLUSTER_PRESETS.join(', ')}, llama3, or a .json file)`);
  }
}

function describeLevels(name: string, gpu: string, gpus: number, levels: ClusterLevel[]): string {
  const ls = levels.map((l) => `${l.name}${Number.isFinite(l.size) ? ` x${l.size}` : ''} ${+(l.bw / 1e9).toFixed(1)} GB/s ${+(l.alpha * 1e6).toFixed(2)} us${l.oversub > 1 ? ` 1:${l.oversub}` : ''}`);
  return `${name}: ${gpus} x ${HARDWARE[gpu]?.name ?? gpu}; ${ls.join(' | ')}`;
}

/** A cluster from the JSON format in the header. */
export function clusterFromJson(j: unknown, gpus: number, where = 'cluster', gpuOverride?: string): Cluster {
  const bad = (m: string): never => { throw new PredictError(`${where}: ${m}`); };
  if (typeof j !== 'object' || j === null || Array.isArray(j)) bad('must be a JSON object');
  const o = j as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!['name', 'gpu', 'levels', 'comment'].includes(k)) bad(`unknown key '${k}' (known: name, gpu, levels, comment)`);
  const gpu = gpuOverride ?? (typeof o.gpu === 'string' ? o.gpu : bad('"gpu" must name a GPU (a100, h100, h200, b200, ...)'));
  if (!HARDWARE[gpu]) bad(`unknown GPU '${gpu}' (known: ${GPU_KINDS.join(', ')})`);
  if (!Array.isArray(o.levels) || o.levels.length === 0) bad('"levels" must be a non-empty array');
  const levels: ClusterLevel[] = [];
  (o.levels as unknown[]).forEach((lv, i) => {
    if (typeof lv !== 'object' || lv === null) bad(`level ${i} must be an object`);
    const l = lv as Record<string, unknown>;
    for (const k of Object.keys(l)) if (!['name', 'size', 'bandwidth_GBps', 'latency_us', 'oversubscription'].includes(k)) bad(`level ${i}: unknown key '${k}'`);
    const last = i === (o.levels as unknown[]).length - 1;
    const size = l.size === undefined && last ? Infinity : l.size;
    if (!(size === Infinity || (Number.isInteger(size) && (size as number) >= 1))) bad(`level ${i}: "size" must be an integer >= 1${last ? ' (or omitted for the whole cluster)' : ''}`);
    const prev = levels[i - 1];
    if (prev && Number.isFinite(size as number) && (size as number) % prev.size !== 0) bad(`level ${i}: size ${size} is not a multiple of level ${i - 1}'s ${prev.size}`);
    const bw = l.bandwidth_GBps, lat = l.latency_us ?? 0, os = l.oversubscription ?? 1;
    if (typeof bw !== 'number' || !(bw > 0) || !Number.isFinite(bw)) bad(`level ${i}: "bandwidth_GBps" must be a number > 0`);
    if (typeof lat !== 'number' || !(lat >= 0) || !Number.isFinite(lat)) bad(`level ${i}: "latency_us" must be a number >= 0`);
    if (typeof os !== 'number' || !(os >= 1) || !Number.isFinite(os)) bad(`level ${i}: "oversubscription" must be a number >= 1`);
    levels.push({ name: typeof l.name === 'string' ? l.name : `level${i}`, size: size as number, bw: (bw as number) * 1e9, alpha: (lat as number) * 1e-6, oversub: os as number });
  });
  const hw = HARDWARE[gpu]!;
  const l0 = levels[0]!, l1 = levels[1] ?? levels[0]!;
  const gpn = Number.isFinite(l0.size) ? Math.min(l0.size, gpus) : gpus;
  const data: TopologyData = {
    name: typeof o.name === 'string' ? o.name : where, p: gpus, gpusPerNode: gpn,
    links: levels.length > 1 ? [{ name: l0.name, alpha: l0.alpha, bw: l0.bw }, { name: l1.name, alpha: l1.alpha, bw: l1.bw }] : [{ name: l0.name, alpha: l0.alpha, bw: l0.bw }],
    intra: 0, inter: levels.length > 1 ? 1 : 0, gamma: 3 / hw.hbmBandwidth, delta: 2 / hw.hbmBandwidth, gpu, memCapacity: hw.hbmBytes,
  };
  const topo = new Topology(data);
  return { name: data.name, gpu, gpus, levels, topo, torus: false, description: describeLevels(data.name, gpu, gpus, levels) };
}

/** --cluster value (preset or JSON file), or the GPU kind's standard cluster. */
export function resolveCluster(cluster: string | Cluster | undefined, gpu: string, gpus: number): Cluster {
  if (!HARDWARE[gpu] || !DEFAULT_CLUSTER[gpu]) throw new PredictError(`unknown GPU '${gpu}' (known: ${GPU_KINDS.join(', ')})`);
  if (cluster === undefined) return presetCluster(defaultClusterName(gpu), gpus, gpu);
  if (typeof cluster !== 'string') {
    if (cluster.gpus !== gpus) throw new PredictError(`cluster ${cluster.name} has ${cluster.gpus} GPUs, but --gpus is ${gpus}`);
    return cluster;
  }
  if (cluster.endsWith('.json') || cluster.includes('/')) {
    let text: string;
    try {
      text = readFileSync(cluster, 'utf8');
    } catch (e) {
      throw new PredictError(`cannot read cluster file ${cluster}: ${(e as Error).message}`);
    }
    let j: unknown;
    try {
      j = JSON.parse(text);
    } catch (e) {
      throw new PredictError(`cluster file ${cluster} is not valid JSON: ${(e as Error).message}`);
    }
    return clusterFromJson(j, gpus, cluster, gpu);
  }
  return presetCluster(cluster, gpus, gpu);
}

// ------------------------------------------------------------------ process groups

/** A Topology whose slowest ring link is computed once (groups of 10^4 ranks are priced often). */
class GroupTopology extends Topology {
  private slowest?: LinkClass;
  override slowestLink(ranks?: readonly number[]): LinkClass {
    if (ranks) return super.slowestLink(ranks);
    return (this.slowest ??= super.slowestLink());
  }
}

export type Pattern = 'ring' | 'alltoall';

export interface Group {
  /** 'tp', 'cp', 'pp', 'dp', 'ep', ... */
  dim: string;
  size: number;
  stride: number;
  /** topology the group's collectives are priced on (ranks renamed 0..size-1) */
  topo: Topology;
  /** link classes the group's ring crosses, by name (with level names above the runtime's two) */
  crosses: string[];
  /** group members per node (level-0 domain), or undefined when uneven */
  perNode?: number;
}

const groupCache = new WeakMap<Cluster, Map<string, Group>>();
const costCache = new WeakMap<Cluster, Map<string, { time: number; algo: string }>>();

/** The level index that the pair (0, x) first shares a domain in. */
function levelOfSpan(c: Cluster, span: number): number {
  for (let i = 0; i < c.levels.length; i++) if (span < c.levels[i]!.size) return i;
  return c.levels.length - 1;
}

/**
 * The group of rank 0 along a mesh dimension of stride `stride` and `size` members; its Topology.
 * pattern 'ring' for ring-type collectives, 'alltoall' for all-to-all (oversubscription differs).
 */
export function placeGroup(c: Cluster, dim: string, size: number, stride: number, pattern: Pattern = 'ring'): Group {
  let cache = groupCache.get(c);
  if (!cache) groupCache.set(c, (cache = new Map()));
  const key = `${size}:${stride}:${pattern}`;
  const hit = cache.get(key);
  if (hit) return { ...hit, dim };
  const g = c.torus ? placeTorusGroup(c, dim, size, stride) : placeTreeGroup(c, dim, size, stride, pattern);
  cache.set(key, g);
  return g;
}

/**
 * The widest span of any group of this shape: groups of n members at stride s start at
 * q s n + j (j < s). Rank 0's group may sit inside a domain while another group of the same shape
 * straddles two (e.g. tp 16 on 72-GPU racks: ranks 64..79): the step waits for the slowest group,
 * so a group is priced as the worst one. Returns the span to use in levelOfSpan and whether some
 * group straddles a level-0 domain that rank 0's group does not.
 */
function worstSpan(c: Cluster, n: number, s: number): { span: number; straddles: boolean } {
  const span0 = (n - 1) * s;
  let worst = span0;
  let straddles = false;
  for (let i = 0; i < c.levels.length - 1; i++) {
    const D = c.levels[i]!.size;
    if (!Number.isFinite(D) || span0 >= D) continue;
    // does some group cross a boundary of this level although its span fits in a domain?
    let crosses = false;
    for (let base = 0; base < c.gpus && !crosses; base += s * n) {
      for (let j = 0; j < s && base + j < c.gpus; j++) {
        const b = base + j;
        if (Math.floor(b / D) !== Math.floor((b + span0) / D)) { crosses = true; break; }
      }
    }
    if (crosses) {
      worst = Math.max(worst, D); // priced as crossing this level
      if (i === 0) straddles = true;
    }
  }
  return { span: worst, straddles };
}

function placeTreeGroup(c: Cluster, dim: string, n: number, s: number, pattern: Pattern): Group {
  const d = c.topo.data;
  const base = { gamma: d.gamma, delta: d.delta, gpu: d.gpu, memCapacity: d.memCapacity };
  const l0 = c.levels[0]!;
  if (n === 1) {
    return { dim, size: 1, stride: s, topo: new GroupTopology({ ...base, name: `${dim} group`, p: 1, gpusPerNode: 1, links: [{ name: l0.name, alpha: l0.alpha, bw: l0.bw }], intra: 0, inter: 0 }), crosses: [], perNode: 1 };
  }
  const { span: wspan, straddles } = worstSpan(c, n, s);
  const span = (n - 1) * s;
  const top = levelOfSpan(c, wspan);
  // members per node: count on the group of rank 0 (exact; uneven, or some group straddling nodes -> undefined)
  const g0 = Number.isFinite(l0.size) ? l0.size : Infinity;
  let perNode: number | undefined;
  if (straddles) perNode = undefined;
  else if (!Number.isFinite(g0) || span < g0) perNode = n;
  else if (s >= g0) perNode = 1;
  else if (g0 % s === 0 && n % (g0 / s) === 0) perNode = g0 / s;
  else perNode = undefined;
  // link classes the ring crosses (runtime topology names), for reporting
  const crosses: string[] = [];
  if (n <= 256) {
    // linkClassesOf also tallies all pairs (O(n^2)); larger groups: the same ring answer from the levels
    const ranks = Array.from({ length: n }, (_, i) => i * s);
    for (const u of c.topo.linkClassesOf(ranks).ring) crosses.push(u.class);
  } else {
    crosses.push(c.topo.data.links[c.topo.data.intra]!.name);
    if (span >= g0) crosses.push(c.topo.data.links[c.topo.data.inter]!.name);
  }
  if (straddles && !crosses.includes(c.topo.data.links[c.topo.data.inter]!.name)) crosses.push(`${c.topo.data.links[c.topo.data.inter]!.name} (some groups straddle nodes)`);
  for (let i = 2; i <= top; i++) crosses.push(c.levels[i]!.name);
  if (top === 0) {
    return { dim, size: n, stride: s, topo: new GroupTopology({ ...base, name: `${dim} group`, p: n, gpusPerNode: n, links: [{ name: l0.name, alpha: l0.alpha, bw: l0.bw }], intra: 0, inter: 0 }), crosses, perNode: n };
  }
  // the outer link: the outermost level crossed, with oversubscription of every crossed level
  const lt = c.levels[top]!;
  let bw = lt.bw;
  for (let i = 1; i <= top; i++) {
    const lv = c.levels[i]!;
    if (lv.oversub <= 1) continue;
    const dom = c.levels[i - 1]!.size; // the domain the traffic leaves
    const domains = Math.ceil((span + 1) / dom);
    const inDomain = Math.max(1, Math.min(n, Math.ceil(n / domains)));
    let flows: number;
    if (pattern === 'alltoall') flows = dom * ((n - inDomain) / Math.max(1, n - 1));
    else flows = (dom / inDomain) * (perNode ?? 1);
    bw = Math.min(bw, (dom * lv.bw) / (lv.oversub * Math.max(1, flows)));
  }
  const outer: LinkClass = { name: lt.name, alpha: lt.alpha, bw };
  const inner: LinkClass = { name: l0.name, alpha: l0.alpha, bw: l0.bw };
  const topo = perNode !== undefined && perNode > 1
    ? new GroupTopology({ ...base, name: `${dim} group`, p: n, gpusPerNode: perNode, links: [inner, outer], intra: 0, inter: 1 })
    : new GroupTopology({ ...base, name: `${dim} group`, p: n, gpusPerNode: 1, links: [inner, outer], intra: 0, inter: 1 });
  return { dim, size: n, stride: s, topo, crosses, perNode };
}

function placeTorusGroup(c: Cluster, dim: string, n: number, s: number): Group {
  const t = c.topo;
  const d = t.data;
  const { dims, wrap } = t.torus!;
  const base = { gamma: d.gamma, delta: d.delta, gpu: d.gpu, memCapacity: d.memCapacity };
  if (n === 1) {
    return { dim, size: 1, stride: s, topo: new GroupTopology({ ...base, name: `${dim} group`, p: 1, gpusPerNode: 1, links: [d.links[0]!], intra: 0, inter: 0 }), crosses: [] };
  }
  const ranks = Array.from({ length: n }, (_, i) => i * s);
  // a box of the torus? per axis: the set of coordinates used must be contiguous (or the whole axis)
  const ext: number[] = [];
  let box = true;
  for (let a = 0; a < dims.length; a++) {
    const set = new Set(ranks.map((r) => t.coord(r, a)));
    const vals = [...set].sort((x, y) => x - y);
    if (vals[vals.length - 1]! - vals[0]! + 1 !== vals.length) box = false;
    ext.push(vals.length);
  }
  if (ext.reduce((x, y) => x * y, 1) !== n) box = false;
  const crosses = t.linkClassesOf(ranks).ring.map((u) => u.class);
  if (box) {
    const w = ext.map((e, a) => e === dims[a] && wrap[a]!);
    const topo = new GroupTopology({ ...base, name: `${dim} group`, p: n, gpusPerNode: n, links: d.links, intra: 0, inter: 0, torus: { dims: ext, wrap: w } });
    return { dim, size: n, stride: s, topo, crosses };
  }
  // not a box: a ring of multi-hop routes, priced at the ICI bandwidth and the longest hop's latency
  let hops = 1;
  for (let i = 0; i < n; i++) hops = Math.max(hops, t.hops(ranks[i]!, ranks[(i + 1) % n]!));
  const link: LinkClass = { name: hops === 1 ? 'ici' : `ici x${hops}`, alpha: hops * d.links[0]!.alpha, bw: d.links[0]!.bw };
  return { dim, size: n, stride: s, topo: new GroupTopology({ ...base, name: `${dim} group`, p: n, gpusPerNode: n, links: [link], intra: 0, inter: 0 }), crosses };
}

/**
 * Time of one collective on a group, by the cheapest algorithm's closed form (autoSelect).
 * `bytes` is nccl-tests' size: AllReduce / Broadcast / SendRecv the per-rank vector, AllGather /
 * ReduceScatter the whole gathered buffer, AllToAll what one rank sends in total.
 * On a torus group, ReduceScatter and AllGather also consider half the torus AllReduce (its
 * reduce-scatter and all-gather phases), since the collectives have torus algorithms only for AllReduce.
 */
export function collectiveTime(c: Cluster, g: Group, coll: Collective, bytes: number): { time: number; algo: string } {
  if (g.size <= 1 || bytes <= 0) return { time: 0, algo: '-' };
  let cache = costCache.get(c);
  if (!cache) costCache.set(c, (cache = new Map()));
  const key = `${g.size}:${g.stride}:${g.topo.data.links.map((l) => l.bw).join(',')}:${coll}:${Math.round(bytes)}`;
  const hit = cache.get(key);
  if (hit) return hit;
  const perBlock = coll === 'allgather' || coll === 'reducescatter' || coll === 'alltoall';
  const count = Math.max(1, Math.round(perBlock ? bytes / 4 / g.size : bytes / 4));
  const spec: CollSpec = { coll, p: g.size, count, op: 'sum', inPlace: true, root: 0 };
  const a = autoSelect(spec, g.topo);
  let res = { time: a.cost(spec, g.topo), algo: a.name };
  if ((coll === 'allgather' || coll === 'reducescatter') && g.topo.isTorus) {
    const ar: CollSpec = { coll: 'allreduce', p: g.size, count: count * g.size, op: 'sum', inPlace: true, root: 0 };
    const ta = autoSelect(ar, g.topo);
    const half = ta.cost(ar, g.topo) / 2;
    if (half < res.time) res = { time: half, algo: `${ta.name}/2` };
  }
  cache.set(key, res);
  return res;
}

/** The link (alpha, bw) that consecutive members of a group use (PP stage to stage): its slowest pair. */
export function neighbourLink(g: Group): LinkClass {
  const d = g.topo.data;
  if (g.size <= 1) return d.links[d.intra]!;
  if (d.torus) return d.links[0]!;
  return g.size > d.gpusPerNode ? d.links[d.inter]! : d.links[d.intra]!;
}
