/**
 * The host's memory bandwidth as the emulator's ranks see it: both cores at once, each running the
 * native reduce kernel (native/kernels.c, streaming stores) over its own 64 MB arrays. A large run
 * (64 ranks x 64 MB) is bound by this figure, and on a shared VM it moves from minute to minute,
 * so bench/host.ts measures it right next to the run it explains. Also the memory traffic a set of
 * programs causes when executed with data, counted from its ops.
 */
import { Worker } from 'node:worker_threads';
import { ELEM_BYTES, type Program } from '../runtime/ir.js';
import { NATIVE, NATIVE_PATHS } from '../runtime/native.js';

/** Worker body (CommonJS, `eval: true`): reduce d = a + b `reps` times, report GB/s of memory traffic. */
const BANDWIDTH_JS = String.raw`
  const { parentPort, workerData } = require('node:worker_threads');
  const nk = require(workerData.path);
  const n = workerData.n;
  const f = () => new Float32Array(new SharedArrayBuffer(4 * n)).fill(1);
  const a = f(), b = f(), d = f();
  for (let i = 0; i < 3; i++) nk.reduce(d, 0, a, 0, b, 0, n, 0);
  const t0 = performance.now();
  for (let i = 0; i < workerData.reps; i++) nk.reduce(d, 0, a, 0, b, 0, n, 0);
  parentPort.postMessage((workerData.reps * 3 * 4 * n) / ((performance.now() - t0) / 1000) / 1e9);
`;

/**
 * GB/s of memory traffic (reads + writes) of `threads` threads at once, each reducing 64 MB arrays
 * `reps` times; undefined when the native kernels are not built (or are switched off).
 */
export async function parallelBandwidth(reps: number, threads = 2): Promise<number[] | undefined> {
  if (!NATIVE) return undefined;
  const n = (64 << 20) / 4;
  return Promise.all(Array.from({ length: threads }, () => new Promise<number>((resolve, reject) => {
    const w = new Worker(BANDWIDTH_JS, { eval: true, workerData: { path: NATIVE_PATHS.kernels, n, reps } });
    w.once('message', (g: number) => { void w.terminate(); resolve(g); });
    w.once('error', reject);
  })));
}

/**
 * Bytes of memory the executors read and write to run the programs once with data: a reducing
 * receive reads its accumulator and the message and writes the result (3 x its bytes), a copying
 * receive reads and writes (2 x), as do `copy` and `scale`; a local `reduce` 3 x. Padding messages
 * move nothing; sends are zero-copy (the receiver reads the sender's memory). Fused receive runs
 * (several reductions into one region in one pass) move less than this count.
 */
export function memoryTraffic(programs: readonly Program[]): number {
  let elems = 0;
  for (const prog of programs) {
    for (const o of prog) {
      if (o.k === 'recv') { if (!o.pad) elems += (o.op ? 3 : 2) * o.dst.len; }
      else if (o.k === 'copy' || o.k === 'scale') elems += 2 * o.dst.len;
      else if (o.k === 'reduce') elems += 3 * o.dst.len;
    }
  }
  return elems * ELEM_BYTES;
}
