/**
 * Topology: maps every ordered rank pair to a link class (latency alpha, bandwidth) and an egress
 * port of the sender. Each rank has one egress port per link class it uses: a GPU's NVLink
 * bandwidth is shared by all its NVSwitch peers, and its NIC by all its off-node peers (one NIC per
 * GPU, rail-optimized). Sends through one port serialize in the sender's program order (see
 * runtime/timing.ts). Receiver-side (ingress) contention is not modeled in this two-level model.
 *
 * Presets:
 *  - flat:      every pair the same link, from --link-bw (GB/s) and --link-latency (us); one port.
 *  - hgx-h100:  8 GPUs per node on NVSwitch, 450 GB/s per direction (NVLink 4; nccl-tests #212);
 *               one 400 Gb/s (50 GB/s) NIC per GPU between nodes.
 *  - dgx-a100:  8 GPUs per node, 300 GB/s NVLink 3; one 200 Gb/s HDR (25 GB/s) NIC per GPU (Selene).
 * Latencies: 1 us NVLink and 5 us GPU-to-GPU across IB, the same figures as the SimGrid peer
 * platforms in ../shared/peers/platforms, so the peer comparisons line up.
 */
import { readFileSync } from 'node:fs';
import { copyCostPerByte, hardwareProfile, reduceCostPerByte, type HardwareProfile } from './hardware.js';

export interface LinkClass {
  name: string;
  /** per-message latency, seconds */
  alpha: number;
  /** bandwidth, bytes per second (per direction) */
  bw: number;
}

/** Plain-data description of a topology: serializable, so worker threads can rebuild it. */
export interface TopologyData {
  name: string;
  /** number of ranks */
  p: number;
  gpusPerNode: number;
  links: LinkClass[];
  /** link class index for pairs on the same node / on different nodes */
  intra: number;
  inter: number;
  /** modeled reduction cost, seconds per byte reduced */
  gamma: number;
  /** modeled local copy cost, seconds per byte copied */
  delta: number;
  /** hardware profile key (runtime/hardware.ts) */
  gpu: string;
  /** device memory capacity per rank in bytes (may be scaled down) */
  memCapacity: number;
  /**
   * Scale-down factor k (default 1): this topology stands for one whose bandwidths, local
   * reduce/copy throughput and memory are k times larger, for tensors k times larger.
   */
  scale?: number;
}

export class TopologyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TopologyError';
  }
}

export class Topology {
  readonly data: TopologyData;
  readonly hw: HardwareProfile;
  constructor(data: TopologyData) {
    this.data = data;
    this.hw = hardwareProfile(data.gpu);
  }
  get p(): number { return this.data.p; }
  get name(): string { return this.data.name; }
  get nPorts(): number { return this.data.links.length; }
  get nodes(): number { return Math.ceil(this.data.p / this.data.gpusPerNode); }
  nodeOf(rank: number): number { return Math.floor(rank / this.data.gpusPerNode); }
  /** link class index of the pair src -> dst */
  classOf(src: number, dst: number): number {
    return this.nodeOf(src) === this.nodeOf(dst) ? this.data.intra : this.data.inter;
  }
  link(src: number, dst: number): LinkClass { return this.data.links[this.classOf(src, dst)]!; }
  /** egress port of src used to reach dst (one port per link class) */
  port(src: number, dst: number): number { return this.classOf(src, dst); }
  get gamma(): number { return this.data.gamma; }
  get delta(): number { return this.data.delta; }
  /** The link that a ring over all ranks in order 0..p-1 is bottlenecked by (slowest hop). */
  slowestLink(ranks?: readonly number[]): LinkClass {
    const rs = ranks ?? [...Array(this.p).keys()];
    let worst = this.data.links[this.data.intra]!;
    for (let i = 0; i < rs.length; i++) {
      const l = this.link(rs[i]!, rs[(i + 1) % rs.length]!);
      if (rs.length > 1 && (l.bw < worst.bw || (l.bw === worst.bw && l.alpha > worst.alpha))) worst = l;
    }
    return worst;
  }
  describe(): string {
    const d = this.data;
    const ls = d.links.map((l) => `${l.name} ${fmtNum(l.bw / 1e9)} GB/s ${fmtNum(l.alpha * 1e6)} us`).join(', ');
    return `${d.name}: ${d.p} ranks, ${this.nodes} node(s) x ${Math.min(d.gpusPerNode, d.p)} GPU(s); ${ls}; ${this.hw.name}`;
  }
}

const fmtNum = (x: number) => (Number.isInteger(x) ? String(x) : x.toPrecision(4));

export interface TopologyOptions {
  ranks?: number;
  nodes?: number;
  /** flat only: GB/s */
  linkBw?: number;
  /** flat only: microseconds */
  linkLatency?: number;
  /** override reduction throughput (GB/s of data reduced); 0 or Infinity = free */
  reduceBw?: number;
  /** device memory capacity per rank in bytes (default: the GPU's HBM) */
  memCapacity?: number;
  gpu?: string;
}

export const TOPOLOGY_PRESETS = ['flat', 'hgx-h100', 'dgx-a100'] as const;

function checkPositiveInt(v: number | undefined, what: string): void {
  if (v !== undefined && (!Number.isInteger(v) || v < 1)) throw new TopologyError(`${what} must be an integer >= 1 (got ${v})`);
}

function resolveRanksNodes(opts: TopologyOptions, gpusPerNode: number, preset: string): { p: number; nodes: number } {
  checkPositiveInt(opts.ranks, '--ranks');
  checkPositiveInt(opts.nodes, '--nodes');
  if (opts.nodes !== undefined) {
    const p = opts.ranks ?? opts.nodes * gpusPerNode;
    if (p !== opts.nodes * gpusPerNode) {
      throw new TopologyError(`${preset} with --nodes ${opts.nodes} has ${opts.nodes * gpusPerNode} GPUs, but --ranks is ${p}`);
    }
    return { p, nodes: opts.nodes };
  }
  const p = opts.ranks ?? gpusPerNode;
  if (p > gpusPerNode && p % gpusPerNode !== 0) {
    throw new TopologyError(`${preset} has ${gpusPerNode} GPUs per node: --ranks ${p} must be <= ${gpusPerNode} or a multiple of it`);
  }
  return { p, nodes: Math.ceil(p / gpusPerNode) };
}

function localCosts(hw: HardwareProfile, reduceBw: number | undefined): { gamma: number; delta: number } {
  if (reduceBw === undefined) return { gamma: reduceCostPerByte(hw), delta: copyCostPerByte(hw) };
  if (!(reduceBw >= 0)) throw new TopologyError(`--reduce-bw must be >= 0 GB/s (got ${reduceBw})`);
  if (reduceBw === 0 || reduceBw === Infinity) return { gamma: 0, delta: 0 };
  return { gamma: 1 / (reduceBw * 1e9), delta: 1 / (reduceBw * 1e9) };
}

/** Build a preset topology, or load a JSON file when `name` is not a preset. */
export function makeTopology(name: string, opts: TopologyOptions = {}): Topology {
  const gpuKey = opts.gpu;
  switch (name) {
    case 'flat': {
      checkPositiveInt(opts.ranks, '--ranks');
      if (opts.nodes !== undefined) throw new TopologyError('--nodes applies to hgx-h100 / dgx-a100, not to flat');
      const bw = opts.linkBw ?? 450;
      const lat = opts.linkLatency ?? 1;
      if (!(bw > 0) || !Number.isFinite(bw)) throw new TopologyError(`--link-bw must be a positive number of GB/s (got ${bw})`);
      if (!(lat >= 0) || !Number.isFinite(lat)) throw new TopologyError(`--link-latency must be >= 0 microseconds (got ${lat})`);
      const hw = hardwareProfile(gpuKey ?? 'h100');
      // flat is a pure network model (as SimGrid SMPI's "ideal" model): local reductions and copies
      // are free unless --reduce-bw is given.
      const { gamma, delta } = opts.reduceBw === undefined ? { gamma: 0, delta: 0 } : localCosts(hw, opts.reduceBw);
      const p = opts.ranks ?? 8;
      return new Topology({
        name: 'flat', p, gpusPerNode: p, links: [{ name: 'link', alpha: lat * 1e-6, bw: bw * 1e9 }],
        intra: 0, inter: 0, gamma, delta, gpu: gpuKey ?? 'h100', memCapacity: opts.memCapacity ?? hw.hbmBytes,
      });
    }
    case 'hgx-h100':
    case 'dgx-a100': {
      if (opts.linkBw !== undefined || opts.linkLatency !== undefined) {
        throw new TopologyError(`--link-bw / --link-latency apply to the flat topology; ${name} has fixed links (use a JSON topology to change them)`);
      }
      const h100 = name === 'hgx-h100';
      const gpu = gpuKey ?? (h100 ? 'h100' : 'a100');
      const hw = hardwareProfile(gpu);
      const { p } = resolveRanksNodes(opts, 8, name);
      const { gamma, delta } = localCosts(hw, opts.reduceBw);
      return new Topology({
        name, p, gpusPerNode: 8,
        links: [
          { name: h100 ? 'nvlink4' : 'nvlink3', alpha: 1e-6, bw: h100 ? 450e9 : 300e9 },
          { name: h100 ? 'ib-ndr400' : 'ib-hdr200', alpha: 5e-6, bw: h100 ? 50e9 : 25e9 },
        ],
        intra: 0, inter: 1, gamma, delta, gpu, memCapacity: opts.memCapacity ?? hw.hbmBytes,
      });
    }
    default:
      if (name.endsWith('.json') || name.includes('/')) return loadTopologyFile(name, opts);
      throw new TopologyError(`unknown topology '${name}' (presets: ${TOPOLOGY_PRESETS.join(', ')}, or a .json file)`);
  }
}

/**
 * JSON topology file:
 * {
 *   "name": "my-cluster", "gpu": "h100", "gpusPerNode": 4, "nodes": 2,
 *   "links": { "nvlink": { "latency_us": 1, "bandwidth_GBps": 450 },
 *              "ib": { "latency_us": 5, "bandwidth_GBps": 50 } },
 *   "intraNode": "nvlink", "interNode": "ib",
 *   "reduceBandwidth_GBps": 1000,            (optional; default from the GPU's HBM)
 *   "memoryCapacity_GB": 80                  (optional; default the GPU's HBM)
 * }
 */
export function loadTopologyFile(path: string, opts: TopologyOptions = {}): Topology {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new TopologyError(`cannot read topology file ${path}: ${(e as Error).message}`);
  }
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch (e) {
    throw new TopologyError(`topology file ${path} is not valid JSON: ${(e as Error).message}`);
  }
  return topologyFromJson(j, path, opts);
}

export function topologyFromJson(j: unknown, where = 'topology', opts: TopologyOptions = {}): Topology {
  const bad = (msg: string): never => { throw new TopologyError(`${where}: ${msg}`); };
  if (typeof j !== 'object' || j === null || Array.isArray(j)) bad('must be a JSON object');
  const o = j as Record<string, unknown>;
  const known = new Set(['name', 'gpu', 'gpusPerNode', 'nodes', 'links', 'intraNode', 'interNode', 'reduceBandwidth_GBps', 'memoryCapacity_GB', 'comment']);
  for (const k of Object.keys(o)) if (!known.has(k)) bad(`unknown key '${k}' (known: ${[...known].join(', ')})`);
  const gpu = o.gpu === undefined ? 'h100' : typeof o.gpu === 'string' ? o.gpu : bad('"gpu" must be a string');
  let hw: HardwareProfile;
  try { hw = hardwareProfile(gpu); } catch (e) { return bad((e as Error).message); }
  const gpn = o.gpusPerNode;
  if (!Number.isInteger(gpn) || (gpn as number) < 1) bad('"gpusPerNode" must be an integer >= 1');
  if (o.nodes !== undefined && (!Number.isInteger(o.nodes) || (o.nodes as number) < 1)) bad('"nodes" must be an integer >= 1');
  if (typeof o.links !== 'object' || o.links === null || Array.isArray(o.links)) bad('"links" must be an object of named link classes');
  const links: LinkClass[] = [];
  const index = new Map<string, number>();
  for (const [lname, lv] of Object.entries(o.links as Record<string, unknown>)) {
    if (typeof lv !== 'object' || lv === null) bad(`link '${lname}' must be an object with latency_us and bandwidth_GBps`);
    const l = lv as Record<string, unknown>;
    for (const k of Object.keys(l)) if (k !== 'latency_us' && k !== 'bandwidth_GBps') bad(`link '${lname}': unknown key '${k}'`);
    const lat = l.latency_us, bw = l.bandwidth_GBps;
    if (typeof lat !== 'number' || !(lat >= 0) || !Number.isFinite(lat)) bad(`link '${lname}': latency_us must be a number >= 0`);
    if (typeof bw !== 'number' || !(bw > 0) || !Number.isFinite(bw)) bad(`link '${lname}': bandwidth_GBps must be a number > 0`);
    index.set(lname, links.length);
    links.push({ name: lname, alpha: (lat as number) * 1e-6, bw: (bw as number) * 1e9 });
  }
  if (links.length === 0) bad('"links" must name at least one link class');
  const pick = (key: 'intraNode' | 'interNode'): number => {
    const v = o[key];
    if (v === undefined) {
      if (links.length === 1) return 0;
      return bad(`"${key}" must name one of the links (${[...index.keys()].join(', ')})`);
    }
    if (typeof v !== 'string' || !index.has(v)) return bad(`"${key}" must name one of the links (${[...index.keys()].join(', ')}), got ${JSON.stringify(v)}`);
    return index.get(v)!;
  };
  const intra = pick('intraNode');
  const inter = pick('interNode');
  let reduceBw: number | undefined = opts.reduceBw;
  if (reduceBw === undefined && o.reduceBandwidth_GBps !== undefined) {
    if (typeof o.reduceBandwidth_GBps !== 'number' || !(o.reduceBandwidth_GBps >= 0)) bad('"reduceBandwidth_GBps" must be a number >= 0');
    reduceBw = o.reduceBandwidth_GBps as number;
  }
  let cap = opts.memCapacity ?? hw.hbmBytes;
  if (opts.memCapacity === undefined && o.memoryCapacity_GB !== undefined) {
    if (typeof o.memoryCapacity_GB !== 'number' || !(o.memoryCapacity_GB > 0)) bad('"memoryCapacity_GB" must be a number > 0');
    cap = (o.memoryCapacity_GB as number) * 1e9;
  }
  const name = typeof o.name === 'string' ? o.name : where;
  const { p } = resolveRanksNodes({ ranks: opts.ranks, nodes: opts.nodes ?? (o.nodes as number | undefined) }, gpn as number, name);
  const { gamma, delta } = localCosts(hw, reduceBw);
  return new Topology({ name, p, gpusPerNode: gpn as number, links, intra, inter, gamma, delta, gpu, memCapacity: cap });
}

/**
 * The scale-down rule. Virtual time of a message is alpha + bytes / bandwidth, of a reduction
 * bytes * gamma. Dividing every tensor by k and every bandwidth (link, reduction, copy) by k leaves
 * each bandwidth term unchanged and the latency terms as they were, so an emulation of k-times
 * smaller tensors on the returned topology takes the same virtual time as the full-size run on
 * `topo`. Device memory is divided by k too (the tensors are). Algorithms with byte thresholds
 * (chunk sizes) divide them by data.scale so the schedule is the same.
 */
export function scaleTopology(topo: Topology, k: number): Topology {
  if (!(k >= 1) || !Number.isFinite(k)) throw new TopologyError(`--scale-down must be a number >= 1 (got ${k})`);
  const d = topo.data;
  return new Topology({
    ...d,
    name: k === 1 ? d.name : `${d.name} scaled down x${k}`,
    links: d.links.map((l) => ({ ...l, bw: l.bw / k })),
    gamma: d.gamma * k,
    delta: d.delta * k,
    memCapacity: d.memCapacity / k,
    scale: (d.scale ?? 1) * k,
  });
}
