/** Messages between the cluster (main thread) and its rank workers. */
import type { MessagePort } from 'node:worker_threads';
import type { CollSpec } from '../collectives/types.js';
import type { DescTable } from './control.js';
import type { Program } from './ir.js';
import type { TopologyData } from './topology.js';

/** Byte offsets of each named buffer inside every rank's memory (same layout on every rank). */
export interface BufferLayout { in: number; out: number; tmp: number; stage: number }

export interface RunJob {
  kind: 'run';
  id: number;
  program: Program;
  layout: BufferLayout;
  /** new memories of all ranks, when they changed since the last job */
  mems?: WebAssembly.Memory[];
  /** message descriptor slots for this job's programs (runtime/control.ts) */
  desc: DescTable;
  /** topology, when it changed */
  topo?: TopologyData;
  warmup: number;
  iters: number;
  /** fill inputs with the bench pattern (collectives/pattern.ts) before warm-up, and check a fresh run */
  pattern?: CollSpec;
  /** move no data (timing, ordering and deadlock behaviour only; buffers are accounted, not backed) */
  timingOnly: boolean;
  check: boolean;
  trace: boolean;
  /** wall-clock dilation: 0 = no pacing; d > 0: wall time tracks virtual time x d */
  pace: number;
  /** spin iterations before blocking in Atomics.wait (adaptive: only while awake ranks <= cores) */
  spin: number;
  /** host cores available to the ranks */
  cores: number;
  /** use WASM SIMD kernels (true) or plain JS */
  simd: boolean;
  /** use the native kernels (runtime/native.ts) where they are built (only with simd) */
  native: boolean;
  /** ms since epoch, origin of host times in traces */
  epoch: number;
}

export interface ShutdownJob { kind: 'shutdown' }
export type Job = RunJob | ShutdownJob;

export interface RankResult {
  rank: number;
  id: number;
  /** virtual time at the end of one iteration (identical for every iteration) */
  vtime: number;
  /** host wall time per timed iteration, ms */
  hostMs: number;
  wrong: number;
  maxErr: number;
  /** receives whose data a fused run did (runtime/worker.ts fuse()) */
  fused?: number;
  /** packed trace events (runtime/trace.ts TRACE_STRIDE floats each) */
  trace?: Float64Array;
  error?: string;
  aborted?: boolean;
}

export interface InitMessage {
  rank: number;
  p: number;
  control: SharedArrayBuffer;
  port: MessagePort;
}
