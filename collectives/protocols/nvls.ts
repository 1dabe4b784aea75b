/**
 * NVLS (NVLink SHARP) AllReduce on one NVSwitch node: the analytical model, registered so that
 * `collemu algos` shows it, but NOT RUNNABLE: unsupported() is always set, so `--algo nvls` is refused
 * with the reason and auto-selection never picks it.
 *
 * WHAT NVLS DOES (NCCL 2.17+, Hopper NVSwitch 3). The buffer is split into p slices; GPU r owns
 * slice r. (1) multimem.ld_reduce on the multicast address of slice r: the switch reads slice r
 * from all p GPUs, reduces it in the switch and returns the sum to GPU r ("it would pull data from
 * all GPUs and give us the final result", NCCL maintainer, nccl #828). (2) multimem.st of the sum to
 * the multicast address: the switch replicates it to all p GPUs. Per GPU, for S bytes (NCCL
 * maintainer, nccl #1083: "NVLS: Send S, Receive S/N" for ReduceScatter, "Send S/N, Receive S" for
 * AllGather):
 *     sent     S + S/p   (its p slices read by the switch, then its own sum multicast)
 *     received S/p + S   (its own sum from the switch, then every slice's multicast)
 * against 2(p-1)/p S each way for the ring; no reduction on the GPU (the switch's ALUs do it).
 * So per direction the link carries (p+1)/p S, and
 *     T = latency + (p+1)/p S / (B x e_link x e_nvls),     algbw = S / T -> B e_link e_nvls p/(p+1)
 * with B = 450 GB/s (NVLink 4 line rate), e_link = 20.6/25 (NCCL's NVLink payload efficiency, as
 * for the ring: nccl.ts) and e_nvls = 0.85 (NCCL's NVLS efficiency factor for Hopper,
 * src/graph/tuning.cc nvlsEfficiency; Blackwell 0.74), latency = 25 us (NCCL's NVLS hop latency on
 * NVLink, tuning.cc; NVLS has no base latency there). For 8 x H100: 450 x 0.824 x 0.85 = 315.2 GB/s
 * per direction, algbw 280 GB/s, busbw (x 2(p-1)/p) 490 GB/s at 1-8 GB; measured ~480 busbw, algbw
 * ~275 (nccl-tests #212). It also follows the measured trend over p: nccl #1455 reports algbw
 * ~258, 265, 270, 273 GB/s for p = 5..8 (model: 263, 270, 276, 280: p/(p+1)).
 *
 * WHY IT DOES NOT RUN. The IR has point-to-point messages only, and the timing model charges every
 * message once, on the sender's egress port. Multicast (one send, p deliveries) and in-switch
 * reduction (p sends, one combined delivery) have no such form: any data-correct AllReduce built
 * from sends and receives needs 2(p-1) transfers of every element (p-1 to combine it, p-1 to deliver
 * the result), so some GPU's port carries >= 2(p-1)/p S, and the bus bandwidth can never exceed the
 * port's line rate, 450 GB/s on hgx-h100 (the best p2p algorithms here reach ~390). A data-correct
 * "NVLS" program would therefore be a point-to-point algorithm under another name, and a program
 * that moved fewer bytes than it must would give wrong data. What the executors would need: a send
 * to a multicast group charged once on the sender's port (the switch fans out), and a pull-reduce
 * from a group charged on each member's port with no GPU gamma (runtime/timing.ts, the simulator and
 * the worker emulator; the IR's op kinds are not ours to change here). With those, the program is
 * the two steps above, and this cost() would be its exact closed form.
 */
import type { Topology } from '../../runtime/topology.js';
import type { Algorithm, CollSpec } from '../types.js';

/** NCCL's NVLS efficiency factor by GPU generation (tuning.cc nvlsEfficiency); undefined: no NVLS. */
const NVLS_EFFICIENCY: Record<string, number> = { h100: 0.85, h200: 0.85, b200: 0.74 };
/** NCCL's NVLS latency on NVLink (tuning.cc hwLat NVLINK NVLS Simple), seconds. */
export const NVLS_LATENCY = 25e-6;

/** Why NVLS cannot model this spec (always set: see the header), or the topology reason first. */
function why(spec: CollSpec, topo: Topology): string {
  const noRun = 'the IR has no multicast or in-switch reduction, so no program can carry NVLS\'s traffic '
    + '(collectives/protocols/nvls.ts); cost() is the analytical NVLS time';
  if (!nvlsCapable(spec, topo)) return `NVLS needs one NVSwitch node of Hopper/Blackwell GPUs with p >= 2 (${topo.name}, ${spec.p} ranks is not); and ${noRun}`;
  return noRun;
}

function nvlsCapable(spec: CollSpec, topo: Topology): boolean {
  const l = topo.data.links[topo.data.intra]!;
  return spec.p >= 2 && spec.p <= topo.data.gpusPerNode && l.kind === 'nvlink' && NVLS_EFFICIENCY[topo.data.gpu] !== undefined;
}

/** The analytical NVLS AllReduce time (header), seconds; Infinity where NVLS does not exist. */
export function nvlsTime(spec: CollSpec, topo: Topology): number {
  if (!nvlsCapable(spec, topo)) return Infinity;
  const l = topo.data.links[topo.data.intra]!;
  const S = spec.count * 4;
  const bw = l.bw * (l.efficiency ?? 1) * NVLS_EFFICIENCY[topo.data.gpu]!;
  return NVLS_LATENCY + ((spec.p + 1) / spec.p) * S / bw;
}

export const nvlsAllreduce: Algorithm = {
  coll: 'allreduce',
  name: 'nvls',
  summary: 'NVLink SHARP: the switch reduces and multicasts (analytical model only: not runnable, the IR has no multicast)',
  formula: 'lat + (p+1)/p n / (B e_link e_nvls): per direction a GPU carries n + n/p; no GPU gamma; lat 25 us, e_nvls 0.85 (Hopper); one NVSwitch node',
  unsupported: (spec, topo) => why(spec, topo),
  build(spec: CollSpec, topo: Topology) {
    throw new Error(`allreduce nvls: ${why(spec, topo)}`);
  },
  cost: nvlsTime,
};
