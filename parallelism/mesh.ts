/**
 * DeviceMesh: the world's ranks arranged as an n-dimensional grid with named dimensions, and the
 * process groups (sub-communicators) along any subset of them, as in torchtitan's DeviceMesh.
 *
 * Order: dimensions are listed innermost first: the first dimension varies fastest over
 * consecutive ranks. The default order is Llama 3's [TP, CP, EP, PP, DP_shard, DP_replicate]
 * ("[TP, CP, PP, DP]", The Llama 3 Herd of Models, sec. 3.3.2): TP innermost so its heavy,
 * latency-critical traffic stays inside a node, DP outermost. A rank's coordinate along dimension
 * d is floor(rank / stride_d) mod size_d, stride_d = product of the sizes of the dimensions before d.
 *
 * Process groups: the ranks that differ from a given rank only along the named dimensions, in
 * increasing order of their coordinates along them (the first named dimension fastest). A
 * collective on a group runs the group-size algorithm with its ranks renamed
 * (parallelism/train/program.ts, RankBuilder.collective).
 *
 * Data parallelism has two dimensions (torchtitan's names): dp_shard (alias fsdp) and dp (alias
 * dp_replicate). In `collemu train` both are data parallel; with ZeRO >= 1 and both > 1 (HSDP),
 * the ZeRO shards span dp_shard only and are replicated across dp (parallelism/train/step.ts).
 */

export const MESH_DIMS = ['tp', 'cp', 'ep', 'pp', 'dp_shard', 'dp'] as const;
export type MeshDim = (typeof MESH_DIMS)[number];

/** accepted spellings (torchtitan names) */
const ALIASES: Record<string, MeshDim> = {
  tp: 'tp', cp: 'cp', ep: 'ep', pp: 'pp', dp: 'dp', dp_replicate: 'dp', fsdp: 'dp_shard', dp_shard: 'dp_shard',
};

export class MeshError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MeshError';
  }
}

export class DeviceMesh {
  /** dimension names, innermost first, and their sizes (every dimension of MESH_DIMS, size >= 1) */
  readonly dims: readonly MeshDim[];
  readonly sizes: Readonly<Record<MeshDim, number>>;
  readonly strides: Readonly<Record<MeshDim, number>>;
  readonly world: number;

  constructor(sizes: Partial<Record<MeshDim, number>>, order: readonly MeshDim[] = MESH_DIMS) {
    const seen = new Set<MeshDim>();
    for (const d of order) {
      if (!MESH_DIMS.includes(d)) throw new MeshError(`unknown mesh dimension '${d}' (known: ${MESH_DIMS.join(', ')})`);
      if (seen.has(d)) throw new MeshError(`mesh dimension '${d}' listed twice in the order`);
      seen.add(d);
    }
    const full = [...order, ...MESH_DIMS.filter((d) => !seen.has(d))];
    const sz = {} as Record<MeshDim, number>;
    const st = {} as Record<MeshDim, number>;
    let world = 1;
    for (const d of full) {
      const n = sizes[d] ?? 1;
      if (!Number.isInteger(n) || n < 1) throw new MeshError(`mesh dimension ${d}=${n}: sizes must be integers >= 1`);
      sz[d] = n;
      st[d] = world;
      world *= n;
    }
    this.dims = full;
    this.sizes = sz;
    this.strides = st;
    this.world = world;
  }

  /** Parse "dp=2,pp=2,tp=2" (any order of keys; the mesh order stays the default). */
  static parse(spec: string, world?: number): DeviceMesh {
    const sizes: Partial<Record<MeshDim, number>> = {};
    const s = spec.trim();
    if (s === '') throw new MeshError('empty mesh: expected e.g. dp=2,pp=2,tp=2');
    for (const part of s.split(',')) {
      const m = /^\s*([a-z_]+)\s*=\s*(\d+)\s*$/.exec(part);
      if (!m) throw new MeshError(`bad mesh entry '${part}': expected name=size, e.g. tp=2`);
      const d = ALIASES[m[1]!];
      if (!d) throw new MeshError(`unknown mesh dimension '${m[1]}' (known: tp, cp, ep, pp, dp, dp_shard/fsdp)`);
      if (sizes[d] !== undefined) throw new MeshError(`mesh dimension '${m[1]}' given twice`);
      sizes[d] = Number(m[2]);
    }
    const mesh = new DeviceMesh(sizes);
    if (world !== undefined && mesh.world !== world) {
      throw new MeshError(`mesh ${mesh.describe()} has ${mesh.world} ranks, but the world has ${world}`);
    }
    return mesh;
  }

  size(d: MeshDim): number {
    return this.sizes[d];
  }

  coord(rank: number, d: MeshDim): number {
    this.checkRank(rank);
    return Math.floor(rank / this.strides[d]) % this.sizes[d];
  }

  coords(rank: number): Record<MeshDim, number> {
    const c = {} as Record<MeshDim, number>;
    for (const d of this.dims) c[d] = this.coord(rank, d);
    return c;
  }

  /** The rank with `rank`'s coordinates, except those given in `at`. */
  rankWith(rank: number, at: Partial<Record<MeshDim, number>>): number {
    let r = rank;
    for (const d of Object.keys(at) as MeshDim[]) {
      const v = at[d]!;
      if (!Number.isInteger(v) || v < 0 || v >= this.sizes[d]) throw new MeshError(`coordinate ${d}=${v} outside 0..${this.sizes[d] - 1}`);
      r += (v - this.coord(rank, d)) * this.strides[d];
    }
    return r;
  }

  /** The process group of `rank` along `dims` (ranks in order of their coordinates, first dim fastest). */
  group(rank: number, dims: readonly MeshDim[]): number[] {
    this.checkRank(rank);
    for (const d of dims) if (!this.sizes[d]) throw new MeshError(`unknown mesh dimension '${d}'`);
    let base = rank;
    for (const d of dims) base -= this.coord(rank, d) * this.strides[d];
    let out = [base];
    for (const d of dims) {
      const next: number[] = [];
      for (let c = 0; c < this.sizes[d]; c++) for (const r of out) next.push(r + c * this.strides[d]);
      out = next;
    }
    return out.sort((a, b) => this.groupIndex(a, dims) - this.groupIndex(b, dims));
  }

  /** `rank`'s index inside its group along `dims` (first named dimension fastest). */
  groupIndex(rank: number, dims: readonly MeshDim[]): number {
    let ix = 0, mul = 1;
    for (const d of dims) {
      ix += this.coord(rank, d) * mul;
      mul *= this.sizes[d];
    }
    return ix;
  }

  /** Every distinct group along `dims` (each a list of ranks). */
  groups(dims: readonly MeshDim[]): number[][] {
    const seen = new Set<number>();
    const out: number[][] = [];
    for (let r = 0; r < this.world; r++) {
      const g = this.group(r, dims);
      if (seen.has(g[0]!)) continue;
      seen.add(g[0]!);
      out.push(g);
    }
    return out;
  }

  /** "tp=2,pp=2,dp=2" listing the dimensions of size > 1, innermost first ("single" if none). */
  describe(): string {
    const parts = this.dims.filter((d) => this.sizes[d] > 1).map((d) => `${d}=${this.sizes[d]}`);
    return parts.length ? parts.join(',') : 'single';
  }

  private checkRank(rank: number): void {
    if (!Number.isInteger(rank) || rank < 0 || rank >= this.world) throw new MeshError(`rank ${rank} outside 0..${this.world - 1}`);
  }
}
