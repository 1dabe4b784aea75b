/** `npm start`: a short tour of what collemu does. */
import { makeTopology } from '../runtime/topology.js';
import { runTraining } from '../parallelism/train/train.js';
import { footerLines, formatRow, headerLines, runBench } from './bench.js';
import { formatTrain } from './train.js';
import { predictStep } from '../parallelism/predict/index.js';
import { predictionLines } from './predict.js';
import { diminishingReturnsRows, formatDiminishingReturns } from '../scenarios/diminishing-returns.js';

export interface TourPart {
  title: string;
  run: (log: (s?: string) => void) => Promise<void>;
}

export const TOUR_PARTS: TourPart[] = [
  {
    title: 'a checked 8-rank AllReduce on an emulated HGX H100 node',
    async run(log) {
      log('  8 worker threads = 8 GPUs; real Float32 data in SharedArrayBuffers; NVLink 4 modeled at 450 GB/s, 1 us;');
      log('  time = deterministic virtual microseconds; #wrong = elements that differ from the exact expected result.');
      log('  Same as: collemu bench allreduce --ranks 8 --topology hgx-h100 -b 1K -e 16M -f 4 -n 5 -w 1');
      log();
      const topo = makeTopology('hgx-h100', { ranks: 8 });
      const opts = { coll: 'allreduce' as const, topo, algo: 'auto', minBytes: 1024, maxBytes: 16 << 20, factor: 4, iters: 5, warmup: 1, check: true, op: 'sum' as const, root: 0, pace: 0 };
      for (const l of headerLines('collemu bench allreduce', opts, 'auto')) log(l);
      const { rows } = await runBench({ ...opts, onRow: (r) => log(formatRow(r)) });
      for (const l of footerLines(rows, true)) log(l);
    },
  },
  {
    title: 'a 4D-parallel training run (dp=2 x cp=2 x pp=2 x tp=2, 16 ranks) with parity against the serial run',
    async run(log) {
      log('  16 worker threads train the tiny Llama-style model: TP splits heads and the MLP, CP runs ring attention,');
      log('  PP runs 1F1B over 2 stages, DP all-reduces gradients; every loss and parameter is compared with one rank.');
      log('  Same as: collemu train --mesh dp=2,cp=2,pp=2,tp=2 --microbatches 2 --steps 3');
      log();
      const optimizer = { kind: 'sgd' as const, lr: 1 };
      const r = await runTraining({ model: 'tiny', mesh: 'dp=2,cp=2,pp=2,tp=2', microbatches: 2, steps: 3, optimizer });
      const lines = formatTrain(r, optimizer);
      // the per-rank memory table is long for 16 ranks: keep the first two rows
      const memStart = lines.findIndex((l) => l.startsWith('#  rank'));
      for (let i = 0; i < lines.length; i++) {
        if (i > memStart + 2 && i <= memStart + r.world) {
          if (i === memStart + 3) log(`      ... (${r.world - 2} more ranks)`);
          continue;
        }
        log(lines[i]);
      }
    },
  },
  {
    title: 'Llama 3 405B on 16,384 H100s: predicted step time, MFU and memory (published: 41% MFU)',
    async run(log) {
      log('  The analytic step model prices every collective of the step on the link classes its process group crosses');
      log('  (TP inside a node on NVLink, DP across pods at 1:7), runs the pipeline schedule on the simulator and adds');
      log('  compute from the GEMM shapes. Same as: collemu predict --model llama3-405b --gpu h100 --gpus 16384');
      log('  --cluster llama3 --tp 8 --pp 16 --dp 128 --seq 8192 --global-batch 2048 --zero 1 --sequence-parallel --vpp 8');
      log('  --activation-memory lean (one stored tensor per pointwise chain, as a compiled backward keeps)');
      log();
      const p = predictStep({
        model: 'llama3-405b', gpu: 'h100', gpus: 16384, cluster: 'llama3', tp: 8, pp: 16, dp: 128, seq: 8192, globalBatch: 2048,
        zero: 1, sequenceParallel: true, vpp: 8, activationMemory: 'lean',
      });
      const lines = predictionLines(p);
      // the headline and the breakdown; the per-collective detail is in `collemu predict`
      const end = lines.findIndex((l) => l.trim().startsWith('pipeline:'));
      for (const l of lines.slice(0, end < 0 ? lines.length : end)) log(l);
      if (!p.fits_in_memory) {
        log('  (memory: the activation model puts this layout above the usable HBM, although Llama 3 trained it; see README, predict)');
      }
    },
  },
  {
    title: 'diminishing returns: strong scaling Llama 3 8B from 1 node to 2,048 H100s, naive data parallelism vs the planner',
    async run(log) {
      log('  A fixed model and global batch (1,024 sequences of 512 tokens) on more and more GPUs, on nodes with one 400G NIC');
      log('  each: with pure data parallelism the per-step DP collectives stay constant while each GPU computes less, so MFU');
      log('  collapses (last column: the same on rail-optimized HGX H100, 8 NICs per node); the planner\'s best layout (TP / PP');
      log('  shrink the DP group) holds up longer. Same as: collemu scenario run diminishing-returns');
      log();
      for (const l of formatDiminishingReturns(diminishingReturnsRows())) log(l);
    },
  },
];

export async function runTour(): Promise<void> {
  const log = (s = '') => process.stdout.write(s + '\n');
  const n = TOUR_PARTS.length;
  for (let i = 0; i < n; i++) {
    if (i > 0) log();
    log(`collemu tour ${i + 1}/${n}: ${TOUR_PARTS[i]!.title}`);
    await TOUR_PARTS[i]!.run(log);
  }
}
