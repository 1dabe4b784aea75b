/**
 * Virtual time with resources shared by several ranks (TopologyData.contention, `--contention`):
 * the spine or pod uplinks of an oversubscribed fabric, a NIC shared by several GPUs of a node, and
 * the links a multi-hop torus route passes through. Without it (the default), every resource in
 * the timing model belongs to one rank (its egress ports, and with `--ingress` its ingress ports),
 * and the executors compute times in each rank's program order (runtime/timing.ts).
 *
 * A shared resource is used by messages of different senders, so its order cannot come from one
 * program: here it is the order of the messages' start times. Virtual time never changes what a
 * program does (which send matches which receive is fixed by the programs: FIFO per directed
 * pair), so the times can be computed from the programs alone, as a discrete-event pass:
 *
 *  - Each rank runs its ops in program order with its VClock, exactly as in the executors (the
 *    same functions of runtime/timing.ts: streams, waits, compute, receives, ingress, multicast).
 *  - A send whose path uses a shared resource is held at its ready time R = max(stream clock, its
 *    egress port's free time). When no rank can run (every one is held, blocked on a receive, or
 *    done), the held send with the smallest (R, rank) is committed. That order is safe: a blocked
 *    rank waits for a message not yet sent, which leaves at R or later, so every send still to come
 *    starts at R or later (a rank's own sends reach the resources in its program order).
 *  - A committed message leaves the sender's port as always (start s = R, the last byte at
 *    e = s + b/B, port free := e) and then passes each resource k of its path in turn: a fluid
 *    FIFO of capacity C_k, busy until F_k: F_k := max(F_k, s) + b/C_k, e := max(e, F_k). A resource
 *    with spare capacity adds nothing (e stays s + b/B while the flows through it need less than
 *    C_k); a saturated one spreads its flows out (n flows of b bytes through C take n b / C). It
 *    arrives at e + alpha. Uncontended, every time equals the executors' (tested bit for bit).
 *  - Torus routes (`routes`): dimension-order routing (Topology.route); every directed link of the
 *    route is a resource of capacity B, the first one being the sender's own egress port, so a
 *    chip's own sends and the traffic it forwards share its links.
 *
 * The send-buffer rule and deadlocks are the executors' business (they run the same programs with
 * data); a program that cannot complete here is reported with each blocked rank's pending op.
 * Closed-form cost() formulas stay uncontended: where contention slows a program, the simulated
 * time exceeds them (test/contention.test.ts measures by how much).
 */
import { ELEM_BYTES, type Op, type Program } from './ir.js';
import { enterStream, gpuReduces, ingressArrival, ingressFolds, leaveStream, localTimes, multicastTimes, recvTimes, sendOnLink, VClock } from './timing.js';
import type { Topology } from './topology.js';
import { KIND_CODES, TraceRecorder, type TraceEvent } from './trace.js';

export interface ContendedResult {
  rankTimes: Float64Array;
  time: number;
  events?: TraceEvent[];
  ops: number;
  /** per shared resource with traffic: name, bytes carried, and the time it was busy (seconds) */
  resources: { name: string; bytes: number; busy_s: number }[];
}

export class ContentionDeadlock extends Error {
  constructor(readonly pending: string[]) {
    super(`deadlock in the contention pass: every unfinished rank waits for a message that is never sent\n  ${pending.join('\n  ')}`);
    this.name = 'ContentionDeadlock';
  }
}

/** Min-heap of held sends keyed by (ready time, rank). */
class Heap {
  private t: number[] = [];
  private r: number[] = [];
  get size(): number { return this.t.length; }
  push(time: number, rank: number): void {
    const t = this.t, r = this.r;
    let i = t.length;
    t.push(time); r.push(rank);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (t[p]! < time || (t[p] === time && r[p]! < rank)) break;
      t[i] = t[p]!; r[i] = r[p]!;
      i = p;
    }
    t[i] = time; r[i] = rank;
  }
  pop(): number {
    const t = this.t, r = this.r;
    const top = r[0]!;
    const lt = t.pop()!, lr = r.pop()!;
    const n = t.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        const a = 2 * i + 1, b = a + 1;
        let m = i, mt = lt, mr = lr;
        if (a < n && (t[a]! < mt || (t[a] === mt && r[a]! < mr))) { m = a; mt = t[a]!; mr = r[a]!; }
        if (b < n && (t[b]! < mt || (t[b] === mt && r[b]! < mr))) { m = b; }
        if (m === i) break;
        t[i] = t[m]!; r[i] = r[m]!;
        i = m;
      }
      t[i] = lt; r[i] = lr;
    }
    return top;
  }
}

/** The shared resources of a topology: index space, names, capacities, and each pair's path. */
export class SharedResources {
  readonly names: string[] = [];
  readonly bw: number[] = [];
  /** torus routes: resource id of link (chip, port) = chip * nPorts + port */
  private readonly routes: boolean;
  private readonly levels: { size: number; up: number; down: number }[] = [];
  constructor(private readonly topo: Topology) {
    const c = topo.data.contention;
    this.routes = !!c?.routes && topo.isTorus;
    if (this.routes) {
      const ports = topo.portNames();
      const l = topo.data.links[0]!;
      for (let r = 0; r < topo.p; r++) for (let k = 0; k < topo.nPorts; k++) { this.names.push(`chip ${r} ${ports[k]}`); this.bw.push(l.bw); }
    }
    for (const lv of c?.levels ?? []) {
      const domains = Math.ceil(topo.p / lv.size);
      const up = this.names.length;
      for (let d = 0; d < domains; d++) { this.names.push(`${lv.name} ${d} up`); this.bw.push(lv.bw); }
      const down = this.names.length;
      for (let d = 0; d < domains; d++) { this.names.push(`${lv.name} ${d} down`); this.bw.push(lv.bw); }
      this.levels.push({ size: lv.size, up, down });
    }
  }
  get count(): number { return this.names.length; }
  /**
   * The shared resources a message src -> dst passes, in order: the uplinks of the sender's domains
   * it leaves, innermost first, then the downlinks of the receiver's, outermost first; a torus with
   * routes: every link of the route, the first being the sender's own egress port.
   */
  path(src: number, dst: number): number[] {
    const out: number[] = [];
    const t = this.topo;
    if (this.routes) {
      for (const link of t.route(src, dst)) out.push(link.chip * t.nPorts + link.port);
      return out;
    }
    if (this.levels.length && t.classOf(src, dst) !== t.data.intra) {
      for (const lv of this.levels) {
        const a = Math.floor(src / lv.size), b = Math.floor(dst / lv.size);
        if (a !== b) out.push(lv.up + a);
      }
      for (let i = this.levels.length - 1; i >= 0; i--) {
        const lv = this.levels[i]!;
        const a = Math.floor(src / lv.size), b = Math.floor(dst / lv.size);
        if (a !== b) out.push(lv.down + b);
      }
    }
    return out;
  }
  get torusRoutes(): boolean { return this.routes; }
}

const S_READY = 0, S_HELD = 1, S_BLOCKED = 2, S_DONE = 3;

/**
 * The virtual times of `programs` on `topo` with its shared resources (the header). `programs`:
 * arrays, or a function giving each rank's op stream (Algorithm.rankProgram).
 */
export function contendedTimes(
  programs: Program[] | ((rank: number) => Iterable<Op>), topo: Topology,
  opts: { peakFlops?: number; trace?: boolean } = {},
): ContendedResult {
  const p = topo.p;
  const peak = opts.peakFlops ?? topo.hw.peakFlops.bf16;
  const res = new SharedResources(topo);
  const free = new Float64Array(res.count);
  const carried = new Float64Array(res.count);
  const busy = new Float64Array(res.count);
  const ingress = topo.data.ingress === true;
  const tracer = opts.trace ? new TraceRecorder() : undefined;
  const clocks: VClock[] = [];
  const iters: Iterator<Op>[] = [];
  const cur: (Op | undefined)[] = new Array(p);
  const pc = new Int32Array(p);
  const state = new Int8Array(p);
  const waitOn = new Int32Array(p).fill(-1);
  // per directed pair (src * p + dst): arrivals of committed, not yet received messages (FIFO), and
  // the count posted so far (message index for the trace)
  const queues = new Map<number, { a: number[]; head: number; posted: number; consumed: number; path?: number[] }>();
  const pair = (s: number, d: number) => {
    const k = s * p + d;
    let q = queues.get(k);
    if (!q) queues.set(k, (q = { a: [], head: 0, posted: 0, consumed: 0 }));
    return q;
  };
  for (let r = 0; r < p; r++) {
    clocks.push(new VClock(topo.nPorts));
    const src = typeof programs === 'function' ? programs(r) : programs[r]!;
    if (!src) throw new Error(`no program for rank ${r}`);
    const it = src[Symbol.iterator]();
    iters.push(it);
    const n = it.next();
    cur[r] = n.done ? undefined : n.value;
  }
  const heap = new Heap();
  const ready: number[] = [];
  for (let r = p - 1; r >= 0; r--) ready.push(r);
  let ops = 0;
  const advance = (r: number) => {
    pc[r]!++;
    ops++;
    const n = iters[r]!.next();
    cur[r] = n.done ? undefined : n.value;
  };
  /** the held send's ready time: max(stream clock, its egress port free time) */
  const readyTime = (r: number, o: Op & { k: 'send' }): number => {
    const c = clocks[r]!;
    const swap = o.s === 1;
    const t = swap ? c.t1 : c.t;
    if (res.torusRoutes) {
      const first = pair(r, o.peer).path![0];
      return first === undefined ? t : Math.max(t, free[first]!);
    }
    return Math.max(t, c.portFree[topo.port(r, o.peer)]!);
  };
  /** commit rank r's current op, a send (the header's rule for its path) */
  const commitSend = (r: number, o: Op & { k: 'send' }) => {
    const c = clocks[r]!;
    const swap = o.s === 1;
    if (swap) enterStream(c, o);
    const peer = o.peer;
    const bytes = o.src.len * ELEM_BYTES;
    const q = pair(r, peer);
    q.path ??= res.path(r, peer);
    const path = q.path;
    let st: [number, number];
    const link = topo.link(r, peer);
    /** the message, leaving at s with its last byte on the wire at e, through path[from..]: the new e */
    const pass = (from: number, s: number, e: number): number => {
      for (let i = from; i < path.length; i++) {
        const k = path[i]!;
        const wk = bytes / res.bw[k]!;
        free[k] = Math.max(free[k]!, s) + wk;
        carried[k]! += bytes; busy[k]! += wk;
        if (free[k]! > e) e = free[k]!;
      }
      return e;
    };
    if (o.mc === true) st = multicastTimes(c);
    else if (res.torusRoutes && path.length > 0) {
      // every link of the route is shared; the first is the sender's port (start = max(t, free))
      const first = path[0]!;
      const s = Math.max(c.t, free[first]!);
      const w = bytes / link.bw;
      free[first] = s + w; carried[first]! += bytes; busy[first]! += w;
      st = [s, pass(1, s, s + w) + link.alpha];
      c.lastStart = st[0]; c.lastArrival = st[1];
    } else {
      st = sendOnLink(c, link, topo.port(r, peer), bytes);
      if (path.length > 0) {
        st = [st[0], pass(0, st[0], st[1] - link.alpha) + link.alpha];
        c.lastStart = st[0]; c.lastArrival = st[1];
      }
    }
    if (tracer) tracer.add(r, 0, peer, o.mc === true ? 0 : bytes, topo.classOf(r, peer), st[0], st[1], 0, 0, q.posted, 0, o.s ?? 0);
    q.posted++;
    q.a.push(st[1]);
    if (swap) leaveStream(c, o);
    if (state[peer] === S_BLOCKED && waitOn[peer] === r) { state[peer] = S_READY; waitOn[peer] = -1; ready.push(peer); }
    advance(r);
  };
  /** run rank r until it holds a shared send, blocks, or finishes */
  const run = (r: number) => {
    const c = clocks[r]!;
    for (;;) {
      const o = cur[r];
      if (o === undefined) { state[r] = S_DONE; return; }
      if (o.k === 'send') {
        if (o.mc !== true) {
          const q = pair(r, o.peer);
          q.path ??= res.path(r, o.peer);
          // a send over shared resources waits for its turn in start-time order
          if (q.path.length > 0) { state[r] = S_HELD; heap.push(readyTime(r, o), r); return; }
        }
        commitSend(r, o);
        continue;
      }
      const swap = o.s === 1;
      if (o.k === 'recv') {
        const q = pair(o.peer, r);
        if (q.head >= q.a.length) { state[r] = S_BLOCKED; waitOn[r] = o.peer; return; }
        let arrival = q.a[q.head++]!;
        if (q.head > 1024 && q.head * 2 > q.a.length) { q.a = q.a.slice(q.head); q.head = 0; }
        if (swap) enterStream(c, o);
        const bytes = o.dst.len * ELEM_BYTES;
        if (ingress) arrival = ingressArrival(c, topo.link(o.peer, r), topo.ingressPort(o.peer, r), arrival, bytes, ingressFolds(o));
        const rt = recvTimes(c, topo, arrival, bytes, gpuReduces(o));
        if (tracer) tracer.add(r, 1, o.peer, bytes, topo.classOf(o.peer, r), rt[0], rt[1], 0, 0, q.consumed, 0, o.s ?? 0);
        q.consumed++;
        if (swap) leaveStream(c, o);
        advance(r);
        continue;
      }
      if (swap) enterStream(c, o);
      const lt = localTimes(c, o, topo, peak);
      if (tracer && o.k !== 'wait') {
        const bytes = o.k === 'compute' ? o.bytes : o.k === 'copy' ? o.src.len * ELEM_BYTES : o.dst.len * ELEM_BYTES;
        tracer.add(r, KIND_CODES.indexOf(o.k), -1, bytes, -1, lt[0], lt[1], 0, 0, pc[r]!, 0, o.s ?? 0);
      }
      if (swap) leaveStream(c, o);
      advance(r);
    }
  };
  for (;;) {
    while (ready.length > 0) {
      const r = ready.pop()!;
      if (state[r] === S_READY) run(r);
    }
    if (heap.size === 0) break;
    const r = heap.pop();
    state[r] = S_READY;
    commitSend(r, cur[r] as Op & { k: 'send' });
    ready.push(r);
  }
  const pending: string[] = [];
  const rankTimes = new Float64Array(p);
  let time = 0;
  for (let r = 0; r < p; r++) {
    rankTimes[r] = clocks[r]!.end;
    if (rankTimes[r]! > time) time = rankTimes[r]!;
    if (state[r] === S_BLOCKED) pending.push(`rank ${r} at op ${pc[r]}: waits for a message from rank ${waitOn[r]}`);
  }
  if (pending.length) throw new ContentionDeadlock(pending);
  const resources: ContendedResult['resources'] = [];
  for (let k = 0; k < res.count; k++) if (carried[k]! > 0) resources.push({ name: res.names[k]!, bytes: carried[k]!, busy_s: busy[k]! });
  return { rankTimes, time, events: tracer?.events(), ops, resources };
}
