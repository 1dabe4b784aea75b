/**
 * Double binary tree AllReduce with pipelined chunks (NCCL's tree algorithm; Sanders, Speck &
 * Traeff 2009 for two-tree collectives).
 *
 * TREES. Tree A is the in-order binary tree over keys 1..p (key = rank + 1): a key k with lowest set
 * bit L has, in the infinite tree, height log2 L and parent k + L or k - L (whichever is an odd
 * multiple of 2L); parents beyond p are skipped by climbing further, so the root is
 * R = 2^floor(lg p) and the tree has height H = floor(lg p). Odd keys (even ranks) are the leaves,
 * even keys (odd ranks) are interior. Tree B is the same shape with key k held by rank k mod p
 * (a shift by one): its interior keys (even) are held by even ranks, so every rank is interior in
 * at most one tree. For even p each rank is interior in exactly one; for odd p rank 0 is a leaf
 * in both (the "double leaf"). Tree A reduces the first half of the vector, tree B the second.
 *
 * CHUNKS. Each half is cut into K = max(1, ceil(halfBytes / 128 KiB)) chunks (types.blocks), so
 * small messages travel as one chunk and large ones pipeline in 128 KiB pieces. (In this timing
 * model alpha is a latency, not a port occupancy, so more chunks only shorten the fill; 128 KiB is
 * in the range NCCL's tree uses and keeps the message count modest.)
 *
 * PROGRAM of a rank (like NCCL's runTreeUpDown: all of the reduce, then all of the broadcast):
 *  1. leaf sends: in each tree where the rank is a leaf (A before B), send all K chunks of the
 *     input to the parent. They depend on nothing, so they go out at time 0 and occupy the port
 *     for K chunk times; putting them first keeps the two trees independent.
 *  2. reduce up (interior tree): for each chunk, receive-reduce from the left child (acc = input),
 *     then the right child (acc = out), then send up; the root scales instead (avg).
 *  3. broadcast down (interior tree): for each chunk, receive from the parent (not the root), then
 *     send to the right child, then the left child.
 *  4. leaf receives: all chunks of the leaf tree(s) from the parent, last, so they never hold up
 *     the rank's interior-tree work.
 * No scratch: a rank writes only 'out' chunks after the messages that read them were consumed.
 * The reduction order is fixed by the tree (deterministic).
 *
 * COST (flat). s = chunk bytes, b' = s beta, g' = s gamma, d' = s delta, a = [op = avg],
 * H = floor(lg p), kR = children of the root (1 if p is a power of two, else 2). The critical path
 * is the left spine (leaf key 1, keys 2, 4, ..., R): its subtrees are complete, every spine node
 * has two children whose chunks arrive together, and with "right child first" the spine is the
 * second child at every level on the way down. Each resource is a pipeline stage: leaf port
 * (service b'), an interior node's clock (2 receive-reduces: 2g'), its port (b', but free only after
 * its K leaf sends: from K b'), the root's clock (kR g' + a d'). For a tandem pipeline the last
 * chunk leaves at (one chunk's latency) + (K-1) x (slowest stage), and a stage that only becomes
 * free at time T0 adds the start T0 + (latency from that stage on) + (K-1) x (slowest stage after it):
 *   L     = H (b' + alpha) + 2 (H-1) g' + kR g' + a d'                 one chunk, leaf to root
 *   Tup   = max( L + (K-1) max(b', 2g', kR g' + a d'),
 *                [H >= 2] K b' + L - (b' + alpha + 2g') + (K-1) max(b', [H>=3] 2g', kR g' + a d'),
 *                [p = 2^(H+1)-1] K b' + H (b' + alpha + g') + a d' + (K-1) max(b', 2g' + a d') )
 *   Tdown = kR b' + alpha + (H-1)(2b' + alpha) + (K-1) (p > 2 ? 2b' : b')
 *   T     = Tup + Tdown
 * The third Tup term is the double leaf of a complete tree (odd p = 2^(H+1)-1: 3, 7, 15, ...): it
 * sends its K tree-B chunks after its K tree-A chunks, so its parent (at full depth) gets the last
 * one a step late; it reaches each ancestor as the second child (one g' per level). For other odd p
 * the double leaf hangs under a shallower node (p = 1 mod 4: a node of height >= 2; p = 3 mod 4:
 * a height-1 node at depth popcount(p - R) - 1 <= H - 2) and is off the critical path.
 * Asymptotically T ~ 2 n beta + 2 H alpha: every interior rank sends each byte of its interior
 * half up once and down twice, plus its leaf half up once.
 * Other topologies: the same formula with the slowest link class the trees' edges cross (inter-node
 * on multi-node presets, cross-pod across llama3 pods). That is only an estimate, and a pessimistic
 * one: the trees are over ranks, most of their edges are intra-node, and intra/inter sends use
 * separate ports. Measured against the simulator (4 B - 256 MB; test/protocols.test.ts keeps the
 * bound), the formula is always above the simulated time: hgx-h100 2 nodes +67% .. +89%, 4 nodes
 * +29% .. +51%, 8 nodes +29% .. +39%; dgx-a100 2 nodes +67% .. +95%, 3 nodes +30% .. +78% (worst on
 * 2 nodes, where few tree edges cross the network but every level is charged as if they all did);
 * llama3 across pods (every edge at the 1:7 cross-pod share) +33% .. +130%.
 */
import type { Op, Program, Region } from '../../runtime/ir.js';
import type { Topology } from '../../runtime/topology.js';
import { blocks, inputRegion, outputRegion, type Algorithm, type CollSpec } from '../types.js';
import { slowestCrossed, type Traffic } from '../basic/common.js';
import { log2floor, singleRankCost, singleRankProgram } from './common.js';

/** Chunk target of the pipeline, bytes. */
export const TREE_CHUNK_BYTES = 128 * 1024;

/**
 * Number of chunks per half for a per-rank count. Under a scale-down by k (topology data.scale),
 * the chunk target shrinks by k too, so a scaled run keeps the full-size schedule.
 */
export function treeChunks(count: number, scale = 1): number {
  return Math.max(1, Math.ceil((Math.ceil(count / 2) * 4 * scale) / TREE_CHUNK_BYTES));
}

/** Parent key (0 for the root) of key k in the in-order binary tree over keys 1..p. */
export function inorderParent(k: number, p: number): number {
  const R = 1 << log2floor(p);
  let x = k;
  for (;;) {
    if (x === R) return 0;
    const L = x & -x;
    const up = (x / L) % 4 === 1 ? x + L : x - L;
    if (up <= p) return up;
    x = up;
  }
}

export interface TreeRole { parent: number; children: number[] }

/** The edges of both trees (child -> parent), as a traffic pattern (basic/common.ts). */
const treeTraffic = (p: number): Traffic => ({
  key: `double tree ${p}`,
  *pairs() { for (const roles of doubleTree(p)) for (let r = 0; r < p; r++) if (roles[r]!.parent >= 0) yield [r, roles[r]!.parent]; },
});

/**
 * Roles of every rank in trees A (t = 0) and B (t = 1): parent rank (-1 at the root) and children
 * ranks in key order (left first).
 */
export function doubleTree(p: number): TreeRole[][] {
  const trees: TreeRole[][] = [];
  for (let t = 0; t < 2; t++) {
    const rankOf = (k: number) => (t === 0 ? k - 1 : k % p);
    const roles: TreeRole[] = Array.from({ length: p }, () => ({ parent: -1, children: [] }));
    for (let k = 1; k <= p; k++) {
      const pk = inorderParent(k, p);
      if (pk === 0) continue;
      roles[rankOf(k)]!.parent = rankOf(pk);
      roles[rankOf(pk)]!.children.push(rankOf(k));
    }
    // keys were visited in increasing order, so children are already left-to-right
    trees.push(roles);
  }
  return trees;
}

export const treeAllreduce: Algorithm = {
  coll: 'allreduce',
  name: 'tree',
  summary: 'double binary tree (NCCL-style): each tree reduces half the vector up and broadcasts it down, pipelined in 128 KiB chunks',
  formula: "Tup + Tdown; Tup = max(L + (K-1) max(b', 2g', kR g' + d'), K b' + L - (b' + a + 2g') + (K-1) max(..), [p = 2^(H+1)-1] K b' + H(b' + a + g') + d' + (K-1) max(..)), "
    + "L = H(b' + a) + 2(H-1) g' + kR g' + d'; Tdown = kR b' + a + (H-1)(2b' + a) + (K-1) 2b'; "
    + 'H = floor(lg p), kR = root children, K chunks of s bytes per half (b\' = s B, g\' = s G, d\' = s D for avg)',
  build(spec: CollSpec, topo: Topology): Program[] {
    const { p, count: c, op } = spec;
    if (p === 1) return singleRankProgram(spec);
    const trees = doubleTree(p);
    const halves = blocks(c, 2);
    const K = treeChunks(c, topo.data.scale ?? 1);
    const chunkOf = halves.map((h) => blocks(h.len, K).map((b) => ({ off: h.off + b.off, len: b.len })));
    const ch = (reg: Region, t: number, i: number): Region => {
      const b = chunkOf[t]![i]!;
      return { buf: reg.buf, off: reg.off + b.off, len: b.len };
    };
    const progs: Program[] = [];
    for (let r = 0; r < p; r++) {
      const I = inputRegion(spec, r), O = outputRegion(spec, r);
      const ops: Op[] = [];
      progs.push(ops);
      const interior = [0, 1].filter((t) => trees[t]![r]!.children.length > 0);
      const leaf = [0, 1].filter((t) => trees[t]![r]!.children.length === 0);
      if (interior.length > 1) throw new Error(`tree: rank ${r} is interior in both trees`);
      // 1. leaf sends
      for (const t of leaf) for (let i = 0; i < K; i++) ops.push({ k: 'send', peer: trees[t]![r]!.parent, src: ch(I, t, i) });
      for (const t of interior) {
        const { parent, children } = trees[t]![r]!;
        // 2. reduce up
        for (let i = 0; i < K; i++) {
          children.forEach((q, j) => ops.push({ k: 'recv', peer: q, dst: ch(O, t, i), op, acc: ch(j === 0 ? I : O, t, i) }));
          if (parent >= 0) ops.push({ k: 'send', peer: parent, src: ch(O, t, i) });
          else if (op === 'avg') ops.push({ k: 'scale', dst: ch(O, t, i), factor: 1 / p });
        }
        // 3. broadcast down
        for (let i = 0; i < K; i++) {
          if (parent >= 0) ops.push({ k: 'recv', peer: parent, dst: ch(O, t, i) });
          for (let j = children.length - 1; j >= 0; j--) ops.push({ k: 'send', peer: children[j]!, src: ch(O, t, i) });
        }
      }
      // 4. leaf receives
      for (const t of leaf) for (let i = 0; i < K; i++) ops.push({ k: 'recv', peer: trees[t]![r]!.parent, dst: ch(O, t, i) });
    }
    return progs;
  },
  cost(spec: CollSpec, topo: Topology): number {
    const { p, count: c } = spec;
    if (p === 1) return singleRankCost(spec, topo);
    const K = treeChunks(c, topo.data.scale ?? 1);
    const s = Math.ceil(Math.ceil(c / 2) / K) * 4;
    // the slowest link class the trees' edges cross (inter-node on multi-node presets, cross-pod
    // across llama3 pods; on flat and one node: the one link)
    const l = p > topo.data.gpusPerNode ? slowestCrossed(topo, treeTraffic(p)) : topo.data.links[topo.data.intra]!;
    const alpha = l.alpha;
    const b = s / l.bw, g = s * topo.data.gamma, d = spec.op === 'avg' ? s * topo.data.delta : 0;
    const H = log2floor(p);
    const kR = (p & (p - 1)) === 0 ? 1 : 2;
    const root = kR * g + d;
    const L = H * (b + alpha) + 2 * (H - 1) * g + root;
    let up = L + (K - 1) * Math.max(b, H >= 2 ? 2 * g : 0, root);
    if (H >= 2) up = Math.max(up, K * b + L - (b + alpha + 2 * g) + (K - 1) * Math.max(b, H >= 3 ? 2 * g : 0, root));
    if (p === (1 << (H + 1)) - 1) up = Math.max(up, K * b + H * (b + alpha + g) + d + (K - 1) * Math.max(b, 2 * g + d));
    const down = kR * b + alpha + (H - 1) * (2 * b + alpha) + (K - 1) * (p > 2 ? 2 * b : b);
    return up + down;
  },
};
