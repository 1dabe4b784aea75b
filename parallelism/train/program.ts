/**
 * RankBuilder: writes one rank's IR program for a training run, SPMD style: the training step code
 * (parallelism/train/step.ts) runs once per rank with that rank's mesh coordinates, and every
 * kernel, local copy and collective it calls appends ops to the rank's program. Tensors live in the
 * rank's arena (parallelism/train/arena.ts), all in IR buffer 'in'.
 *
 * Streams: kernels run on the compute stream (0); collectives and point-to-point messages on the
 * communication stream (1), fenced with `wait` ops: the communication stream waits for the
 * compute that produced its input, and compute waits for a collective's result only where it is
 * used (`sync`). With `overlap: false` every op runs on stream 0 (nothing overlaps).
 *
 * Collectives on a process group are the collectives/ algorithms built for the group's size, with
 * their ranks renamed to the group's global ranks and their buffers ('in', 'out', 'tmp') mapped to
 * regions of the arena, so the data moves exactly as in `collemu bench`. Calls and payload bytes are
 * counted per collective type and per group dimension (the communication profile).
 */
import { getAlgorithm } from '../../collectives/registry.js';
import { ioSizes, type Collective, type CollSpec } from '../../collectives/types.js';
import { ELEM_BYTES, type Op, type Program, type ReduceOp, type Region } from '../../runtime/ir.js';
import { makeTopology, type Topology } from '../../runtime/topology.js';
import { TRAIN_KERNELS as KERNELS } from './kernels.js';
import { Arena, type MemCategory, type Tensor } from './arena.js';


export interface CommStat {
  /** collective type ('allreduce', ..., 'sendrecv' for point-to-point) */
  coll: string;
  /** the mesh dimensions of the group ('tp', 'dp+cp', 'pp', ...) */
  dims: string;
  /** calls made by this rank */
  calls: number;
  /** payload bytes (nccl-tests "size": the per-rank buffer; AllGather: the gathered buffer) */
  bytes: number;
  /** payload bytes of each call, in order (for message-size histograms) */
  sizes: number[];
}

export type Arg = Tensor | Region;
const reg = (a: Arg): Region => ('region' in a ? a.region : a);

/** A region of `len` elements at `off` inside a tensor or region. */
export function view(a: Arg, off: number, len: number): Region {
  const r = reg(a);
  if (off < 0 || off + len > r.len) throw new Error(`view [${off}, ${off + len}) outside a region of ${r.len} elements`);
  return { buf: r.buf, off: r.off + off, len };
}

const flatTopos = new Map<number, Topology>();
const progCache = new Map<string, Program[]>();

function groupPrograms(spec: CollSpec, algo: string): { progs: Program[]; tmp: number } {
  let topo = flatTopos.get(spec.p);
  if (!topo) flatTopos.set(spec.p, (topo = makeTopology('flat', { ranks: spec.p })));
  const a = getAlgorithm(spec.coll, algo);
  const why = a.unsupported?.(spec, topo);
  if (why) throw new Error(`${spec.coll} ${algo} on ${spec.p} ranks: ${why}`);
  const key = `${spec.coll}/${algo}/${spec.p}/${spec.count}/${spec.op}/${spec.inPlace}/${spec.root}`;
  let progs = progCache.get(key);
  if (!progs) {
    progs = a.build(spec, topo);
    if (progCache.size > 4096) progCache.clear();
    progCache.set(key, progs);
  }
  return { progs, tmp: a.tmpElems ? a.tmpElems(spec, topo) : 0 };
}

/** Algorithm used per collective in training programs (all work for any group size). */
export const TRAIN_ALGOS: Record<string, string> = { allreduce: 'ring', allgather: 'ring', reducescatter: 'ring', alltoall: 'pairwise', broadcast: 'binomial' };

export class RankBuilder {
  readonly rank: number;
  readonly ops: Op[] = [];
  readonly arena: Arena;
  readonly overlap: boolean;
  private stats = new Map<string, CommStat>();
  /** where the program is, for messages: "step 2 forward mb 1" */
  private whereNow = 'start';

  /** per peer, the messages this rank sends it (tag, length), in order */
  readonly sent = new Map<number, { tag: string; len: number }[]>();
  private readonly incoming?: Map<number, { tag: string; len: number }[]>;
  private cursor = new Map<number, number>();
  private early = new Map<string, Tensor>();

  constructor(rank: number, capacity: number, overlap = true, incoming?: Map<number, { tag: string; len: number }[]>) {
    this.rank = rank;
    this.arena = new Arena(rank, capacity);
    this.overlap = overlap;
    this.incoming = incoming;
  }

  set where(w: string) {
    this.whereNow = w;
    this.arena.where = w;
  }
  get where(): string {
    return this.whereNow;
  }

  alloc(name: string, len: number, cat: MemCategory): Tensor {
    return this.arena.alloc(name, len, cat);
  }

  free(...ts: (Tensor | undefined)[]): void {
    for (const t of ts) if (t) this.arena.release(t);
  }

  private get commStream(): 0 | 1 {
    return this.overlap ? 1 : 0;
  }

  /** Run a model kernel on the compute stream. */
  kernel(name: string, args: Arg[], params: number[], label?: string): void {
    const def = KERNELS[name];
    if (!def) throw new Error(`unknown kernel ${name}`);
    const regions = args.map(reg);
    const lens = def.argLens(params);
    regions.forEach((r, j) => {
      if (r.len !== lens[j]) throw new Error(`rank ${this.rank} ${this.whereNow}: kernel ${name} arg ${j} has ${r.len} elements, expected ${lens[j]}`);
    });
    const c = def.cost(params);
    this.ops.push({ k: 'compute', flops: c.flops, bytes: c.bytes, label: label ?? name, kernel: name, args: regions, params, writes: [...def.writes] });
  }

  copy(src: Arg, dst: Arg): void {
    this.ops.push({ k: 'copy', src: reg(src), dst: reg(dst) });
  }

  /** The communication stream waits for the compute issued so far. */
  commAfterCompute(): void {
    if (this.overlap) this.ops.push({ k: 'wait', s: 1, on: 0 });
  }

  /** Compute waits for the communication issued so far (use before consuming a collective's result). */
  sync(): void {
    if (this.overlap) this.ops.push({ k: 'wait', s: 0, on: 1 });
  }

  private count(coll: string, dims: string, bytes: number): void {
    const key = `${coll}/${dims}`;
    let s = this.stats.get(key);
    if (!s) this.stats.set(key, (s = { coll, dims, calls: 0, bytes: 0, sizes: [] }));
    s.calls++;
    s.bytes += bytes;
    s.sizes.push(bytes);
  }

  /**
   * A collective over `group` (global ranks; this rank must be in it), on `count` elements per rank
   * (nccl-tests convention). `input`/`output` follow collectives/types.ts (inputRegion/outputRegion):
   * with `inPlace`, only `output` is given. By default the call is synchronous in virtual time
   * (compute waits for it); `async: true` leaves the wait to a later `sync()`.
   */
  collective(coll: Collective, group: readonly number[], count: number, io: { input?: Arg; output: Arg }, opts: { dims: string; op?: ReduceOp; async?: boolean; algo?: string; label?: string }): void {
    const me = group.indexOf(this.rank);
    if (me < 0) throw new Error(`rank ${this.rank} is not in group [${group.join(', ')}]`);
    const p = group.length;
    const inPlace = io.input === undefined;
    const spec: CollSpec = { coll, p, count, op: opts.op ?? 'sum', inPlace, root: 0 };
    const sizes = ioSizes(spec);
    const out = reg(io.output);
    if (out.len !== sizes.out) throw new Error(`rank ${this.rank} ${this.whereNow}: ${coll} output has ${out.len} elements, expected ${sizes.out}`);
    const inp = inPlace ? undefined : reg(io.input!);
    if (inp && inp.len !== sizes.in) throw new Error(`rank ${this.rank} ${this.whereNow}: ${coll} input has ${inp.len} elements, expected ${sizes.in}`);
    this.count(coll, opts.dims, (coll === 'allgather' ? p * count : coll === 'reducescatter' || coll === 'alltoall' ? p * count : count) * ELEM_BYTES);
    if (p === 1) {
      if (inp) this.copy(inp, { buf: out.buf, off: out.off, len: inp.len });
      return;
    }
    const { progs, tmp } = groupPrograms(spec, opts.algo ?? TRAIN_ALGOS[coll] ?? 'ring');
    const scratch = tmp > 0 ? this.alloc(`${coll}-scratch`, tmp, 'comm') : undefined;
    const base = { in: inp?.off ?? 0, out: out.off, tmp: scratch?.region.off ?? 0 };
    const map = (r: Region): Region => ({ buf: 'in', off: base[r.buf] + r.off, len: r.len });
    const s = this.commStream;
    this.commAfterCompute();
    for (const o of progs[me]!) {
      switch (o.k) {
        case 'send': this.ops.push({ k: 'send', peer: group[o.peer]!, src: map(o.src), s }); break;
        case 'recv': this.ops.push(o.op ? { k: 'recv', peer: group[o.peer]!, dst: map(o.dst), op: o.op, acc: o.acc ? map(o.acc) : undefined, s } : { k: 'recv', peer: group[o.peer]!, dst: map(o.dst), s }); break;
        case 'copy': this.ops.push({ k: 'copy', src: map(o.src), dst: map(o.dst), s }); break;
        case 'reduce': this.ops.push({ k: 'reduce', a: map(o.a), b: map(o.b), dst: map(o.dst), op: o.op, s }); break;
        case 'scale': this.ops.push({ k: 'scale', dst: map(o.dst), factor: o.factor, s }); break;
        case 'compute': this.ops.push({ ...o, s }); break;
        default: throw new Error(`collective program op ${o.k} not expected`);
      }
    }
    if (scratch) this.free(scratch);
    if (!opts.async) this.sync();
  }

  /**
   * Point-to-point send (pipeline activations and gradients, ring attention blocks); asynchronous.
   * `tag` names the message: messages between a pair are matched in FIFO order (as NCCL's
   * send/recv), so the receiver takes them in the sender's order (see recv).
   */
  send(peer: number, src: Arg, dims: string, tag: string, opts: { afterCompute?: boolean } = {}): void {
    this.count('sendrecv', dims, reg(src).len * ELEM_BYTES);
    if (opts.afterCompute !== false) this.commAfterCompute();
    this.ops.push({ k: 'send', peer, src: reg(src), s: this.commStream });
    let l = this.sent.get(peer);
    if (!l) this.sent.set(peer, (l = []));
    l.push({ tag, len: reg(src).len });
  }

  /**
   * Point-to-point receive of message `tag` from `peer` into `dst`; compute waits for it unless
   * `async`. A schedule may need messages from one peer in another order than the peer sends them
   * (e.g. ZB-V: an activation sent before a gradient, needed after it). When the sender's order is
   * known (`incoming`, from a first compile pass), the messages that come first are received early
   * into buffers of their own (counted as 'comm' memory) and used when needed, the way MPI queues
   * unexpected messages; without it, the FIFO order is assumed.
   */
  recv(peer: number, dst: Arg, tag: string, opts: { async?: boolean } = {}): void {
    const early = this.pull(peer, tag);
    if (early) {
      this.copy(early, dst);
      this.free(early);
    } else this.ops.push({ k: 'recv', peer, dst: reg(dst), s: this.commStream });
    if (!opts.async) this.sync();
  }

  /** Receive message `tag` from `peer` into a new tensor (or the buffer it was received into early). */
  recvTensor(peer: number, tag: string, name: string, len: number, cat: MemCategory): Tensor {
    const early = this.pull(peer, tag);
    if (early) {
      this.sync();
      return early;
    }
    const t = this.alloc(name, len, cat);
    this.ops.push({ k: 'recv', peer, dst: t.region, s: this.commStream });
    this.sync();
    return t;
  }

  /** Receive the messages `peer` sends before `tag` early; returns `tag`'s early buffer if it has one. */
  private pull(peer: number, tag: string): Tensor | undefined {
    const key = `${peer}/${tag}`;
    const e = this.early.get(key);
    if (e) {
      this.early.delete(key);
      return e;
    }
    const list = this.incoming?.get(peer);
    if (!list) return undefined;
    let i = this.cursor.get(peer) ?? 0;
    for (; i < list.length && list[i]!.tag !== tag; i++) {
      const m = list[i]!;
      const t = this.alloc(`early message ${m.tag} from rank ${peer}`, m.len, 'comm');
      this.ops.push({ k: 'recv', peer, dst: t.region, s: this.commStream });
      this.early.set(`${peer}/${m.tag}`, t);
    }
    if (i === list.length) throw new Error(`rank ${this.rank} ${this.whereNow}: expects message '${tag}' from rank ${peer}, which never sends it`);
    this.cursor.set(peer, i + 1);
    return undefined;
  }

  commStats(): CommStat[] {
    return [...this.stats.values()];
  }

  program(): Program {
    return this.ops;
  }
}
