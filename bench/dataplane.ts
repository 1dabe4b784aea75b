/**
 * Data-plane micro-benchmarks (tinybench) on this machine:
 *   (a) local reduce (sum) throughput, plain JS (runtime/reduce.ts) vs WASM SIMD (runtime/kernels.ts),
 *       64 MB and 256 KB buffers, in GB/s of dst bytes (the memory traffic is 3x that);
 *   (b) memcpy with TypedArray.set between two SharedArrayBuffers, 64 MB and 256 KB;
 *   (c) "staged reduce" of a 64 MB source that lives in ANOTHER shared memory (another rank): copy
 *       64 KB slices into a staging area of the local memory then WASM-reduce each slice, vs a
 *       direct JS reduce that reads the other memory in place;
 *   (d) cross-thread hand-off latency through a SharedArrayBuffer: two-worker round trip with
 *       Atomics.wait/notify, pure spinning, spin-then-wait; and a token passed around a ring of 8
 *       workers on this machine's cores (per-hop latency), wait vs spin-then-wait;
 *   (e) the native kernels (native/kernels.c, when built): reduce from another memory in place,
 *       memcpy between memories, and one fused pass over 7 sources (reduceMany) vs 7 reduce calls,
 *       which is what a fused run of receives (runtime/worker.ts fuse()) saves.
 *
 *   node dist/bench/dataplane.js [--quick]
 * or `runDataplaneBench({ quick })`, which returns the table text.
 */
import { availableParallelism, cpus } from 'node:os';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { Bench } from 'tinybench';
import { createKernels, REDUCE_OPCODE, type Kernels } from '../runtime/kernels.js';
import { NATIVE } from '../runtime/native.js';
import { reduceJs } from '../runtime/reduce.js';
import { parallelBandwidth } from './membw.js';

const MB = 1024 * 1024;
const KB = 1024;
const PAGE = 65536;

interface Row { section: string; name: string; value: string; detail: string }

function sharedMemory(bytes: number): WebAssembly.Memory {
  const pages = Math.max(1, Math.ceil(bytes / PAGE));
  return new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
}

/** ordinary values in [-1, 1) (no denormals: they would measure the FPU's slow path, not the data plane) */
function fillRandom(f: Float32Array, seed: number): void {
  let s = seed >>> 0;
  for (let i = 0; i < f.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    f[i] = s / 2147483648 - 1;
  }
}

function fmtBytes(b: number): string {
  return b >= MB ? `${b / MB} MB` : `${b / KB} KB`;
}

// ------------------------------------------------------------------------------ throughput (tinybench)

interface ThroughputCase { name: string; bytes: number; fn: () => void }

async function throughput(section: string, cases: ThroughputCase[], quick: boolean, rows: Row[]): Promise<void> {
  const bench = new Bench({
    name: section,
    time: quick ? 150 : 1000,
    iterations: quick ? 4 : 16,
    warmupTime: quick ? 50 : 250,
    warmupIterations: quick ? 2 : 8,
    throws: true,
  });
  for (const c of cases) bench.add(c.name, c.fn, { async: false });
  await bench.run();
  for (const c of cases) {
    const r = bench.getTask(c.name)!.result;
    if (r.state !== 'completed' && r.state !== 'aborted-with-statistics') {
      rows.push({ section, name: c.name, value: 'n/a', detail: r.state });
      continue;
    }
    const l = r.latency;
    const gbs = c.bytes / (l.p50 * 1e6); // ms -> GB/s (1e9 bytes)
    rows.push({
      section,
      name: c.name,
      value: `${gbs.toFixed(2)} GB/s`,
      detail: `median ${fmtTime(l.p50 * 1e3)} per call, ±${l.rme.toFixed(1)}%, ${l.samplesCount} samples`,
    });
  }
}

function fmtTime(us: number): string {
  if (us >= 1000) return `${(us / 1000).toFixed(2)} ms`;
  if (us >= 1) return `${us.toFixed(2)} us`;
  return `${(us * 1000).toFixed(0)} ns`;
}

async function sectionReduce(quick: boolean, rows: Row[]): Promise<void> {
  const cases: ThroughputCase[] = [];
  for (const bytes of [64 * MB, 256 * KB]) {
    const n = bytes / 4;
    const mem = sharedMemory(3 * bytes);
    const kw = createKernels(mem, { impl: 'wasm-simd' });
    const f = new Float32Array(mem.buffer);
    const d = f.subarray(0, n);
    const a = f.subarray(n, 2 * n);
    const b = f.subarray(2 * n, 3 * n);
    fillRandom(a, 1);
    fillRandom(b, 2);
    cases.push({ name: `JS reduceJs sum, ${fmtBytes(bytes)}`, bytes, fn: () => reduceJs(d, a, b, 'sum') });
    cases.push({ name: `WASM SIMD reduce sum, ${fmtBytes(bytes)}`, bytes, fn: () => kw.reduce(0, bytes, 2 * bytes, n, 'sum') });
  }
  await throughput('(a) local reduce, GB/s of dst', cases, quick, rows);
}

async function sectionMemcpy(quick: boolean, rows: Row[]): Promise<void> {
  const cases: ThroughputCase[] = [];
  for (const bytes of [64 * MB, 256 * KB]) {
    const src = new Float32Array(new SharedArrayBuffer(bytes));
    const dst = new Float32Array(new SharedArrayBuffer(bytes));
    fillRandom(src, 3);
    cases.push({ name: `TypedArray.set SAB->SAB, ${fmtBytes(bytes)}`, bytes, fn: () => dst.set(src) });
  }
  await throughput('(b) memcpy, GB/s', cases, quick, rows);
}

async function sectionStaged(quick: boolean, rows: Row[]): Promise<void> {
  const bytes = 64 * MB;
  const n = bytes / 4;
  const STAGE = 256 * KB; // staging area at the start of the local memory
  const local = sharedMemory(STAGE + bytes);
  const remote = sharedMemory(bytes);
  const k: Kernels = createKernels(local, { impl: 'wasm-simd' });
  const lf = new Float32Array(local.buffer);
  const rf = new Float32Array(remote.buffer, 0, n);
  const dstOff = STAGE; // bytes
  const dst = lf.subarray(dstOff / 4, dstOff / 4 + n);
  fillRandom(dst, 4);
  fillRandom(rf, 5);
  const staged = (slice: number) => () => {
    const m = slice / 4;
    const stage = lf.subarray(0, m);
    for (let e = 0; e < n; e += m) {
      const len = Math.min(m, n - e);
      stage.set(rf.subarray(e, e + len));
      k.reduce(dstOff + 4 * e, dstOff + 4 * e, 0, len, 'sum');
    }
  };
  await throughput(
    '(c) reduce a 64 MB source from another memory into local dst, GB/s of dst',
    [
      { name: 'staged: copy 64 KB slices + WASM reduce', bytes, fn: staged(64 * KB) },
      { name: 'staged: copy 256 KB slices + WASM reduce', bytes, fn: staged(256 * KB) },
      { name: 'direct: JS reduceJs reading the other memory', bytes, fn: () => reduceJs(dst, dst, rf, 'sum') },
    ],
    quick,
    rows,
  );
}

async function sectionNative(quick: boolean, rows: Row[]): Promise<void> {
  const sec = '(e) native kernels (native/kernels.c), GB/s of dst (of sources for the 7-source rows)';
  const nk = NATIVE;
  if (!nk) {
    rows.push({ section: sec, name: 'native kernels', value: 'n/a', detail: 'not built, or COLLEMU_NO_NATIVE_KERNELS set' });
    return;
  }
  const SUM = REDUCE_OPCODE.sum;
  const cases: ThroughputCase[] = [];
  for (const bytes of [64 * MB, 256 * KB]) {
    const n = bytes / 4;
    const local = new Float32Array(new SharedArrayBuffer(bytes));
    const remote = new Float32Array(new SharedArrayBuffer(bytes));
    fillRandom(local, 6);
    fillRandom(remote, 7);
    cases.push({ name: `reduce sum from another memory, ${fmtBytes(bytes)}`, bytes, fn: () => nk.reduce(local, 0, local, 0, remote, 0, n, SUM) });
    cases.push({ name: `copy from another memory, ${fmtBytes(bytes)}`, bytes, fn: () => nk.copy(local, 0, remote, 0, n) });
  }
  // 7 peers' 8 MB messages into one region (an 8-rank one-shot reduction): fused vs one by one
  const bytes = 8 * MB;
  const n = bytes / 4;
  const dst = new Float32Array(new SharedArrayBuffer(bytes));
  const srcs = Array.from({ length: 7 }, (_, k) => {
    const f = new Float32Array(new SharedArrayBuffer(bytes));
    fillRandom(f, 10 + k);
    return f;
  });
  const zeros = srcs.map(() => 0);
  fillRandom(dst, 9);
  // counted in source bytes (56 MB): what both variants reduce
  cases.push({ name: '7 x 8 MB sources into one region: 7 reduce calls', bytes: 7 * bytes, fn: () => { for (const s of srcs) nk.reduce(dst, 0, dst, 0, s, 0, n, SUM); } });
  cases.push({ name: '7 x 8 MB sources into one region: one reduceMany', bytes: 7 * bytes, fn: () => nk.reduceMany(dst, 0, dst, 0, srcs, zeros, n, SUM) });
  await throughput(sec, cases, quick, rows);
  // both cores at once: the memory bandwidth the ranks of a large run share
  const reps = quick ? 10 : 40;
  const gbs = (await parallelBandwidth(reps, 2))!;
  const total = gbs[0]! + gbs[1]!;
  rows.push({
    section: sec, name: '2 threads at once, each reduce sum 64 MB', value: `${(total / 3).toFixed(2)} GB/s`,
    detail: `of dst in all; memory traffic ${total.toFixed(1)} GB/s (${gbs.map((g) => g.toFixed(1)).join(' + ')}), ${reps} calls each`,
  });
}

// ------------------------------------------------------------------------------ hand-off latency (workers)

/**
 * Worker body (CommonJS, run with `eval: true` so it works from dist/ and from vitest alike).
 * Slots are Int32 sequence numbers 64 bytes apart (no false sharing). A slot's value only grows,
 * so Atomics.wait(slot, current) cannot miss a wake-up; -1 tells the waiter to stop.
 *   mode 'wait'      : Atomics.wait until the slot reaches the value; the writer always notifies.
 *   mode 'spin'      : busy-poll Atomics.load; the writer does not notify.
 *   mode 'spin-wait' : poll `spin` times, then Atomics.wait; the writer always notifies.
 * Worker 0 measures, in time-bounded batches, and reports in ms.
 */
const WORKER_JS = String.raw`
const { workerData: w, parentPort } = require('node:worker_threads');
const a = new Int32Array(w.sab);
const mode = w.mode, spin = w.spin | 0, notify = mode !== 'spin';
const slot = (i) => i * 16;
const STOP = -1;
/** true when the slot reached v, false when told to stop */
function waitFor(s, v) {
  let cur;
  if (mode === 'spin') {
    while ((cur = Atomics.load(a, s)) !== v) if (cur === STOP) return false;
    return true;
  }
  if (mode === 'spin-wait') {
    for (let k = 0; k < spin; k++) { cur = Atomics.load(a, s); if (cur === v) return true; if (cur === STOP) return false; }
  }
  for (;;) {
    cur = Atomics.load(a, s);
    if (cur === v) return true;
    if (cur === STOP) return false;
    Atomics.wait(a, s, cur);
  }
}
function post(s, v) { Atomics.store(a, s, v); if (notify) Atomics.notify(a, s, 1); }

if (w.kind === 'pingpong') {
  // worker 0 pings slot 0 and waits for the pong in slot 1; worker 1 answers.
  // Batches of >= batchMs each; batch 0 (includes worker 1's start-up) is warm-up.
  let seq = 0;
  if (w.id === 0) {
    const times = [];
    for (let b = 0; b < w.batches; b++) {
      const t0 = performance.now();
      let k = 0, el;
      for (;;) {
        for (let i = 0; i < 16; i++) { seq++; post(slot(0), seq); waitFor(slot(1), seq); }
        k += 16;
        el = performance.now() - t0;
        if (el >= w.batchMs) break;
      }
      times.push({ perOp: el / k, ops: k });
    }
    post(slot(0), STOP);
    parentPort.postMessage({ batches: times.slice(1) });
  } else {
    for (;;) { seq++; if (!waitFor(slot(0), seq)) break; post(slot(1), seq); }
  }
} else {
  // ring of P: the token is the hop number h, written into the slot of the worker that gets it.
  // Worker 0 starts with hop 1; after W warm-up rounds (P hops each) it times rounds until
  // budgetMs has passed, then stops everybody.
  const P = w.p, W = w.warm, id = w.id;
  if (id === 0) {
    post(slot(1), 1);
    let t0 = 0, perHop = 0, hops = 0;
    for (let r = 1; ; r++) {
      waitFor(slot(0), r * P);
      if (r === W) t0 = performance.now();
      else if (r > W) {
        const el = performance.now() - t0;
        if (el >= w.budgetMs) { hops = (r - W) * P; perHop = el / hops; break; }
      }
      post(slot(1), r * P + 1);
    }
    for (let j = 1; j < P; j++) post(slot(j), STOP);
    parentPort.postMessage({ perHop, hops });
  } else {
    for (let r = 0; ; r++) { const h = id + r * P; if (!waitFor(slot(id), h)) break; post(slot((id + 1) % P), h + 1); }
  }
}
`;

interface WorkerResult { batches?: { perOp: number; ops: number }[]; perHop?: number; hops?: number }

/** Start `count` workers on one fresh SharedArrayBuffer; resolve with worker 0's result (ms units). */
function runWorkers(count: number, data: Record<string, unknown>, timeoutMs: number): Promise<WorkerResult | 'timeout'> {
  const sab = new SharedArrayBuffer(64 * (count + 1));
  const workers: Worker[] = [];
  return new Promise<WorkerResult | 'timeout'>((resolvePromise, reject) => {
    let result: WorkerResult | undefined;
    let exited = 0;
    let settled = false;
    const finish = (v: WorkerResult | 'timeout' | Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (v instanceof Error) reject(v);
      else resolvePromise(v);
    };
    const timer = setTimeout(() => {
      for (const w of workers) void w.terminate();
      finish('timeout');
    }, timeoutMs);
    for (let id = 0; id < count; id++) {
      const w = new Worker(WORKER_JS, { eval: true, workerData: { ...data, sab, id } });
      workers.push(w);
      w.on('message', (m: WorkerResult) => {
        if (id === 0) result = m;
      });
      w.on('error', (e) => {
        for (const o of workers) void o.terminate();
        finish(e);
      });
      w.on('exit', () => {
        if (++exited === count && result) finish(result);
      });
    }
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((x, y) => x - y);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Per-operation cost of the primitives the hand-off is built from (single thread, batched). */
async function sectionPrimitives(quick: boolean, rows: Row[]): Promise<void> {
  const a = new Int32Array(new SharedArrayBuffer(64));
  const N = 10_000;
  let sink = 0;
  const cases: { name: string; fn: () => void }[] = [
    { name: 'Atomics.load (one spin-poll iteration)', fn: () => { for (let k = 0; k < N; k++) if (Atomics.load(a, 0) === -1) sink++; } },
    { name: 'Atomics.store', fn: () => { for (let k = 0; k < N; k++) Atomics.store(a, 0, k); } },
    { name: 'Atomics.notify, nobody waiting', fn: () => { for (let k = 0; k < N; k++) sink += Atomics.notify(a, 0, 1); } },
  ];
  const bench = new Bench({ time: quick ? 100 : 500, iterations: 8, warmupTime: quick ? 30 : 100, throws: true });
  for (const c of cases) bench.add(c.name, c.fn, { async: false });
  await bench.run();
  for (const c of cases) {
    const r = bench.getTask(c.name)!.result;
    if (r.state !== 'completed' && r.state !== 'aborted-with-statistics') continue;
    rows.push({ section: '(d0) primitives, one thread', name: c.name, value: `${((r.latency.p50 * 1e6) / N).toFixed(1)} ns /op`, detail: `median of ${r.latency.samplesCount} batches of ${N}` });
  }
  void sink;
}

async function sectionLatency(quick: boolean, rows: Row[]): Promise<void> {
  const spins = [100, 1000, 10000];
  const sec = '(d) cross-thread hand-off via SharedArrayBuffer (spin N = N Atomics.load polls, see d0)';
  const batches = quick ? 4 : 11;
  const batchMs = quick ? 25 : 60;
  const pp = async (label: string, mode: string, spin: number) => {
    const r = await runWorkers(2, { kind: 'pingpong', mode, spin, batches, batchMs }, 60_000);
    if (r === 'timeout' || !r.batches) {
      rows.push({ section: sec, name: label, value: 'timeout', detail: '' });
      return;
    }
    const per = r.batches.map((b) => b.perOp * 1e3);
    const ops = r.batches.reduce((t, b) => t + b.ops, 0);
    rows.push({
      section: sec,
      name: label,
      value: `${fmtTime(median(per))} /round trip`,
      detail: `median of ${per.length} batches (${ops} round trips); range ${fmtTime(Math.min(...per))}..${fmtTime(Math.max(...per))}`,
    });
  };
  await pp('2 workers round trip, Atomics.wait/notify', 'wait', 0);
  await pp('2 workers round trip, pure spin', 'spin', 0);
  for (const s of spins) await pp(`2 workers round trip, spin ${s} then wait`, 'spin-wait', s);

  const P = 8;
  const ring = async (label: string, mode: string, spin: number, warm: number, budgetMs: number) => {
    const timeoutMs = 60_000;
    const r = await runWorkers(P, { kind: 'ring', mode, spin, p: P, warm, budgetMs }, timeoutMs);
    if (r === 'timeout' || r.perHop === undefined) {
      rows.push({ section: sec, name: label, value: 'timeout', detail: `> ${timeoutMs / 1000} s` });
      return;
    }
    rows.push({ section: sec, name: label, value: `${fmtTime(r.perHop * 1e3)} /hop`, detail: `${r.hops} timed hops` });
  };
  const budget = quick ? 100 : 500;
  await ring(`ring of ${P} workers, Atomics.wait/notify`, 'wait', 0, 20, budget);
  for (const s of spins) await ring(`ring of ${P} workers, spin ${s} then wait`, 'spin-wait', s, 20, budget);
  if (!quick) await ring(`ring of ${P} workers, pure spin (oversubscribed)`, 'spin', 0, 2, 2000);
}

// ------------------------------------------------------------------------------ report

function formatTable(rows: Row[], header: string): string {
  const w1 = Math.max(...rows.map((r) => r.name.length));
  const w2 = Math.max(...rows.map((r) => r.value.length));
  const out = [header];
  let section = '';
  for (const r of rows) {
    if (r.section !== section) {
      section = r.section;
      out.push('', section);
    }
    out.push(`  ${r.name.padEnd(w1)}  ${r.value.padStart(w2)}  ${r.detail}`);
  }
  return out.join('\n');
}

export async function runDataplaneBench(opts: { quick?: boolean } = {}): Promise<string> {
  const quick = opts.quick ?? false;
  const rows: Row[] = [];
  await sectionReduce(quick, rows);
  await sectionMemcpy(quick, rows);
  await sectionStaged(quick, rows);
  await sectionNative(quick, rows);
  await sectionPrimitives(quick, rows);
  await sectionLatency(quick, rows);
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  const header = `data plane on ${availableParallelism()} cores (${cpu}), Node ${process.version}${quick ? ', quick' : ''}; throughput = median of tinybench samples`;
  return formatTable(rows, header);
}

const isMain = process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  console.log(await runDataplaneBench({ quick: process.argv.includes('--quick') }));
}
