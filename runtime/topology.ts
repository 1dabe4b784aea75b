/**
 * Topology: maps every ordered rank pair to a link class (latency alpha, bandwidth) and an egress
 * port of the sender. Each rank has one egress port per link class it uses: a GPU's NVLink
 * bandwidth is shared by all its NVSwitch peers, and its NIC by all its off-node peers (one NIC per
 * GPU, rail-optimized). Sends through one port serialize in the sender's program order (see
 * runtime/timing.ts). Receiver-side (ingress) contention is off by default; with
 * TopologyData.ingress (TopologyOptions.ingress, JSON "ingress": true) each rank also has one
 * ingress port per egress port index, and messages into one rank serialize on it in the receiver's
 * program order (runtime/timing.ts ingressArrival; Topology.ingressPort).
 *
 * Presets:
 *  - flat:      every pair the same link, from --link-bw (GB/s) and --link-latency (us); one port.
 *  - hgx-h100:  8 GPUs per node on NVSwitch, 450 GB/s per direction (NVLink 4; nccl-tests #212);
 *               one 400 Gb/s (50 GB/s) NIC per GPU between nodes.
 *  - dgx-a100:  8 GPUs per node, 300 GB/s NVLink 3; one 200 Gb/s HDR (25 GB/s) NIC per GPU (Selene).
 *  - gb200-nvl72: 72 GPUs (B200) per NVLink domain (one rack) on NVLink 5 switches, 900 GB/s per
 *               direction per GPU (hardware.md GPU table, NVIDIA GB200 NVL72 page (2nd)); racks
 *               joined by one 800 Gb/s NIC per GPU = 100 GB/s (ConnectX-8 class; an 800G NIC per GPU
 *               is the issue's figure, hardware.md has no 800G row). --nodes K = K racks.
 *  - tpu-v4, tpu-v5p (3D), tpu-v5e, tpu-v6e (2D): a torus of TPU chips, below.
 *  - llama3:    the Llama 3 405B training cluster (Llama 3 paper, section 3.3.1; hardware.md
 *               "Llama 3 cluster" row): H100 servers of 8 GPUs on NVLink 4 (450 GB/s, as hgx-h100),
 *               one RoCE 400 Gb/s (50 GB/s) NIC per GPU, 2 servers per rack, 192 racks = a pod of
 *               3,072 GPUs with full bisection bandwidth, 8 pods (24,576 GPUs) joined at the
 *               aggregation layer with 1:7 oversubscription. Ranks map to servers and pods in
 *               contiguous blocks (pod = floor(rank / 3072); TopologyOptions.podSize changes the
 *               block for what-if runs). Three link classes: nvlink4 within a server; roce-400g between
 *               servers of one pod (racks add no class: a pod has full bisection, so a same-rack pair
 *               differs only by a switch hop or two of latency); roce-xpod between pods, modeled as
 *               the WORST-CASE per-GPU share of the oversubscribed layer: 50 GB/s / 7 = 7.14 GB/s,
 *               i.e. what each GPU gets when every GPU of a pod sends across pods at once. It is not
 *               contention (the timing model has no shared resources yet): a lone cross-pod message
 *               is priced as if all GPUs were sending, and a collective whose cross-pod traffic is
 *               sparse is priced pessimistically. The two RoCE classes share the GPU's one NIC: one
 *               egress port (TopologyData.portOfClass). Latencies: 5 us within a pod (the same figure
 *               as the other presets' NICs, below); 20 us across pods: the paper reports latency of
 *               "up to tens of microseconds" on the outer dimensions (hardware.md); 20 us is a choice
 *               in that range (three more switch tiers out and back), not a measured figure.
 *  - spine oversubscription (TopologyOptions.spineOversubscription = s, "1:s"): hgx-h100 and
 *    dgx-a100 (Selene is a fat tree of DGX A100 with one 200 Gb/s HDR NIC per GPU) model every
 *    inter-node link as the same worst-case share, NIC bandwidth / s (default 1: full bisection);
 *    on llama3 it replaces the 1:7 between pods.
 * Link kinds and payload efficiencies (LinkClass.kind, .efficiency; the timing model reads neither):
 * NVLink classes carry NCCL's NVLink efficiency (NVLINK_EFFICIENCY: 20.6 of 25 GB/s per NVLink 4
 * link, NCCL src/graph/topo.h; nccl-tests #212), 400G NICs ~47 of 50 GB/s (nccl-tests #290). Only
 * the NCCL protocol variants (collectives/protocols/) use them, as extra wire bytes.
 * Latencies: 1 us NVLink and 5 us GPU-to-GPU across IB, the same figures as the SimGrid peer
 * platforms in ../shared/peers/platforms, so the peer comparisons line up; the same 1 us / 5 us for
 * NVLink 5 and the 800G NIC, and 1 us per ICI hop on the TPUs (the issue's choice; scaling-book
 * tpus.md's worked example assumes 0.5 us per hop on v5e, so latency terms may be up to 2x high).
 *
 * Torus topologies (TopologyData.torus = { dims, wrap }):
 *  - Ranks are chips in row-major coordinates: rank = ((c0 d1 + c1) d2 + c2) ..., the last axis
 *    varies fastest. Axis i has d_i chips; wrap[i] says whether it has a wraparound link (d_i - 1 to 0).
 *  - Each chip has one egress port per direction: +axis0, -axis0, +axis1, -axis1, ... (2 per axis,
 *    port 2i = +, 2i+1 = -), so nPorts = 2 x axes: sends along different directions overlap, sends
 *    in one direction serialize.
 *  - Neighbours along an axis (including over the wraparound) use the ICI link: link class 0 ("ici").
 *  - Any other pair is charged as a multi-hop route: the distance h = sum over axes of the per-axis
 *    hop count (min(|dc|, d - |dc|) on a wrapped axis, |dc| otherwise), link class h-1 ("ici xh"):
 *    h x alpha, the ICI link's bandwidth, sent through the port of the first hop (dimension-order
 *    routing: the lowest axis whose coordinate differs; on a wrapped axis the shorter way round,
 *    + on a tie). SIMPLIFICATION: the intermediate hops are not modeled: no contention on the links
 *    and ports of the chips a multi-hop route passes through (store-and-forward is not charged
 *    either: the message pays its bytes once, on the first hop's port).
 *  - An axis of length <= 2 has no separate wraparound (its two chips are joined by one link, and
 *    its + and - neighbours coincide); wrap is stored false for it.
 *  - classOf / port cost O(axes) divisions: coordinates are not stored.
 *  - gpusPerNode = p, intra = inter = 0: the whole torus is one ICI domain ("node"), so the
 *    two-level formulas of the other algorithms see one link class (1-hop ICI) and the simulator
 *    prices their non-neighbour sends as multi-hop routes.
 * TPU presets (hardware.md "TPUs" table: Google Cloud TPU docs; jax-ml scaling-book tpus.md):
 *  - tpu-v4:  3D torus, 45 GB/s per ICI link one-way (6 links); default 4x4x4 = 64 chips (one cube);
 *             pods up to 4,096 chips (16x16x16).
 *  - tpu-v5p: 3D torus, 90 GB/s per link one-way (180 bidirectional; 6 links); default 4x4x4 = 64
 *             chips; up to 8,960 chips (16x20x28, scaling-book).
 *  - tpu-v5e: 2D torus 16x16 (256 chips), 4 ports. hardware.md gives no ICI bandwidth for v5e:
 *             derived as half of v6e's per-port figure (100 GB/s, below) = 50 GB/s per link
 *             one-way, since Trillium doubles v5e's ICI bandwidth per chip (Google's Trillium
 *             announcement); scaling-book tpus.md lists the same 5e10 B/s one-way per v5e link.
 *  - tpu-v6e: 2D torus 16x16, 800 GB/s bidirectional per chip over 4 ports -> 800 / 4 / 2 =
 *             100 GB/s per port per direction.
 *  Wraparound (scaling-book tpus.md): training chips (v4, v5p) get it from the optical switches of
 *  whole 4x4x4 cubes, so a slice wraps on every axis when every axis is a multiple of 4 (4x4x4,
 *  4x4x8) and on none otherwise (2x2x4); inference chips (v5e, v6e) on an axis of 16 (a 16x16 pod,
 *  the long axis of 8x16), not on shorter ones (4x4 is a mesh). `--torus AxBxC` picks a
 *  slice (axis suffix 'w' forces a wraparound, 'm' removes it, e.g. 4wx4w); `--ranks N` without
 *  --torus must be the preset's size or a cube k^3 (3D) / square k^2 (2D) <= it, which selects a
 *  k x k x k (k x k) slice.
 */
import { readFileSync } from 'node:fs';
import { copyCostPerByte, hardwareProfile, reduceCostPerByte, type HardwareProfile } from './hardware.js';

export interface LinkClass {
  name: string;
  /** per-message latency, seconds */
  alpha: number;
  /** bandwidth, bytes per second (per direction): the line rate */
  bw: number;
  /**
   * What kind of hardware the class is, for models that depend on it (the NCCL protocol variants in
   * collectives/protocols/ take NCCL's per-hop latency of that kind): 'nvlink' (NVLink through
   * NVSwitch), 'net' (a NIC: InfiniBand, RoCE), 'ici' (TPU ICI). Undefined: a generic link (flat).
   * The timing model never reads it.
   */
  kind?: 'nvlink' | 'net' | 'ici';
  /**
   * Payload efficiency of GPU-driven (NCCL-style) transfers on this class: the fraction of the line
   * rate `bw` that carries payload, from measured figures (see the presets; undefined = 1). The
   * timing model never reads it: the NCCL protocol variants turn it into extra wire bytes (link
   * packet headers, flow control), the plain algorithms run at line rate.
   */
  efficiency?: number;
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
  /**
   * A torus (or mesh) of chips (see the header): row-major coordinates over `dims`, wrap[i] = axis i
   * has a wraparound link. Link class h-1 is the h-hop ICI route; 2 egress ports per axis.
   */
  torus?: { dims: number[]; wrap: boolean[] };
  /**
   * Pods (llama3): contiguous blocks of `gpus` ranks (a multiple of gpusPerNode); pairs on
   * different nodes of different pods use link class `link` instead of `inter`.
   */
  pod?: { gpus: number; link: number };
  /**
   * Egress port of each link class (non-torus; default: one port per class). Classes that share a
   * physical port map to the same index (llama3: the intra-pod and the cross-pod class share the
   * GPU's one NIC). Ports are numbered 0..max without gaps.
   */
  portOfClass?: number[];
  /**
   * Model receiver-side (ingress) contention (default false): each rank has ingress ports indexed
   * like its egress ports (ingressPort), and a message occupies the receiver's ingress port for
   * bytes / bandwidth, in the receiver's program order of receives (runtime/timing.ts). The
   * closed-form cost() formulas stay uncontended.
   */
  ingress?: boolean;
  /**
   * Resources shared by several ranks, timed in start-time order (runtime/contention.ts; opt-in,
   * `--contention`). `levels`: domains of `size` consecutive ranks whose traffic leaving (entering)
   * the domain on a non-intra link class shares the domain's uplink (downlink) of `bw` bytes/s per
   * direction (a node's shared NIC, a scalable unit's or pod's spine uplinks). `routes` (torus):
   * every link of a multi-hop route is a resource, shared with the chips it passes.
   */
  contention?: { levels: SharedLevel[]; routes?: boolean };
}

/** One level of shared uplinks (TopologyData.contention). */
export interface SharedLevel {
  name: string;
  /** ranks per domain (contiguous blocks) */
  size: number;
  /** uplink (and downlink) capacity of one domain, bytes/s per direction */
  bw: number;
}

/** Which link classes a process group's traffic crosses (Topology.linkClassesOf). */
export interface LinkUse {
  /** link class name (torus: "ici" = neighbours, "ici xh" = an h-hop route) */
  class: string;
  /** link class index */
  index: number;
  /** directed rank pairs of the group that use it */
  pairs: number;
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
  /** torus only: axis lengths, wraparound per axis, row-major strides (empty otherwise) */
  private readonly dims: readonly number[] = [];
  private readonly wrap: readonly boolean[] = [];
  private readonly strides: readonly number[] = [];
  constructor(data: TopologyData) {
    this.data = data;
    this.hw = hardwareProfile(data.gpu);
    if (data.torus) {
      const { dims, wrap } = data.torus;
      if (!Array.isArray(dims) || dims.length === 0 || !dims.every((d) => Number.isInteger(d) && d >= 1)) {
        throw new TopologyError(`torus dims must be integers >= 1 (got ${JSON.stringify(dims)})`);
      }
      if (!Array.isArray(wrap) || wrap.length !== dims.length) throw new TopologyError('torus wrap must have one flag per axis');
      const prod = dims.reduce((a, b) => a * b, 1);
      if (prod !== data.p) throw new TopologyError(`torus ${dims.join('x')} has ${prod} chips, but p is ${data.p}`);
      this.dims = dims;
      this.wrap = wrap.map((w, i) => w && dims[i]! > 2);
      const st: number[] = new Array(dims.length);
      let s = 1;
      for (let i = dims.length - 1; i >= 0; i--) { st[i] = s; s *= dims[i]!; }
      this.strides = st;
      const need = torusDiameter(dims, this.wrap);
      if (data.links.length < Math.max(1, need)) {
        throw new TopologyError(`torus ${dims.join('x')} needs ${need} link classes (one per hop count), got ${data.links.length}`);
      }
    }
    const nl = data.links.length;
    for (const l of data.links) {
      if (l.efficiency !== undefined && !(l.efficiency > 0 && l.efficiency <= 1)) throw new TopologyError(`link '${l.name}': efficiency must be in (0, 1] (got ${l.efficiency})`);
    }
    if (data.pod) {
      const { gpus, link } = data.pod;
      if (data.torus) throw new TopologyError('a torus has no pods');
      if (!Number.isInteger(gpus) || gpus < 1 || gpus % data.gpusPerNode !== 0) {
        throw new TopologyError(`pod size must be a positive multiple of the ${data.gpusPerNode} GPUs per node (got ${gpus})`);
      }
      if (!Number.isInteger(link) || link < 0 || link >= nl) throw new TopologyError(`pod link class ${link} is not one of the ${nl} link classes`);
    }
    if (data.ingress !== undefined && typeof data.ingress !== 'boolean') throw new TopologyError(`ingress must be true or false (got ${JSON.stringify(data.ingress)})`);
    if (data.contention) {
      const c = data.contention;
      if (!Array.isArray(c.levels)) throw new TopologyError('contention.levels must be a list');
      for (const lv of c.levels) {
        if (typeof lv.name !== 'string') throw new TopologyError('every contention level needs a name');
        if (!Number.isInteger(lv.size) || lv.size < 1) throw new TopologyError(`contention level '${lv.name}': size must be an integer >= 1 (got ${lv.size})`);
        if (!(lv.bw > 0) || !Number.isFinite(lv.bw)) throw new TopologyError(`contention level '${lv.name}': bandwidth must be > 0 (got ${lv.bw})`);
      }
      if (c.routes && !data.torus) throw new TopologyError('contention routes apply to a torus');
    }
    if (data.portOfClass) {
      const m = data.portOfClass;
      if (data.torus) throw new TopologyError('a torus has direction ports, not portOfClass');
      if (m.length !== nl || !m.every((x) => Number.isInteger(x) && x >= 0)) throw new TopologyError(`portOfClass needs one port index >= 0 per link class (${nl})`);
      const used = new Set(m);
      for (let k = 0; k < used.size; k++) if (!used.has(k)) throw new TopologyError(`portOfClass must number the ports 0..${used.size - 1} without gaps (got ${JSON.stringify(m)})`);
    }
  }
  get p(): number { return this.data.p; }
  get name(): string { return this.data.name; }
  /** egress ports per rank: one per link class (or per portOfClass entry); a torus: 2 per axis (+ and - direction) */
  get nPorts(): number {
    if (this.data.torus) return 2 * this.dims.length;
    return this.data.portOfClass ? Math.max(...this.data.portOfClass) + 1 : this.data.links.length;
  }
  get nodes(): number { return Math.ceil(this.data.p / this.data.gpusPerNode); }
  nodeOf(rank: number): number { return Math.floor(rank / this.data.gpusPerNode); }
  /** Whether this is a torus (or mesh) of chips. */
  get isTorus(): boolean { return this.data.torus !== undefined; }
  /** torus: axis lengths and wraparound flags (normalized: false on axes of length <= 2) */
  get torus(): { dims: readonly number[]; wrap: readonly boolean[] } | undefined {
    return this.data.torus ? { dims: this.dims, wrap: this.wrap } : undefined;
  }
  /** torus: coordinate of `rank` along `axis` */
  coord(rank: number, axis: number): number { return Math.floor(rank / this.strides[axis]!) % this.dims[axis]!; }
  /** torus: coordinates of a rank (row-major, last axis fastest) */
  coords(rank: number): number[] { return this.dims.map((_, i) => this.coord(rank, i)); }
  /** torus: the rank at these coordinates (taken modulo each axis length) */
  rankAt(coords: readonly number[]): number {
    let r = 0;
    for (let i = 0; i < this.dims.length; i++) {
      const d = this.dims[i]!;
      r += ((((coords[i] ?? 0) % d) + d) % d) * this.strides[i]!;
    }
    return r;
  }
  /** torus: the rank `step` chips away from `rank` along `axis` (wrapping modulo the axis length) */
  along(rank: number, axis: number, step: number): number {
    const d = this.dims[axis]!, c = this.coord(rank, axis);
    return rank + ((((c + step) % d) + d) % d - c) * this.strides[axis]!;
  }
  /** torus: ICI hops between two chips (0 for src = dst) */
  hops(src: number, dst: number): number {
    let h = 0;
    for (let i = 0; i < this.dims.length; i++) {
      const d = this.dims[i]!, st = this.strides[i]!;
      const dc = Math.abs((Math.floor(src / st) % d) - (Math.floor(dst / st) % d));
      h += this.wrap[i] && d - dc < dc ? d - dc : dc;
    }
    return h;
  }
  /** link class index of the pair src -> dst */
  classOf(src: number, dst: number): number {
    if (this.data.torus) {
      const h = this.hops(src, dst);
      return h > 0 ? h - 1 : 0;
    }
    if (this.nodeOf(src) === this.nodeOf(dst)) return this.data.intra;
    const pod = this.data.pod;
    if (pod && Math.floor(src / pod.gpus) !== Math.floor(dst / pod.gpus)) return pod.link;
    return this.data.inter;
  }
  /** pods (llama3): the pod of a rank (0 without pods) */
  podOf(rank: number): number { return this.data.pod ? Math.floor(rank / this.data.pod.gpus) : 0; }
  link(src: number, dst: number): LinkClass { return this.data.links[this.classOf(src, dst)]!; }
  /**
   * egress port of src used to reach dst: one port per link class; a torus: the direction port of
   * the first hop (lowest differing axis; on a wrapped axis the shorter way, + on a tie)
   */
  port(src: number, dst: number): number {
    if (this.data.torus) {
      for (let i = 0; i < this.dims.length; i++) {
        const dir = this.direction(src, dst, i);
        if (dir !== 0) return 2 * i + (dir > 0 ? 0 : 1);
      }
      return 0;
    }
    const c = this.classOf(src, dst);
    return this.data.portOfClass ? this.data.portOfClass[c]! : c;
  }
  /**
   * torus: which way a route from src to dst travels along `axis`: 0 (same coordinate), +1 or -1;
   * on a wrapped axis the shorter way round, + on a tie
   */
  private direction(src: number, dst: number, axis: number): number {
    const d = this.dims[axis]!, st = this.strides[axis]!;
    const dc = (Math.floor(dst / st) % d) - (Math.floor(src / st) % d);
    if (dc === 0) return 0;
    if (!this.wrap[axis]) return dc > 0 ? 1 : -1;
    const fwd = dc > 0 ? dc : dc + d; // hops going +
    return fwd <= d - fwd ? 1 : -1;
  }
  /**
   * torus: the directed links of the dimension-order route src -> dst, as (chip, egress port) from
   * src to the last chip before dst: the lowest differing axis first, the shorter way round on a
   * wrapped axis (+ on a tie), as port() picks the first hop. Empty for src = dst or off a torus.
   */
  route(src: number, dst: number): { chip: number; port: number }[] {
    const out: { chip: number; port: number }[] = [];
    if (!this.data.torus) return out;
    let cur = src;
    for (let guard = 0; cur !== dst && guard <= this.p; guard++) {
      const port = this.port(cur, dst);
      out.push({ chip: cur, port });
      const axis = port >> 1;
      cur = this.along(cur, axis, port & 1 ? -1 : 1);
    }
    return out;
  }
  /**
   * Ingress port of dst on which a message from src arrives (used with TopologyData.ingress): the
   * index of the pair's link-class port, as port(); a torus: the direction port of the last hop of
   * the route (dimension-order routing corrects the lowest differing axis first, so the last hop runs
   * along the highest differing axis; a message travelling + arrives on dst's - side, port 2a + 1).
   */
  ingressPort(src: number, dst: number): number {
    if (this.data.torus) {
      for (let i = this.dims.length - 1; i >= 0; i--) {
        const dir = this.direction(src, dst, i);
        if (dir !== 0) return 2 * i + (dir > 0 ? 1 : 0);
      }
      return 0;
    }
    const c = this.classOf(src, dst);
    return this.data.portOfClass ? this.data.portOfClass[c]! : c;
  }
  /**
   * Port names: the link class names (classes sharing a port: joined with '+'); a torus: +x, -x,
   * +y, -y, +z, -z (axes 0, 1, 2, ...).
   */
  portNames(): string[] {
    const m = this.data.portOfClass;
    if (!this.data.torus && m) {
      return Array.from({ length: this.nPorts }, (_, k) => this.data.links.filter((_, c) => m[c] === k).map((l) => l.name).join('+'));
    }
    if (!this.data.torus) return this.data.links.map((l) => l.name);
    return this.dims.flatMap((_, i) => [`+${axisName(i, this.dims.length)}`, `-${axisName(i, this.dims.length)}`]);
  }
  /**
   * Which link classes the traffic of a process group (a list of distinct ranks) crosses:
   *  - ring: the group as a ring in the given order, the n directed pairs g[i] -> g[i+1 mod n]
   *    (a ring algorithm over the group; n = 2: both directions; n = 1: none);
   *  - allPairs: all n(n-1) directed pairs (direct / all-to-all traffic; O(n^2) classOf calls).
   * Each list has one entry per link class used, by class index, with the number of pairs.
   * E.g. hgx-h100 with 2 nodes: a group within a node crosses only nvlink4, a group of one GPU per
   * node only ib-ndr400; a torus: a ring along one axis with wraparound crosses only "ici"
   * (1 hop), its all-pairs traffic also "ici x2" ... up to floor(d/2) hops.
   */
  linkClassesOf(group: readonly number[]): { ring: LinkUse[]; allPairs: LinkUse[] } {
    const seen = new Set<number>();
    for (const r of group) {
      if (!Number.isInteger(r) || r < 0 || r >= this.p) throw new TopologyError(`linkClassesOf: rank ${r} is not in 0..${this.p - 1}`);
      if (seen.has(r)) throw new TopologyError(`linkClassesOf: rank ${r} appears twice in the group`);
      seen.add(r);
    }
    const tally = (pairs: Iterable<[number, number]>): LinkUse[] => {
      const count = new Map<number, number>();
      for (const [a, b] of pairs) {
        const k = this.classOf(a, b);
        count.set(k, (count.get(k) ?? 0) + 1);
      }
      return [...count.entries()].sort((x, y) => x[0] - y[0]).map(([index, pairs]) => ({ class: this.data.links[index]!.name, index, pairs }));
    };
    const n = group.length;
    function* ring(): Generator<[number, number]> {
      if (n >= 2) for (let i = 0; i < n; i++) yield [group[i]!, group[(i + 1) % n]!];
    }
    function* all(): Generator<[number, number]> {
      for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) if (i !== j) yield [group[i]!, group[j]!];
    }
    return { ring: tally(ring()), allPairs: tally(all()) };
  }
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
    if (d.torus) {
      const l = d.links[0]!;
      return `${d.name}: ${d.p} chips, ${this.shapeString()}; ${l.name} ${fmtNum(l.bw / 1e9)} GB/s per link per direction, ` +
        `${fmtNum(l.alpha * 1e6)} us per hop, ${this.nPorts} ports per chip; ${this.hw.name}${d.ingress ? '; ingress contention' : ''}${this.contentionText()}`;
    }
    const ls = d.links.map((l) => `${l.name} ${fmtNum(l.bw / 1e9)} GB/s ${fmtNum(l.alpha * 1e6)} us`).join(', ');
    const pods = d.pod ? ` in ${Math.ceil(d.p / d.pod.gpus)} pod(s) of ${d.pod.gpus} GPUs` : '';
    return `${d.name}: ${d.p} ranks, ${this.nodes} node(s) x ${Math.min(d.gpusPerNode, d.p)} GPU(s)${pods}; ${ls}; ${this.hw.name}${d.ingress ? '; ingress contention' : ''}${this.contentionText()}`;
  }
  /** "; shared: spine uplink per 256 ranks 1828.6 GB/s, ..." (empty without contention) */
  private contentionText(): string {
    const c = this.data.contention;
    if (!c) return '';
    const parts = c.levels.map((l) => `${l.name} per ${l.size} ranks ${fmtNum(l.bw / 1e9)} GB/s`);
    if (c.routes) parts.push('every link of a torus route');
    return `; shared (contention): ${parts.length ? parts.join(', ') : 'none in this topology'}`;
  }
  /** torus: "4x4x4 torus", "4x4 mesh (no wraparound)", or "4x4x6 (wraparound on x, y)" */
  shapeString(): string {
    const dims = this.dims, shape = dims.join('x');
    const long = dims.map((d, i) => (d > 2 ? i : -1)).filter((i) => i >= 0);
    const wrapped = long.filter((i) => this.wrap[i]);
    if (long.length === 0) return `${shape} mesh (axes of <= 2 chips: one link each)`;
    if (wrapped.length === long.length) return `${shape} torus`;
    if (wrapped.length === 0) return `${shape} mesh (no wraparound)`;
    return `${shape} (wraparound on ${wrapped.map((i) => axisName(i, dims.length)).join(', ')})`;
  }
}

/** x, y, z for up to 3 axes, else a0, a1, ... */
const axisName = (i: number, n: number) => (n <= 3 ? 'xyz'[i]! : `a${i}`);

/** Largest hop count between two chips of a torus/mesh (sum over axes). */
export function torusDiameter(dims: readonly number[], wrap: readonly boolean[]): number {
  let h = 0;
  for (let i = 0; i < dims.length; i++) h += wrap[i] && dims[i]! > 2 ? Math.floor(dims[i]! / 2) : dims[i]! - 1;
  return h;
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
  /**
   * TPU presets: the slice shape, "AxBxC" (3D) or "AxB" (2D); an axis may end in 'w' (force a
   * wraparound link) or 'm' (no wraparound), e.g. "4wx4w". Default wraparound: the preset's rule.
   */
  torus?: string;
  /**
   * Oversubscription s (>= 1, "1:s") of the switch tier above the full-bisection domain: hgx-h100,
   * dgx-a100: every inter-node link (the spine of a fat tree; default 1 = full bisection);
   * llama3: the aggregation layer between pods (default 7). Modeled as the worst-case per-GPU share,
   * NIC bandwidth / s, with every GPU sending through that tier at once; not as contention (see the
   * header).
   */
  spineOversubscription?: number;
  /** llama3: GPUs per pod (a multiple of 8; default 3,072). Ranks map to pods in contiguous blocks. */
  podSize?: number;
  /**
   * Model receiver-side (ingress) contention (TopologyData.ingress; every preset and JSON file;
   * default off). A JSON file may also set "ingress": true; this option, when given, wins.
   */
  ingress?: boolean;
  /**
   * Shared resources timed dynamically (TopologyData.contention, runtime/contention.ts): hgx-h100 /
   * dgx-a100: a NIC shared by several GPUs (nicsPerNode < 8) and, with oversubscription s > 1, the
   * spine uplinks of each scalable unit of podSize GPUs (default 256 = 32 nodes) at 1/s of its
   * GPUs' NIC bandwidth; llama3: each pod's uplink at 1/s of its GPUs' NIC bandwidth; TPU tori:
   * every link of a multi-hop route. The link classes then carry their line rates (no static
   * shares). Other topologies have no shared resource (a no-op).
   */
  contention?: boolean;
  /** hgx-h100 / dgx-a100: NICs per 8-GPU node, 1, 2, 4 or 8 (default 8: one per GPU, rail-optimized) */
  nicsPerNode?: number;
  /**
   * What error messages call the rank count (default '--ranks'; predict: '--gpus', train: its
   * mesh). Only with '--ranks' do they suggest --torus, the option of the commands that have it.
   */
  ranksName?: string;
}

/** 'the rank count' of error messages (TopologyOptions.ranksName) */
const ranksName = (opts: TopologyOptions): string => opts.ranksName ?? '--ranks';

/** DGX SuperPOD scalable unit: 32 nodes of 8 GPUs under one set of leaf switches. */
export const SCALABLE_UNIT_GPUS = 256;

export const TOPOLOGY_PRESETS = ['flat', 'hgx-h100', 'dgx-a100', 'gb200-nvl72', 'tpu-v4', 'tpu-v5p', 'tpu-v5e', 'tpu-v6e', 'llama3'] as const;

/**
 * Payload efficiency of NVLink for NCCL (LinkClass.efficiency): NCCL's own topology model uses
 * 20.6 GB/s per NVLink 4 link (src/graph/topo.h, SM90_NVLINK_BW) against 25 GB/s line rate per
 * link per direction (18 links = 450 GB/s), i.e. 18 x 20.6 = 370.8 GB/s per GPU; the NCCL
 * maintainer puts it as "450GB/s is the line rate. With the protocol overhead (~20%) NCCL can get an
 * effective NVLink bandwidth of 370GB/s" (nccl-tests #212). NVLink 3 (A100): 20.0 of 25 GB/s per
 * link (SM80_NVLINK_BW, 12 links = 240 of 300 GB/s); NVLink 5 (B200): 40.1 of 50 (SM100_NVLINK_BW).
 * These are NVIDIA's measured figures; collemu does not derive them.
 */
export const NVLINK_EFFICIENCY = { nvlink3: 20.0 / 25, nvlink4: 20.6 / 25, nvlink5: 40.1 / 50 } as const;
/**
 * Payload efficiency of a 400 Gb/s NIC (InfiniBand NDR or RoCE 400G) for NCCL: ~46-48 GB/s busbw per
 * NIC out of 50 GB/s line rate (hardware.md; NCCL maintainer in nccl-tests #290): 47 / 50. No such
 * figure is at hand for HDR 200G or an 800G NIC: those classes carry none (line rate).
 */
export const NIC400_EFFICIENCY = 47 / 50;

/** Llama 3 cluster (llama3 preset): GPUs per pod, pods, latencies (see the header). */
export const LLAMA3 = { podGpus: 3072, pods: 8, podOversubscription: 7, intraPodLatency: 5e-6, crossPodLatency: 20e-6 } as const;

interface TorusPreset {
  /** hardware profile key (runtime/hardware.ts) */
  gpu: string;
  /** default slice */
  dims: number[];
  /** ICI bandwidth per link per direction, bytes/s */
  linkBw: number;
  /** largest slice (a pod), chips; and the longest axis allowed */
  maxChips: number;
  maxAxis: number;
  /** default wraparound per axis of a slice (scaling-book tpus.md, see trainingWrap / inferenceWrap) */
  wraps: (dims: readonly number[]) => boolean[];
  /** figures and sources, for the comment only */
  source: string;
}

/** v4, v5p: the wraparounds come from the optical switches of whole 4x4x4 cubes: every axis wraps
 * when every axis is a multiple of 4 (4x4x4, 4x4x8, ...), none otherwise (2x2x2, 2x2x4) */
const trainingWrap = (dims: readonly number[]) => dims.map(() => dims.every((d) => d % 4 === 0));
/** v5e, v6e: an axis wraps when it is a full 16 (8x16 wraps on its long axis) */
const inferenceWrap = (dims: readonly number[]) => dims.map((d) => d === 16);

/** The TPU presets; figures from ../shared/reference/hardware.md (TPU table), see the header. */
const TORUS_PRESETS: Record<string, TorusPreset> = {
  // v4: 275 TFLOP/s bf16, 32 GiB HBM at 1.2 TB/s; ICI 45 GB/s per link one-way, 6 links; 3D torus,
  // pods of 4,096 chips built of 4x4x4 cubes.
  'tpu-v4': { gpu: 'tpu-v4', dims: [4, 4, 4], linkBw: 45e9, maxChips: 4096, maxAxis: 16, wraps: trainingWrap, source: 'hardware.md TPU v4 row' },
  // v5p: 459 TFLOP/s, 95 GB HBM at 2.77 TB/s; ICI 90 GB/s per link one-way (180 bidi), 6 links; 3D
  // torus up to 8,960 chips (16x20x28 per scaling-book tpus.md). Default slice: one 4x4x4 cube.
  'tpu-v5p': { gpu: 'tpu-v5p', dims: [4, 4, 4], linkBw: 90e9, maxChips: 8960, maxAxis: 28, wraps: trainingWrap, source: 'hardware.md TPU v5p row' },
  // v5e: 197 TFLOP/s, 16 GB at 819 GB/s; 4 ports, 2D torus 16x16; ICI 50 GB/s per link one-way,
  // derived: v6e's 100 GB/s per port (below) halved (Trillium doubles v5e's ICI bandwidth), equal
  // to scaling-book tpus.md's 5e10 B/s.
  'tpu-v5e': { gpu: 'tpu-v5e', dims: [16, 16], linkBw: 50e9, maxChips: 256, maxAxis: 16, wraps: inferenceWrap, source: 'hardware.md TPU v5e row (ICI derived)' },
  // v6e Trillium: 918 TFLOP/s, 32 GB at 1.64 TB/s; 800 GB/s bidirectional per chip over 4 ports ->
  // 100 GB/s per port per direction; 2D torus 16x16.
  'tpu-v6e': { gpu: 'tpu-v6e', dims: [16, 16], linkBw: 100e9, maxChips: 256, maxAxis: 16, wraps: inferenceWrap, source: 'hardware.md TPU v6e row' },
};

/** ICI hop latency of the TPU presets, seconds (see the header). */
export const ICI_HOP_LATENCY = 1e-6;

/** Parse "4x4x8" / "4wx4w" into axis lengths and per-axis wraparound overrides. */
export function parseTorusSpec(spec: string): { dims: number[]; wrap: (boolean | undefined)[] } {
  const parts = spec.trim().toLowerCase().split('x');
  const dims: number[] = [], wrap: (boolean | undefined)[] = [];
  for (const part of parts) {
    const m = /^(\d+)([wm]?)$/.exec(part);
    if (!m || Number(m[1]) < 1) throw new TopologyError(`--torus must look like 4x4x8 (axis lengths >= 1, each optionally followed by w = wraparound or m = none), got '${spec}'`);
    dims.push(Number(m[1]));
    wrap.push(m[2] === 'w' ? true : m[2] === 'm' ? false : undefined);
  }
  return { dims, wrap };
}

function makeTorusTopology(name: string, pre: TorusPreset, opts: TopologyOptions): Topology {
  if (opts.linkBw !== undefined || opts.linkLatency !== undefined) {
    throw new TopologyError(`--link-bw / --link-latency apply to the flat topology; ${name} has fixed ICI links`);
  }
  if (opts.nodes !== undefined) throw new TopologyError(`--nodes applies to hgx-h100 / dgx-a100 / gb200-nvl72, not to ${name} (use --torus ${pre.dims.join('x')} to pick a slice)`);
  checkPositiveInt(opts.ranks, '--ranks');
  const D = pre.dims.length;
  const defP = pre.dims.reduce((a, b) => a * b, 1);
  let dims: number[];
  let force: (boolean | undefined)[] = [];
  if (opts.torus !== undefined) {
    const t = parseTorusSpec(opts.torus);
    dims = t.dims;
    force = t.wrap;
    if (dims.length !== D) throw new TopologyError(`${name} is a ${D}D torus: --torus needs ${D} axis lengths (like ${pre.dims.join('x')}), got '${opts.torus}'`);
    const n = dims.reduce((a, b) => a * b, 1);
    if (dims.some((d) => d > pre.maxAxis) || n > pre.maxChips) {
      throw new TopologyError(`--torus ${opts.torus}: a ${name} slice has at most ${pre.maxChips} chips and ${pre.maxAxis} per axis`);
    }
    if (opts.ranks !== undefined && opts.ranks !== n) throw new TopologyError(`--torus ${opts.torus} has ${n} chips, but ${ranksName(opts)} is ${opts.ranks}`);
  } else if (opts.ranks === undefined || opts.ranks === defP) {
    dims = [...pre.dims];
  } else {
    // --ranks alone selects a k x k (x k) slice when N = k^D <= the default size
    const k = Math.round(opts.ranks ** (1 / D));
    if (k ** D !== opts.ranks || opts.ranks > defP) {
      const sq = D === 3 ? 'a cube k^3' : 'a square k^2';
      const hint = opts.ranksName === undefined ? `; use --torus AxB${D === 3 ? 'xC' : ''} for other shapes` : '';
      throw new TopologyError(`${name} is a ${pre.dims.join('x')} torus (${defP} chips): ${ranksName(opts)} ${opts.ranks} must be ${defP} or ${sq} <= ${defP} (a ${D === 3 ? 'k x k x k' : 'k x k'} slice)${hint}`);
    }
    dims = new Array<number>(D).fill(k);
  }
  const rule = pre.wraps(dims);
  const wrap = dims.map((d, i) => d > 2 && (force[i] ?? rule[i]!));
  const p = dims.reduce((a, b) => a * b, 1);
  const gpu = opts.gpu ?? pre.gpu;
  const hw = hardwareProfile(gpu);
  const { gamma, delta } = localCosts(hw, opts.reduceBw);
  const diam = torusDiameter(dims, wrap);
  const links: LinkClass[] = [];
  for (let h = 1; h <= Math.max(1, diam); h++) links.push({ name: h === 1 ? 'ici' : `ici x${h}`, alpha: h * ICI_HOP_LATENCY, bw: pre.linkBw, kind: 'ici' });
  return new Topology({
    name, p, gpusPerNode: p, links, intra: 0, inter: 0, gamma, delta, gpu,
    memCapacity: opts.memCapacity ?? hw.hbmBytes, torus: { dims, wrap },
  });
}

function checkOversubscription(v: number | undefined, dflt: number): number {
  const s = v ?? dflt;
  if (!(s >= 1) || !Number.isFinite(s)) throw new TopologyError(`--oversubscription must be a number >= 1 (1:s; got ${v})`);
  return s;
}

function checkPositiveInt(v: number | undefined, what: string): void {
  if (v !== undefined && (!Number.isInteger(v) || v < 1)) throw new TopologyError(`${what} must be an integer >= 1 (got ${v})`);
}

function resolveRanksNodes(opts: TopologyOptions, gpusPerNode: number, preset: string, nodesFrom = `--nodes ${opts.nodes}`): { p: number; nodes: number } {
  checkPositiveInt(opts.ranks, '--ranks');
  checkPositiveInt(opts.nodes, '--nodes');
  if (opts.nodes !== undefined) {
    const p = opts.ranks ?? opts.nodes * gpusPerNode;
    if (p !== opts.nodes * gpusPerNode) {
      throw new TopologyError(`${preset} with ${nodesFrom} has ${opts.nodes * gpusPerNode} GPUs, but ${ranksName(opts)} is ${p}`);
    }
    return { p, nodes: opts.nodes };
  }
  const p = opts.ranks ?? gpusPerNode;
  if (p > gpusPerNode && p % gpusPerNode !== 0) {
    throw new TopologyError(`${preset} has ${gpusPerNode} GPUs per node: ${ranksName(opts)} ${p} must be <= ${gpusPerNode} or a multiple of it`);
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
  if (opts.contention !== undefined && typeof opts.contention !== 'boolean') throw new TopologyError(`contention must be true or false (got ${JSON.stringify(opts.contention)})`);
  let t = makeTopologyBase(name, opts);
  if (opts.contention && !t.data.contention) {
    // presets without shared uplinks (flat, gb200-nvl72, JSON files without levels); a torus: its routes
    t = new Topology({ ...t.data, contention: { levels: [], ...(t.isTorus ? { routes: true } : {}) } });
  }
  if (opts.ingress === undefined || opts.ingress === !!t.data.ingress) return t;
  if (typeof opts.ingress !== 'boolean') throw new TopologyError(`ingress must be true or false (got ${JSON.stringify(opts.ingress)})`);
  const data = { ...t.data };
  if (opts.ingress) data.ingress = true;
  else delete data.ingress;
  return new Topology(data);
}

function makeTopologyBase(name: string, opts: TopologyOptions): Topology {
  const gpuKey = opts.gpu;
  const contention = opts.contention === true;
  if (opts.podSize !== undefined && name !== 'llama3' && !(contention && (name === 'hgx-h100' || name === 'dgx-a100'))) {
    throw new TopologyError(`--pod-size applies to llama3 (and, with --contention, to hgx-h100 / dgx-a100: GPUs per scalable unit), not to ${name}`);
  }
  if (opts.nicsPerNode !== undefined && name !== 'hgx-h100' && name !== 'dgx-a100') throw new TopologyError(`--nics-per-node applies to hgx-h100 / dgx-a100, not to ${name}`);
  if (opts.spineOversubscription !== undefined && name !== 'hgx-h100' && name !== 'dgx-a100' && name !== 'llama3') {
    throw new TopologyError(`--oversubscription applies to hgx-h100, dgx-a100 and llama3, not to ${name}`);
  }
  switch (name) {
    case 'flat': {
      checkPositiveInt(opts.ranks, '--ranks');
      if (opts.nodes !== undefined) throw new TopologyError('--nodes applies to hgx-h100 / dgx-a100, not to flat');
      if (opts.torus !== undefined) throw new TopologyError('--torus applies to the TPU presets (tpu-v4, tpu-v5p, tpu-v5e, tpu-v6e)');
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
      if (opts.torus !== undefined) throw new TopologyError('--torus applies to the TPU presets (tpu-v4, tpu-v5p, tpu-v5e, tpu-v6e)');
      const h100 = name === 'hgx-h100';
      const gpu = gpuKey ?? (h100 ? 'h100' : 'a100');
      const hw = hardwareProfile(gpu);
      const { p } = resolveRanksNodes(opts, 8, name);
      const { gamma, delta } = localCosts(hw, opts.reduceBw);
      const s = checkOversubscription(opts.spineOversubscription, 1);
      const k = opts.nicsPerNode ?? 8;
      if (![1, 2, 4, 8].includes(k)) throw new TopologyError(`--nics-per-node must be 1, 2, 4 or 8 (got ${k})`);
      const nic: LinkClass = h100
        ? { name: 'ib-ndr400', alpha: 5e-6, bw: 50e9, kind: 'net', efficiency: NIC400_EFFICIENCY }
        : { name: 'ib-hdr200', alpha: 5e-6, bw: 25e9, kind: 'net' };
      const nicName = `${nic.name}${k < 8 ? ` (${k} per node)` : ''}`;
      // without contention: the worst-case static share of each GPU (every GPU sending at once):
      // k/8 of a NIC, 1/s of that through the spine; with it, line rate and shared resources
      let inter: LinkClass;
      const levels: SharedLevel[] = [];
      if (!contention) {
        const share = (k / 8) / s;
        inter = share === 1 ? nic : { ...nic, name: `${nicName}${s > 1 ? ` 1:${+s.toPrecision(4)}` : ''}`, bw: nic.bw * share };
      } else {
        inter = { ...nic, name: nicName };
        if (k < 8) levels.push({ name: `${nic.name} NIC (${8 / k} GPUs)`, size: 8 / k, bw: nic.bw });
        if (s > 1) {
          const su = opts.podSize ?? SCALABLE_UNIT_GPUS;
          if (!Number.isInteger(su) || su < 8 || su % 8 !== 0) throw new TopologyError(`--pod-size must be a multiple of the 8 GPUs per node (got ${su})`);
          levels.push({ name: `spine uplink (1:${+s.toPrecision(4)})`, size: su, bw: (su / 8) * k * nic.bw / s });
        }
      }
      return new Topology({
        name, p, gpusPerNode: 8,
        links: [
          h100
            ? { name: 'nvlink4', alpha: 1e-6, bw: 450e9, kind: 'nvlink', efficiency: NVLINK_EFFICIENCY.nvlink4 }
            : { name: 'nvlink3', alpha: 1e-6, bw: 300e9, kind: 'nvlink', efficiency: NVLINK_EFFICIENCY.nvlink3 },
          inter,
        ],
        intra: 0, inter: 1, gamma, delta, gpu, memCapacity: opts.memCapacity ?? hw.hbmBytes,
        ...(contention ? { contention: { levels } } : {}),
      });
    }
    case 'llama3': {
      // the Llama 3 cluster (header): H100 servers of 8 on NVLink 4, one RoCE 400G NIC per GPU,
      // pods of 3,072 GPUs with full bisection, 1:7 oversubscribed between pods
      if (opts.linkBw !== undefined || opts.linkLatency !== undefined) {
        throw new TopologyError(`--link-bw / --link-latency apply to the flat topology; ${name} has fixed links (use a JSON topology to change them)`);
      }
      if (opts.torus !== undefined) throw new TopologyError('--torus applies to the TPU presets (tpu-v4, tpu-v5p, tpu-v5e, tpu-v6e)');
      const gpu = gpuKey ?? 'h100';
      const hw = hardwareProfile(gpu);
      const pod = opts.podSize ?? LLAMA3.podGpus;
      if (!Number.isInteger(pod) || pod < 8 || pod % 8 !== 0) throw new TopologyError(`--pod-size must be a multiple of the 8 GPUs per server (got ${pod})`);
      const { p } = resolveRanksNodes(opts, 8, name);
      const maxP = LLAMA3.pods * LLAMA3.podGpus;
      if (p > maxP) throw new TopologyError(`llama3 has ${LLAMA3.pods} pods of ${LLAMA3.podGpus} GPUs (${maxP} GPUs); ${p} ranks do not fit`);
      const s = checkOversubscription(opts.spineOversubscription, LLAMA3.podOversubscription);
      const { gamma, delta } = localCosts(hw, opts.reduceBw);
      return new Topology({
        name, p, gpusPerNode: 8,
        links: [
          { name: 'nvlink4', alpha: 1e-6, bw: 450e9, kind: 'nvlink', efficiency: NVLINK_EFFICIENCY.nvlink4 },
          { name: 'roce-400g', alpha: LLAMA3.intraPodLatency, bw: 50e9, kind: 'net', efficiency: NIC400_EFFICIENCY },
          contention
            ? { name: 'roce-xpod', alpha: LLAMA3.crossPodLatency, bw: 50e9, kind: 'net', efficiency: NIC400_EFFICIENCY }
            : { name: `roce-xpod 1:${+s.toPrecision(4)}`, alpha: LLAMA3.crossPodLatency, bw: 50e9 / s, kind: 'net', efficiency: NIC400_EFFICIENCY },
        ],
        intra: 0, inter: 1, pod: { gpus: pod, link: 2 }, portOfClass: [0, 1, 1],
        gamma, delta, gpu, memCapacity: opts.memCapacity ?? hw.hbmBytes,
        ...(contention ? { contention: { levels: [{ name: `pod uplink (1:${+s.toPrecision(4)})`, size: pod, bw: pod * 50e9 / s }] } } : {}),
      });
    }
    case 'gb200-nvl72': {
      // 72 B200 GPUs per NVLink 5 domain (rack), 900 GB/s per direction per GPU; one 800 Gb/s NIC
      // (100 GB/s) per GPU between racks; 1 us / 5 us (see the header)
      if (opts.linkBw !== undefined || opts.linkLatency !== undefined) {
        throw new TopologyError(`--link-bw / --link-latency apply to the flat topology; ${name} has fixed links (use a JSON topology to change them)`);
      }
      if (opts.torus !== undefined) throw new TopologyError('--torus applies to the TPU presets (tpu-v4, tpu-v5p, tpu-v5e, tpu-v6e)');
      const gpu = gpuKey ?? 'b200';
      const hw = hardwareProfile(gpu);
      const { p } = resolveRanksNodes(opts, 72, name);
      const { gamma, delta } = localCosts(hw, opts.reduceBw);
      return new Topology({
        name, p, gpusPerNode: 72,
        links: [
          { name: 'nvlink5', alpha: 1e-6, bw: 900e9, kind: 'nvlink', efficiency: NVLINK_EFFICIENCY.nvlink5 },
          { name: 'nic-800g', alpha: 5e-6, bw: 100e9, kind: 'net' },
        ],
        intra: 0, inter: 1, gamma, delta, gpu, memCapacity: opts.memCapacity ?? hw.hbmBytes,
      });
    }
    default: {
      const pre = TORUS_PRESETS[name];
      if (pre) return makeTorusTopology(name, pre, opts);
      if (opts.torus !== undefined) throw new TopologyError('--torus applies to the TPU presets (tpu-v4, tpu-v5p, tpu-v5e, tpu-v6e)');
      if (name.endsWith('.json') || name.includes('/')) {
        if (opts.linkBw !== undefined || opts.linkLatency !== undefined) {
          throw new TopologyError(`--link-bw / --link-latency apply to the flat topology; ${name} gives its links' bandwidth and latency itself`);
        }
        return loadTopologyFile(name, opts);
      }
      throw new TopologyError(`unknown topology '${name}' (presets: ${TOPOLOGY_PRESETS.join(', ')}, or a .json file)`);
    }
  }
}

/**
 * JSON topology file:
 * {
 *   "name": "my-cluster", "gpu": "h100", "gpusPerNode": 4, "nodes": 2,
 *   "links": { "nvlink": { "latency_us": 1, "bandwidth_GBps": 450 },
 *              "ib": { "latency_us": 5, "bandwidth_GBps": 50 } },
 *     (a link may also give "kind": "nvlink" | "net" | "ici" and "efficiency": (0, 1], LinkClass)
 *   "intraNode": "nvlink", "interNode": "ib",
 *   "reduceBandwidth_GBps": 1000,            (optional; default from the GPU's HBM)
 *   "memoryCapacity_GB": 80,                 (optional; default the GPU's HBM)
 *   "ingress": true,                         (optional; model ingress contention, default false)
 *   "sharedLevels": [ { "name": "leaf uplink", "size": 16, "bandwidth_GBps": 200 } ]
 *                                            (optional; shared uplinks per domain of `size` ranks, timed
 *                                             dynamically: TopologyData.contention, runtime/contention.ts)
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
  const known = new Set(['name', 'gpu', 'gpusPerNode', 'nodes', 'links', 'intraNode', 'interNode', 'reduceBandwidth_GBps', 'memoryCapacity_GB', 'ingress', 'sharedLevels', 'comment']);
  for (const k of Object.keys(o)) if (!known.has(k)) bad(`unknown key '${k}' (known: ${[...known].join(', ')})`);
  if (o.name !== undefined && typeof o.name !== 'string') bad('"name" must be a string');
  // --gpu (TopologyOptions.gpu) overrides the file's GPU, as it does a preset's
  const gpu = opts.gpu ?? (o.gpu === undefined ? 'h100' : typeof o.gpu === 'string' ? o.gpu : bad('"gpu" must be a string'));
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
    for (const k of Object.keys(l)) if (!['latency_us', 'bandwidth_GBps', 'kind', 'efficiency'].includes(k)) bad(`link '${lname}': unknown key '${k}'`);
    const lat = l.latency_us, bw = l.bandwidth_GBps;
    if (typeof lat !== 'number' || !(lat >= 0) || !Number.isFinite(lat)) bad(`link '${lname}': latency_us must be a number >= 0`);
    if (typeof bw !== 'number' || !(bw > 0) || !Number.isFinite(bw * 1e9)) bad(`link '${lname}': bandwidth_GBps must be a finite number > 0`);
    if (l.kind !== undefined && l.kind !== 'nvlink' && l.kind !== 'net' && l.kind !== 'ici') bad(`link '${lname}': kind must be "nvlink", "net" or "ici"`);
    if (l.efficiency !== undefined && (typeof l.efficiency !== 'number' || !(l.efficiency > 0 && l.efficiency <= 1))) bad(`link '${lname}': efficiency must be a number in (0, 1]`);
    index.set(lname, links.length);
    const link: LinkClass = { name: lname, alpha: (lat as number) * 1e-6, bw: (bw as number) * 1e9 };
    if (l.kind !== undefined) link.kind = l.kind as LinkClass['kind'];
    if (l.efficiency !== undefined) link.efficiency = l.efficiency as number;
    links.push(link);
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
  const nodesFrom = opts.nodes !== undefined ? `--nodes ${opts.nodes}` : `"nodes": ${o.nodes as number} x "gpusPerNode": ${gpn as number}`;
  const { p } = resolveRanksNodes({ ranks: opts.ranks, nodes: opts.nodes ?? (o.nodes as number | undefined), ranksName: opts.ranksName }, gpn as number, name, nodesFrom);
  const { gamma, delta } = localCosts(hw, reduceBw);
  if (o.ingress !== undefined && typeof o.ingress !== 'boolean') bad('"ingress" must be true or false');
  const ingress = opts.ingress ?? (o.ingress as boolean | undefined);
  let levels: SharedLevel[] | undefined;
  if (o.sharedLevels !== undefined) {
    if (!Array.isArray(o.sharedLevels)) bad('"sharedLevels" must be a list of { "name", "size", "bandwidth_GBps" }');
    levels = (o.sharedLevels as unknown[]).map((lv, i) => {
      if (typeof lv !== 'object' || lv === null) return bad(`sharedLevels[${i}] must be an object`);
      const l = lv as Record<string, unknown>;
      for (const k of Object.keys(l)) if (!['name', 'size', 'bandwidth_GBps'].includes(k)) bad(`sharedLevels[${i}]: unknown key '${k}'`);
      if (!Number.isInteger(l.size) || (l.size as number) < 1) bad(`sharedLevels[${i}]: "size" must be an integer >= 1 (ranks per domain)`);
      if (typeof l.bandwidth_GBps !== 'number' || !(l.bandwidth_GBps > 0)) bad(`sharedLevels[${i}]: "bandwidth_GBps" must be a number > 0`);
      return { name: typeof l.name === 'string' ? l.name : `level ${i}`, size: l.size as number, bw: (l.bandwidth_GBps as number) * 1e9 };
    });
  }
  // shared levels are timed only with contention on (the option, or a file that lists them)
  const contention = levels && opts.contention !== false ? { contention: { levels } } : {};
  return new Topology({ name, p, gpusPerNode: gpn as number, links, intra, inter, gamma, delta, gpu, memCapacity: cap, ...(ingress ? { ingress: true } : {}), ...contention });
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
