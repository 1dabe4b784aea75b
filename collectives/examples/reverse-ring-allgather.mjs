// A user-written collective algorithm, run through the CLI with:
//   collemu bench allgather --algo-file collectives/examples/reverse-ring-allgather.mjs --topology flat --ranks 8
// It is a ring AllGather that sends to the LEFT neighbour instead of the right. It only uses the IR
// (runtime/ir.ts): per-rank lists of send / recv / copy ops over regions {buf, off, len} (float32
// elements) of the rank's 'in' / 'out' / 'tmp' buffers. collemu validates the programs, runs them on
// worker threads with real data, checks the result, and compares virtual time with cost().

/** @type {import('../types.js').Algorithm} */
const algorithm = {
  coll: 'allgather',
  name: 'reverse-ring',
  summary: 'ring AllGather towards the left neighbour (user example)',
  formula: '(p-1) a + (p-1)/p n B',
  build(spec) {
    const { p, count: c, inPlace } = spec;
    const blk = (i) => ({ buf: 'out', off: (((i % p) + p) % p) * c, len: c });
    const programs = [];
    for (let r = 0; r < p; r++) {
      const left = (r - 1 + p) % p, right = (r + 1) % p;
      const ops = [];
      // out-of-place: copy my input into my block of the output first
      if (!inPlace) ops.push({ k: 'copy', src: { buf: 'in', off: 0, len: c }, dst: blk(r) });
      for (let s = 0; s < p - 1; s++) {
        ops.push({ k: 'send', peer: left, src: blk(r + s) }); // the block I got last step
        ops.push({ k: 'recv', peer: right, dst: blk(r + s + 1) });
      }
      programs.push(ops);
    }
    return programs;
  },
  cost(spec, topo) {
    const { p, count: c, inPlace } = spec;
    if (p === 1) return inPlace ? 0 : c * 4 * topo.delta;
    const l = topo.slowestLink();
    return (inPlace ? 0 : c * 4 * topo.delta) + (p - 1) * (l.alpha + (c * 4) / l.bw);
  },
};
export default algorithm;
