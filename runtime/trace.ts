/**
 * One trace event format for every executor, and its Chrome trace-event JSON export (opens in
 * Perfetto / chrome://tracing): one process per rank, thread 0 = the rank's stream (recv, copy,
 * reduce, compute), thread 1+k = egress port k (sends on the wire), flow arrows send -> recv.
 * Times in events are seconds (virtual); host times are milliseconds of wall clock.
 */
import { writeFileSync } from 'node:fs';
import { pack } from 'msgpackr';
import type { OpKind } from './ir.js';

export interface TraceEvent {
  rank: number;
  kind: OpKind;
  /** peer rank for send/recv, else -1 */
  peer: number;
  bytes: number;
  /** link class index for send/recv, else -1 */
  link: number;
  /** virtual start / end, seconds. For a send: transmission start and arrival at the peer. */
  vStart: number;
  vEnd: number;
  /** host wall clock (ms, performance.now() of the executing thread's process) */
  hStart: number;
  hEnd: number;
  /** per directed pair message index (send/recv), used to draw flows; for local ops the op's index in its program */
  msg: number;
  /** iteration / step number */
  iter: number;
  /** the op's stream (0 compute, 1 communication) */
  stream: number;
  label?: string;
}

/** Number of float64 slots per event in the packed form used to move events between threads. */
export const TRACE_STRIDE = 12;
export const KIND_CODES: OpKind[] = ['send', 'recv', 'copy', 'reduce', 'scale', 'compute'];

export function unpackTrace(buf: Float64Array, n: number): TraceEvent[] {
  const out: TraceEvent[] = [];
  for (let i = 0; i < n; i++) {
    const b = i * TRACE_STRIDE;
    out.push({
      rank: buf[b]!, kind: KIND_CODES[buf[b + 1]!]!, peer: buf[b + 2]!, bytes: buf[b + 3]!, link: buf[b + 4]!,
      vStart: buf[b + 5]!, vEnd: buf[b + 6]!, hStart: buf[b + 7]!, hEnd: buf[b + 8]!, msg: buf[b + 9]!, iter: buf[b + 10]!, stream: buf[b + 11]!,
    });
  }
  return out;
}

/** Growable packed trace buffer (used inside executors). */
export class TraceRecorder {
  buf = new Float64Array(TRACE_STRIDE * 256);
  n = 0;
  add(rank: number, kind: number, peer: number, bytes: number, link: number, vStart: number, vEnd: number,
      hStart: number, hEnd: number, msg: number, iter: number, stream = 0): void {
    if ((this.n + 1) * TRACE_STRIDE > this.buf.length) {
      const nb = new Float64Array(this.buf.length * 2);
      nb.set(this.buf);
      this.buf = nb;
    }
    const b = this.n * TRACE_STRIDE;
    const a = this.buf;
    a[b] = rank; a[b + 1] = kind; a[b + 2] = peer; a[b + 3] = bytes; a[b + 4] = link;
    a[b + 5] = vStart; a[b + 6] = vEnd; a[b + 7] = hStart; a[b + 8] = hEnd; a[b + 9] = msg; a[b + 10] = iter; a[b + 11] = stream;
    this.n++;
  }
  events(): TraceEvent[] { return unpackTrace(this.buf, this.n); }
  packed(): Float64Array { return this.buf.slice(0, this.n * TRACE_STRIDE); }
}

interface ChromeEvent {
  name: string; ph: string; pid: number; tid: number; ts: number; dur?: number; id?: number;
  cat?: string; bp?: string; args?: Record<string, unknown>;
}

const COMM_TID = 1000;

/** Name local ops after their label (compute ops: the kernel), from the programs that ran (op index in `msg`). */
export function labelEvents(events: TraceEvent[], programs: readonly (readonly { k: string; label?: string; kernel?: string }[])[]): void {
  for (const e of events) {
    if (e.kind === 'send' || e.kind === 'recv' || e.msg < 0) continue;
    const o = programs[e.rank]?.[e.msg];
    if (o && o.k === e.kind) e.label = o.label ?? o.kernel ?? e.label;
  }
}

/** Convert events to Chrome trace-event JSON (virtual microseconds on the time axis). */
export function toChromeTrace(events: TraceEvent[], linkNames: string[] = []): { traceEvents: ChromeEvent[]; displayTimeUnit: string } {
  const out: ChromeEvent[] = [];
  const ranks = new Set<number>();
  const ports = new Set<string>();
  const commStreams = new Set<number>();
  const us = (s: number) => s * 1e6;
  const flowId = (src: number, dst: number, msg: number, iter: number) => ((iter * 1_000_003 + src) * 1_000_003 + dst) * 4096 + msg;
  for (const e of events) {
    ranks.add(e.rank);
    const isSend = e.kind === 'send';
    // thread 0: the compute stream; 1 + k: egress port k; COMM_TID: the communication stream
    const tid = isSend ? 1 + e.link : e.stream === 1 ? COMM_TID : 0;
    if (!isSend && e.stream === 1) commStreams.add(e.rank);
    if (isSend) ports.add(`${e.rank}:${e.link}`);
    const lname = e.link >= 0 ? (linkNames[e.link] ?? `link${e.link}`) : undefined;
    const name = e.kind === 'send' ? `send→${e.peer}` : e.kind === 'recv' ? `recv←${e.peer}` : (e.label ?? e.kind);
    out.push({
      name, ph: 'X', pid: e.rank, tid, ts: us(e.vStart), dur: Math.max(0, us(e.vEnd) - us(e.vStart)), cat: e.kind,
      args: { bytes: e.bytes, peer: e.peer, link: lname, iter: e.iter, host_ms: +(e.hEnd - e.hStart).toFixed(4) },
    });
    if (isSend) {
      out.push({ name: 'msg', ph: 's', pid: e.rank, tid, ts: us(e.vStart), id: flowId(e.rank, e.peer, e.msg, e.iter), cat: 'flow' });
    } else if (e.kind === 'recv') {
      out.push({ name: 'msg', ph: 'f', bp: 'e', pid: e.rank, tid, ts: us(e.vEnd), id: flowId(e.peer, e.rank, e.msg, e.iter), cat: 'flow' });
    }
  }
  for (const r of ranks) {
    out.push({ name: 'process_name', ph: 'M', pid: r, tid: 0, ts: 0, args: { name: `rank ${r}` } });
    out.push({ name: 'process_sort_index', ph: 'M', pid: r, tid: 0, ts: 0, args: { sort_index: r } });
    out.push({ name: 'thread_name', ph: 'M', pid: r, tid: 0, ts: 0, args: { name: 'stream' } });
  }
  for (const r of commStreams) out.push({ name: 'thread_name', ph: 'M', pid: r, tid: COMM_TID, ts: 0, args: { name: 'communication stream' } });
  for (const k of ports) {
    const [r, l] = k.split(':').map(Number) as [number, number];
    out.push({ name: 'thread_name', ph: 'M', pid: r, tid: 1 + l, ts: 0, args: { name: `egress ${linkNames[l] ?? `port${l}`}` } });
  }
  return { traceEvents: out, displayTimeUnit: 'ns' };
}

/** Write events to FILE: Chrome JSON, or msgpack records when FILE ends in .msgpack. */
export function writeTrace(file: string, events: TraceEvent[], linkNames: string[] = []): void {
  if (file.endsWith('.msgpack')) writeFileSync(file, pack(events));
  else writeFileSync(file, JSON.stringify(toChromeTrace(events, linkNames)));
}
