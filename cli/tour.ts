/** `npm start`: a short tour of what collemu does. */
import { makeTopology } from '../runtime/topology.js';
import { footerLines, formatRow, headerLines, runBench } from './bench.js';

export async function runTour(): Promise<void> {
  const log = (s = '') => process.stdout.write(s + '\n');
  log('collemu tour 1/1: a checked 8-rank AllReduce on an emulated HGX H100 node');
  log('  8 worker threads = 8 GPUs; real Float32 data in SharedArrayBuffers; NVLink 4 modeled at 450 GB/s, 1 us;');
  log('  time = deterministic virtual microseconds; #wrong = elements that differ from the exact expected result.');
  log('  Same as: collemu bench allreduce --ranks 8 --topology hgx-h100 -b 1K -e 16M -f 4 -n 5 -w 1');
  log();
  const topo = makeTopology('hgx-h100', { ranks: 8 });
  const opts = { coll: 'allreduce' as const, topo, algo: 'auto', minBytes: 1024, maxBytes: 16 << 20, factor: 4, iters: 5, warmup: 1, check: true, op: 'sum' as const, root: 0, pace: 0 };
  for (const l of headerLines('collemu bench allreduce', opts, 'auto')) log(l);
  const { rows } = await runBench({ ...opts, onRow: (r) => log(formatRow(r)) });
  for (const l of footerLines(rows, true)) log(l);
}
