/**
 * `collemu predict` / `collemu plan` (parallelism/predict/, cli/predict.ts): the analytic step-time /
 * MFU / memory model against published figures (../shared/reference/calibration.md), its
 * conventions, the process-group placement on the cluster topology, the planner, errors and the CLI.
 *
 * One model and one set of constants for every row: the inputs below are each paper's own layout.
 * Where a paper does not state a parameter the test names the assumption (Llama 3: interleaving
 * v = 8, i.e. one layer per virtual stage, as the 43% -> 41% trend needs, and 'lean' activation
 * memory, see below; Megatron-LM: v = 2).
 *
 * The MFU rows are FIT CHECKS: compute.ts's SUSTAINED holds one fitted efficiency per GPU kind,
 * fitted to these same rows (H100 0.74 to the three Llama 3 rows, A100 0.827 to the Megatron-LM and
 * Korthikanti rows). calibration.md and hardware.md have no independent end-to-end H100 figure to
 * test it against. What one parameter cannot absorb is the spread between the rows and the trends
 * (the 43% -> 41% bubble test, the memory tests, the planner), and those are what can fail.
 */
import { Command } from 'commander';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { planProgress, registerPredictCommands } from '../cli/predict.js';
import { autoSelect } from '../collectives/registry.js';
import { placeGroup, presetCluster } from '../parallelism/predict/clusters.js';
import { PredictError } from '../parallelism/predict/errors.js';
import { modelFlopsPerSequence } from '../parallelism/predict/flops.js';
import { GIB, layerActivationBytes, stageMemory, usableBytes } from '../parallelism/predict/memory.js';
import { MODEL_PRESETS, type ModelSpec } from '../parallelism/predict/models.js';
import { plan } from '../parallelism/predict/plan.js';
import { predictStep, type PredictInput } from '../parallelism/predict/step.js';
import { makeTopology } from '../runtime/topology.js';

/** Llama 3 405B, Table 4 of the Llama 3 paper, on its cluster: [TP, CP, PP, DP], FSDP ~ ZeRO-1 here
 * (parameters kept after forward, FP32 gradients reduce-scattered once per step), SP, all-gather CP,
 * no activation recomputation. Activation memory 'lean' (memory.ts): the paper trained these layouts
 * without activation checkpointing on 80 GB H100s, which Korthikanti's Megatron accounting cannot
 * fit in any H100 (tested below), and it frees each pipeline stage's input tensor, which that
 * accounting keeps (the first norm's input, with one layer per stage). */
const llama = (gpus: number, cp: number, dp: number, seq: number, batch: number): PredictInput => ({
  model: 'llama3-405b', gpu: 'h100', gpus, cluster: 'llama3', tp: 8, cp, pp: 16, dp, seq, globalBatch: batch,
  zero: 1, sequenceParallel: true, cpComm: 'allgather', vpp: 8, activationMemory: 'lean',
});
// global batch in sequences: 16M tokens = 2048 x 8192 = 128 x 131072
const LLAMA_ROWS: [string, PredictInput, number][] = [
  ['8,192 GPUs, TP 8 PP 16 DP 64, 8K', llama(8192, 1, 64, 8192, 2048), 0.43],
  ['16,384 GPUs, TP 8 PP 16 DP 128, 8K', llama(16384, 1, 128, 8192, 2048), 0.41],
  ['16,384 GPUs, TP 8 CP 16 PP 16 DP 8, 128K', llama(16384, 16, 8, 131072, 128), 0.38],
];

const gpt = (name: string, layers: number, hidden: number, heads: number): ModelSpec => ({
  name, layers, hidden, ffn: 4 * hidden, heads, kvHeads: heads, vocab: 51200, activation: 'gelu', dropout: true, tiedEmbeddings: true,
});

const report: string[] = [];
afterEach(() => {
  if (report.length) console.log(report.splice(0).join('\n'));
});

describe('published MFU figures', () => {
  it.each(LLAMA_ROWS)('Llama 3 405B, %s: within 3 MFU points of the paper (a fit check: SUSTAINED.h100 is fitted to these rows)', (name, inp, published) => {
    const p = predictStep(inp);
    report.push(`Llama 3 405B ${name}: predicted MFU ${(100 * p.mfu).toFixed(1)}% (${p.tflops_per_gpu.toFixed(0)} TFLOP/s), published ${100 * published}%`);
    expect(Math.abs(p.mfu - published)).toBeLessThanOrEqual(0.03);
    expect(p.tflops_per_gpu).toBeCloseTo((p.mfu * 989e12) / 1e12, 6);
  });

  it('Llama 3: the 43% -> 41% drop from 8K to 16K GPUs comes from the smaller batch per DP group (bubble)', () => {
    const a = predictStep(llama(8192, 1, 64, 8192, 2048)), b = predictStep(llama(16384, 1, 128, 8192, 2048));
    expect(b.mfu).toBeLessThan(a.mfu);
    expect(b.breakdown_s.bubble / b.step_time_s).toBeGreaterThan(1.5 * (a.breakdown_s.bubble / a.step_time_s));
  });

  it('Megatron-LM (Narayanan et al. 2021): GPT-3 175B on 1024 A100s, t 8 p 8, interleaved: ~138 TFLOP/s (44%), within 3 points', () => {
    // full recompute, batch 1536, micro-batch 1, unfused attention (2021), FLOPs as the paper counts
    // them: all of the attention scores, recomputation included (96 B s L h^2 (...)). Within 3
    // points like every other row since SUSTAINED.a100 is the minimax fit of the four A100 rows
    // (0.827; the earlier 0.84, a mean fit, left this row at +3.2 and the test at 4 points).
    const p = predictStep({
      model: 'gpt3-175b', gpu: 'a100', gpus: 1024, tp: 8, pp: 8, seq: 2048, globalBatch: 1536, recompute: 'full',
      vpp: 2, attention: 'unfused', attentionFlops: 'full',
    });
    report.push(`Megatron-LM GPT-3 175B, 1024 A100: predicted ${p.hardware_tflops_per_gpu.toFixed(0)} TFLOP/s with recompute (${(100 * p.hfu).toFixed(1)}%), published 138 (44%)`);
    expect(Math.abs(p.hfu - 0.44)).toBeLessThanOrEqual(0.03);
  });

  it('Korthikanti et al. 2022 Table 5 (SP + selective recompute, A100): MFU within 3 points', () => {
    const rows: [ModelSpec, number, number, number, number, number, number][] = [
      // model, tp, pp, gpus, batch, micro-batch, v; published MFU
      [gpt('22B', 48, 6144, 64), 8, 1, 8, 4, 4, 0.415],
      [gpt('175B', 96, 12288, 96), 8, 8, 64, 64, 1, 0.514],
      [gpt('530B', 105, 20480, 128), 8, 35, 280, 280, 1, 0.56],
    ].map(([m, tp, pp, g, b, mb, pub]) => [m as ModelSpec, tp as number, pp as number, g as number, b as number, mb as number, pub as number]);
    const vOf: Record<string, number> = { '22B': 1, '175B': 3, '530B': 3 };
    for (const [model, tp, pp, gpus, batch, mb, pub] of rows) {
      const p = predictStep({
        model, gpu: 'a100', gpus, tp, pp, seq: 2048, globalBatch: batch, microBatch: mb, recompute: 'selective', sequenceParallel: true,
        attention: 'unfused', attentionFlops: 'full', vpp: vOf[model.name],
      });
      report.push(`Korthikanti ${model.name}: predicted MFU ${(100 * p.mfu).toFixed(1)}%, published ${(100 * pub).toFixed(1)}%`);
      expect(Math.abs(p.mfu - pub)).toBeLessThanOrEqual(0.03);
    }
  });
});

describe('memory (Korthikanti et al. 2022, Figure 1): within 1%', () => {
  const m22 = gpt('22B', 48, 6144, 64);
  // Megatron-LM 2022: no FlashAttention (the 5as/h terms are the stored softmax / dropout tensors),
  // dropout (the GPT models here have dropout: true), Megatron's accounting of the pointwise copies
  const base = { gpu: 'a100', seq: 2048, attention: 'unfused' as const, activationMemory: 'megatron' as const };
  const cases: [string, PredictInput, 'act' | 'states', number][] = [
    ['22B activations, no recompute (t 8)', { ...base, model: m22, gpus: 8, tp: 8, globalBatch: 4, microBatch: 4 }, 'act', 59.25],
    ['22B activations, SP + selective', { ...base, model: m22, gpus: 8, tp: 8, globalBatch: 4, microBatch: 4, sequenceParallel: true, recompute: 'selective' }, 'act', 9.5625],
    ['22B parameters + optimizer states (18 bytes x 12 L h^2 / t)', { ...base, model: m22, gpus: 8, tp: 8, globalBatch: 4, microBatch: 4 }, 'states', 45.5625],
    ['175B activations, no recompute (t 8 p 8 v 3)', { ...base, model: 'gpt3-175b', gpus: 64, tp: 8, pp: 8, vpp: 3, globalBatch: 64 }, 'act', 66.84],
    ['175B activations, SP + selective', { ...base, model: 'gpt3-175b', gpus: 64, tp: 8, pp: 8, vpp: 3, globalBatch: 64, sequenceParallel: true, recompute: 'selective' }, 'act', 12.3516],
  ];
  it.each(cases)('%s', (name, inp, what, gib) => {
    const p = predictStep(inp);
    const got = what === 'act' ? p.memory_gib.activations_layers : p.memory_gib.states_layers;
    report.push(`Korthikanti ${name}: predicted ${got.toFixed(4)} GiB, published ${gib} GiB`);
    expect(Math.abs(got / gib - 1)).toBeLessThan(0.01);
    // the totals add the embedding / output layer on top, and stay close
    if (what === 'act') expect(p.memory_gib.activations).toBeGreaterThanOrEqual(got);
  });

  it('ZeRO levels: bytes per parameter as formulas.md (16-byte accounting with bf16 gradients)', () => {
    const model = MODEL_PRESETS['llama3-8b']!;
    const d = 8;
    const act = { b: 1, s: 1024, tp: 1, cp: 1, sp: false, attention: 'flash' as const };
    const per = (zero: 0 | 1 | 2 | 3) => {
      const mem = stageMemory({ model, layers: 1, first: false, last: false, tp: 1, pp: 2, dp: d, ep: 1, zero, gradBytes: 2, act, recompute: 'none', inflight: 0 });
      const params = mem.parameters / 2; // bf16
      return (mem.parameters + mem.gradients + mem.optimizer) / params;
    };
    expect(per(0)).toBeCloseTo(16, 9);
    expect(per(1)).toBeCloseTo(4 + 12 / d, 9);
    expect(per(2)).toBeCloseTo(2 + 14 / d, 9);
    // ZeRO-3 with PP keeps the stage's parameters unsharded for the step (FSDP without resharding)
    expect(per(3)).toBeCloseTo(4 + 12 / d, 9);
    const z3 = stageMemory({ model, layers: 1, first: false, last: false, tp: 1, pp: 1, dp: d, ep: 1, zero: 3, gradBytes: 2, act, recompute: 'none', inflight: 0 });
    const p1 = z3.gradients * d / 2;
    expect((z3.gradients + z3.optimizer) / p1).toBeCloseTo(14 / d, 9);
  });
});

describe('memory: Llama 3 405B (Table 4) on 80 GB H100s, no activation recomputation', () => {
  it('usable memory: CUDA sees 79.11 GiB of an "80 GB" H100; less 5% fragmentation and 2 GiB reserved', () => {
    const p = predictStep(LLAMA_ROWS[0]![1]);
    expect(p.memory_capacity_gib).toBeCloseTo(79.11, 6);
    expect(p.memory_usable_gib).toBeCloseTo(79.11 * 0.95 - 2, 6);
    expect(usableBytes(80e9, 'h100') / GIB).toBeCloseTo(73.1545, 3);
    // a capacity other than the preset's (a cluster file's) is taken as given
    expect(usableBytes(64 * GIB, 'h100') / GIB).toBeCloseTo(64 * 0.95 - 2, 9);
  });

  it.each(LLAMA_ROWS)('%s: fits, and fills most of the usable memory', (name, inp) => {
    const p = predictStep(inp);
    report.push(`Llama 3 405B ${name}: ${p.memory_gib_per_gpu.toFixed(2)} GiB of ${p.memory_usable_gib.toFixed(2)} usable (lean activations), MFU ${(100 * p.mfu).toFixed(1)}%`);
    expect(p.fits_in_memory).toBe(true);
    // no published per-GPU figure; the paper needed dedicated memory optimizations to run these
    // layouts without activation checkpointing, so they are near the limit: above 80% of usable
    expect(p.memory_gib_per_gpu).toBeGreaterThan(0.8 * p.memory_usable_gib);
    // the model states: bf16 parameters and fp32 gradients of the stage unsharded, the fp32 master
    // weights and Adam moments (12 bytes) sharded over DP (ZeRO-1)
    const mg = p.memory_gib;
    expect(mg.gradients / mg.parameters).toBeCloseTo(2, 9);
    expect(mg.optimizer / mg.parameters).toBeCloseTo(6 / inp.dp!, 9);
  });

  it.each(LLAMA_ROWS)('%s: Korthikanti\'s Megatron accounting needs more than the whole H100 (why Llama 3 must keep less)', (_, inp) => {
    const p = predictStep({ ...inp, activationMemory: 'megatron' });
    expect(p.memory_gib_per_gpu).toBeGreaterThan(p.memory_capacity_gib);
  });

  it('interleaved schedule, first stage: the embedding-only first chunk holds no layer activations (Llama 3 balancing)', () => {
    const p = predictStep(LLAMA_ROWS[0]![1]);
    expect(p.pipeline.layers_per_rank).toEqual([7, ...new Array(14).fill(8), 7]);
    const first = p.rank_classes.find((r) => r.rank === 0)!;
    // formulas.md's p (1 + (p-1)/(p v)) = 17.875 microbatches of the share in flight ...
    expect(first.inflight).toBeCloseTo(16 * (1 + 15 / 128), 9);
    // ... but 31 of the 143 chunk-microbatches are of chunk 0 (embedding only): 7 x 16 layer-microbatches
    expect(first.layer_microbatches).toBe(112);
    // the second rank has 8 one-layer chunks and 2 (p - 2) + (v - 1) p + 1 = 141 in flight: the peak
    const second = p.rank_classes.find((r) => r.rank === 1)!;
    expect(second.layer_microbatches).toBe(141);
    expect(p.memory_gib_per_gpu).toBeCloseTo(second.memory_gib.total, 9);
  });

  it('per-layer activations: megatron is Korthikanti\'s 34 sbh/t for GPT; lean keeps one copy per pointwise chain', () => {
    const gpt3 = MODEL_PRESETS['gpt3-175b']!;
    const s = 2048, b = 1, t = 8, h = gpt3.hidden;
    const sh = { b, s, tp: t, cp: 1, sp: true, attention: 'flash' as const };
    const unit = (s * b * h) / t;
    // with dropout and FlashAttention: 34 sbh/t plus the fp32 log-sum-exp
    const lse = 4 * (gpt3.heads / t) * s * b;
    expect(layerActivationBytes(gpt3, { ...sh, store: 'megatron' }).all - lse).toBeCloseTo(34 * unit, 0);
    // lean drops the QKV and fc1 inputs (2 x 2 sbh) and the GeLU output (8 sbh): 22 sbh/t
    expect(layerActivationBytes(gpt3, { ...sh, store: 'lean' }).all - lse).toBeCloseTo(22 * unit, 0);
    // Llama 3 405B, SwiGLU f = 3.25 h, no dropout, GQA (8 KV heads of 128): megatron 12 + 6 f/h,
    // lean 8 + 4 f/h (sbh/t) plus K and V (2 x 2 s b 128 for the one local KV head)
    const l = MODEL_PRESETS['llama3-405b']!;
    const su = (8192 * l.hidden) / t, kv = 2 * 2 * 8192 * 128, lseL = 4 * (l.heads / t) * 8192;
    const sl = { ...sh, s: 8192 };
    expect(layerActivationBytes(l, { ...sl, store: 'megatron' }).all).toBeCloseTo((12 + (6 * l.ffn) / l.hidden) * su + kv + lseL, 0);
    expect(layerActivationBytes(l, { ...sl, store: 'lean' }).all).toBeCloseTo((8 + (4 * l.ffn) / l.hidden) * su + kv + lseL, 0);
    // the lean recomputation is priced (elementwise, in the recompute part of the step)
    const lean = predictStep(LLAMA_ROWS[0]![1]), meg = predictStep({ ...LLAMA_ROWS[0]![1], activationMemory: 'megatron' });
    expect(lean.breakdown_s.recompute).toBeGreaterThan(0);
    expect(meg.breakdown_s.recompute).toBe(0);
    expect(lean.breakdown_s.recompute).toBeLessThan(0.01 * lean.step_time_s);
  });
});

describe('conventions', () => {
  it('FLOPs: Megatron-LM formula; with full attention counting it is formulas.md 72 B s L h^2 (1 + s/6h + V/12Lh)', () => {
    const m = MODEL_PRESETS['gpt3-175b']!;
    const s = 2048, h = m.hidden, L = m.layers, V = m.vocab;
    expect(modelFlopsPerSequence(m, s, 'full')).toBeCloseTo(72 * s * L * h * h * (1 + s / (6 * h) + V / (12 * L * h)), -6);
    // causal: the attention-score term is halved
    expect(modelFlopsPerSequence(m, s, 'full') - modelFlopsPerSequence(m, s, 'causal')).toBeCloseTo(6 * s * s * L * h, -6);
    // Llama 3 405B: 6 N per token plus the causal attention term, within 1%
    const l = MODEL_PRESETS['llama3-405b']!;
    const n = 405.85e9; // parameters incl. embeddings (Llama 3 paper: 405B)
    expect(modelFlopsPerSequence(l, 8192, 'causal') / (8192 * (6 * n + 6 * l.layers * l.hidden * 8192))).toBeCloseTo(1, 1);
  });

  it('the breakdown adds up to the step time; MFU and tokens/s follow from it', () => {
    const p = predictStep(llama(8192, 1, 64, 8192, 2048));
    const sum = Object.values(p.breakdown_s).reduce((a, b) => a + b, 0);
    expect(sum).toBeCloseTo(p.step_time_s, 9);
    expect(Object.keys(p.breakdown_s).sort()).toEqual(['bubble', 'compute', 'cp', 'dp', 'ep', 'optimizer', 'pp', 'recompute', 'tp']);
    expect(p.tokens_per_s).toBeCloseTo((2048 * 8192) / p.step_time_s, 3);
    expect(p.mfu).toBeGreaterThan(0);
    expect(p.mfu).toBeLessThan(1);
    expect(p.mfu).toBeCloseTo(p.flops.model_per_step / (p.step_time_s * 8192 * 989e12), 12);
    expect(p.pipeline.method).toMatch(/simulated/);
    // Llama 3 balances the pipeline by taking a layer off the first and last stages; so does the model
    expect(p.pipeline.layers_per_rank.reduce((a, b) => a + b, 0)).toBe(126);
    expect(Math.max(...p.pipeline.layers_per_rank)).toBe(8);
  });

  it('pipeline bubble from the schedule: 1F1B (p-1)/m, interleaved (p-1)/(v m) on equal stages', () => {
    const base: PredictInput = { model: 'llama3-70b', gpu: 'h100', gpus: 256, tp: 8, pp: 4, seq: 4096, globalBatch: 64, sequenceParallel: true, microBatch: 1 };
    const a = predictStep({ ...base, schedule: '1f1b', vpp: 1 });
    const b = predictStep({ ...base, schedule: 'interleaved', vpp: 2 });
    expect(a.microbatches).toBe(8);
    expect(a.pipeline.bubble_fraction).toBeCloseTo(3 / 8, 9);
    expect(b.pipeline.bubble_fraction).toBeCloseTo(3 / 16, 9);
    expect(b.breakdown_s.bubble).toBeLessThan(a.breakdown_s.bubble);
    // 1F1B holds min(m, p) microbatches on the first stage; interleaved p (1 + (p-1)/(p v))
    expect(a.rank_classes[0]!.inflight).toBe(4);
    expect(b.rank_classes[0]!.inflight).toBeCloseTo(4 * (1 + 3 / 8), 9);
  });

  it('recompute: full costs a forward and saves activations; FLOPs counted once for MFU, again for HFU', () => {
    const base: PredictInput = { model: 'llama3-70b', gpu: 'h100', gpus: 64, tp: 8, pp: 4, seq: 8192, globalBatch: 64, sequenceParallel: true, zero: 1, vpp: 1 };
    const none = predictStep({ ...base, recompute: 'none' }), full = predictStep({ ...base, recompute: 'full' });
    expect(full.breakdown_s.recompute).toBeGreaterThan(0);
    expect(full.memory_gib.activations).toBeLessThan(none.memory_gib.activations / 5);
    expect(full.step_time_s).toBeGreaterThan(none.step_time_s * 1.2);
    expect(full.flops.model_per_step).toBe(none.flops.model_per_step);
    expect(full.hfu).toBeGreaterThan(full.mfu);
  });

  it('TP overlap hides TP behind the GEMMs; DP traffic hides behind the backward', () => {
    const base: PredictInput = { model: 'llama3-70b', gpu: 'h100', gpus: 64, tp: 8, seq: 4096, globalBatch: 64, sequenceParallel: true, zero: 1 };
    const ex = predictStep(base), ov = predictStep({ ...base, tpOverlap: true });
    expect(ov.breakdown_s.tp).toBeLessThan(ex.breakdown_s.tp / 2);
    const dpc = ex.collectives.filter((c) => c.group === 'dp');
    expect(dpc.length).toBe(2);
    for (const c of dpc) expect(c.exposed_s).toBeLessThan(c.time_s * c.calls);
  });
});

describe('process groups on the cluster topology (mesh order [TP, CP, PP, DP])', () => {
  it('TP inside a node crosses only NVLink and is priced by the collectives on that topology', () => {
    const c = presetCluster('hgx-h100', 64);
    const tp = placeGroup(c, 'tp', 8, 1);
    expect(tp.crosses).toEqual(['nvlink4']);
    // the same cost as the registry's auto choice on an 8-GPU hgx-h100 node with the achieved NVLink rate
    const node = makeTopology('hgx-h100', { ranks: 8 });
    expect(tp.topo.data.links[0]!.bw).toBeCloseTo(node.data.links[0]!.bw * (370 / 450), 0);
    const spec = { coll: 'allreduce' as const, p: 8, count: 1 << 24, op: 'sum' as const, inPlace: true, root: 0 };
    expect(autoSelect(spec, tp.topo).cost(spec, tp.topo)).toBeGreaterThan(2 * (7 / 8) * 4 * (1 << 24) / 370e9);
    const dp = placeGroup(c, 'dp', 8, 8);
    expect(dp.crosses).toEqual(['ib-ndr400']);
    const pp = placeGroup(c, 'pp', 4, 2); // stride 2 inside a node
    expect(pp.crosses).toEqual(['nvlink4']);
    const mixed = placeGroup(c, 'cp', 4, 4); // 2 per node, 2 nodes
    expect(mixed.crosses).toEqual(['nvlink4', 'ib-ndr400']);
    expect(mixed.topo.data.gpusPerNode).toBe(2);
  });

  it('Llama 3 cluster: a DP group spanning pods crosses the 1:7 level (priced as the worst group of its shape); few members per pod share the uplink', () => {
    const c = presetCluster('llama3', 16384);
    const inPod = placeGroup(c, 'dp', 24, 128); // 3,072 GPUs: every such group inside one pod
    expect(inPod.crosses.some((x) => x.includes('between pods'))).toBe(false);
    // 16 x 128 = 2,048 GPUs: rank 0's group fits in a pod, but the group starting at 2,048 straddles
    // pods 0 and 1 (2,048 does not divide 3,072), and the step waits for the slowest group
    const straddling = placeGroup(c, 'dp', 16, 128);
    expect(straddling.crosses.some((x) => x.includes('between pods'))).toBe(true);
    const wide = placeGroup(c, 'dp', 128, 128); // Llama row 2: 24 members per pod
    expect(wide.crosses.some((x) => x.includes('between pods'))).toBe(true);
    expect(wide.topo.data.links[1]!.bw).toBeCloseTo(47e9, -3); // enough uplink for ring traffic
    const sparse = placeGroup(c, 'dp', 8, 2048); // Llama row 3: ~1.5 members per pod
    expect(sparse.topo.data.links[1]!.bw).toBeLessThan(47e9 / 3);
  });

  it('TPU: a TP group along an axis becomes a sub-torus priced with the torus algorithm', () => {
    const c = presetCluster('tpu-v4', 64);
    const g = placeGroup(c, 'tp', 4, 1);
    expect(g.topo.isTorus).toBe(true);
    expect(g.topo.torus!.dims).toEqual([1, 1, 4]);
    const spec = { coll: 'allreduce' as const, p: 4, count: 1 << 22, op: 'sum' as const, inPlace: true, root: 0 };
    expect(autoSelect(spec, g.topo).name).toBe('torus');
  });
});

describe('planner', () => {
  it('16,384 H100s, Llama 3 405B: finishes in seconds; every layout fits; ranked by MFU', () => {
    const t0 = performance.now();
    const r = plan({ model: 'llama3-405b', gpu: 'h100', gpus: 16384, seq: 8192, globalBatch: 2048, top: 5 });
    const secs = (performance.now() - t0) / 1000;
    report.push(`plan llama3-405b on 16,384 H100: ${secs.toFixed(2)} s, ${r.enumerated} enumerated, ${r.fitting} fit; best MFU ${(100 * r.layouts[0]!.mfu).toFixed(1)}%`);
    expect(secs).toBeLessThan(10);
    expect(r.layouts.length).toBe(5);
    for (const p of r.layouts) {
      expect(p.fits_in_memory).toBe(true);
      expect(p.layout.tp * p.layout.cp * p.layout.pp * p.layout.dp).toBe(16384);
    }
    for (let i = 1; i < r.layouts.length; i++) expect(r.layouts[i]!.mfu).toBeLessThanOrEqual(r.layouts[i - 1]!.mfu);
    expect(r.explanation[0]).toMatch(/^winner: tp \d+ cp \d+ pp \d+ dp \d+/);
    expect(r.explanation.join('\n')).toMatch(/where the time goes: compute/);
  });

  it('searches zb-v (two chunks per rank, the output layer on rank 0) and prices it with zbvIdle, not 1F1B halved', () => {
    const r = plan({ model: 'llama3-70b', gpu: 'h100', gpus: 64, seq: 8192, globalBatch: 64, top: 200, limits: { tp: 8, cp: 1, pp: 4 } });
    const zbv = r.layouts.filter((p) => p.layout.schedule === 'zb-v');
    expect(zbv.length).toBeGreaterThan(0);
    for (const p of zbv) expect(p.layout.vpp).toBe(2);
    // rank 0 holds the embedding and the output layer (heavier than a layer here: 128K x 8192 / 8
    // weights against ~0.8B / 8): it takes fewer layers than the others
    const four = predictStep({ model: 'llama3-70b', gpu: 'h100', gpus: 64, tp: 8, pp: 4, seq: 8192, globalBatch: 64, sequenceParallel: true, zero: 1, schedule: 'zb-v' });
    expect(four.pipeline.layers_per_rank.reduce((a, b) => a + b, 0)).toBe(80);
    expect(four.pipeline.layers_per_rank[0]!).toBeLessThan(Math.max(...four.pipeline.layers_per_rank));
    // closed form as the planner times it: far below 1F1B's (p-1)/m (the old fallback was half of it)
    const cf = predictStep({ model: 'llama3-70b', gpu: 'h100', gpus: 64, tp: 8, pp: 4, seq: 8192, globalBatch: 64, sequenceParallel: true, zero: 1, schedule: 'zb-v', pipelineModel: 'formula' });
    expect(cf.pipeline.method).toMatch(/zbvIdle/);
    expect(cf.microbatches).toBe(32);
    expect(cf.pipeline.bubble_fraction).toBeLessThan(0.5 * (3 / 32 / 2));
    expect(Math.abs(cf.step_time_s / four.step_time_s - 1)).toBeLessThan(0.01);
  });

  it('a model that fits on one GPU is trained without model parallelism where that is fastest', () => {
    const r = plan({ model: { ...MODEL_PRESETS['llama3-8b']!, name: 'small', layers: 8 }, gpu: 'h100', gpus: 8, seq: 2048, globalBatch: 64, top: 3 });
    expect(r.layouts[0]!.layout.pp).toBe(1);
  });
});

describe('trends (calibration.md seed observations)', () => {
  it('strong scaling a fixed workload with data parallelism: MFU falls as nodes are added', () => {
    const model: ModelSpec = { name: 'gpt-1.3b', layers: 24, hidden: 2048, ffn: 8192, heads: 16, kvHeads: 16, vocab: 51200, activation: 'gelu' };
    const mfu = [2, 4, 8, 16, 32].map((nodes) => predictStep({ model, gpu: 'h100', gpus: 8 * nodes, seq: 2048, globalBatch: 256 }).mfu);
    for (let i = 1; i < mfu.length; i++) expect(mfu[i]!).toBeLessThan(mfu[i - 1]!);
    expect(mfu[4]!).toBeLessThan(mfu[0]! / 2);
  });
});

describe('errors: PredictError with a one-line message', () => {
  const ok: PredictInput = { model: 'llama3-8b', gpu: 'h100', gpus: 64, tp: 8, seq: 4096, globalBatch: 512 };
  const bad: [string, Partial<PredictInput>, RegExp][] = [
    ['unknown model', { model: 'gpt-5' }, /unknown model 'gpt-5'/],
    ['unknown gpu', { gpu: 'v100' }, /unknown GPU 'v100'/],
    ['tp cp pp dp != gpus', { tp: 8, pp: 2, dp: 8 }, /tp\*cp\*pp\*dp = 8\*1\*2\*8 = 128, but --gpus is 64/],
    ['batch not divisible', { globalBatch: 100 }, /--global-batch 100 is not divisible by dp x micro-batch = 8 x 1/],
    ['heads not divisible by tp', { gpus: 48, tp: 3 }, /heads 32 is not divisible by tp 3/],
    ['interleaved without enough microbatches', { pp: 8, tp: 8, dp: 1, globalBatch: 4, schedule: 'interleaved', vpp: 2 }, /interleaved 1F1B needs the microbatch count/],
    ['unknown cluster', { cluster: 'my-dc' }, /unknown cluster 'my-dc'/],
    ['ep without experts', { ep: 2 }, /needs an MoE model/],
    ['unknown activation memory', { activationMemory: 'tiny' as never }, /--activation-memory must be megatron or lean \(got 'tiny'\)/],
  ];
  it.each(bad)('%s', (_, change, re) => {
    let err: unknown;
    try {
      predictStep({ ...ok, ...change });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PredictError);
    expect((err as Error).message).toMatch(re);
    expect((err as Error).message).not.toMatch(/\n/);
  });
});

describe('CLI: collemu predict / plan (registerPredictCommands)', () => {
  const run = async (args: string[]): Promise<string> => {
    const program = new Command();
    program.exitOverride();
    registerPredictCommands(program);
    let out = '';
    const spy = vi.spyOn(process.stdout, 'write').mockImplementation((s: string | Uint8Array) => {
      out += String(s);
      return true;
    });
    const log = vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => {
      out += a.join(' ') + '\n';
    });
    try {
      await program.parseAsync(['node', 'collemu', ...args]);
    } finally {
      spy.mockRestore();
      log.mockRestore();
    }
    return out;
  };

  it('predict --json - prints only JSON with the documented keys', async () => {
    const out = await run(['predict', '--model', 'llama3-70b', '--gpu', 'h100', '--gpus', '64', '--tp', '8', '--pp', '2', '--dp', '4',
      '--sequence-parallel', '--seq', '8192', '--global-batch', '64', '--zero', '1', '--json', '-']);
    const j = JSON.parse(out);
    for (const k of ['step_time_s', 'tokens_per_s', 'tflops_per_gpu', 'mfu', 'memory_gib_per_gpu', 'fits_in_memory', 'breakdown_s']) expect(j).toHaveProperty(k);
    for (const k of ['compute', 'recompute', 'bubble', 'tp', 'cp', 'pp', 'dp', 'optimizer']) expect(typeof j.breakdown_s[k]).toBe('number');
    expect(j.mfu).toBeGreaterThan(0.2);
    expect(j.mfu).toBeLessThan(0.7);
  });

  it('predict prints a readable report', async () => {
    const out = await run(['predict', '--model', 'gpt3-175b', '--gpu', 'a100', '--gpus', '1024', '--tp', '8', '--pp', '8', '--vpp', '2',
      '--seq', '2048', '--global-batch', '1536', '--recompute', 'full']);
    expect(out).toMatch(/step time\s+\d+\.\d+ s/);
    expect(out).toMatch(/MFU\s+\d+\.\d%/);
    expect(out).toMatch(/memory per GPU .* (fits|does NOT fit)/);
    expect(out).toMatch(/tp +allreduce .* nvlink3/);
    expect(out).toMatch(/dp +allreduce \(grads\) .* ib-hdr200/);
  });

  it('plan --json - prints a list of layouts with their predictions', async () => {
    const out = await run(['plan', '--model', 'llama3-8b', '--gpu', 'h100', '--gpus', '64', '--seq', '8192', '--global-batch', '256', '--top', '3', '--json', '-']);
    const j = JSON.parse(out) as { mfu: number; layout: { tp: number } }[];
    expect(j.length).toBe(3);
    expect(j[0]!.mfu).toBeGreaterThanOrEqual(j[1]!.mfu);
    expect(j[0]!.layout.tp).toBeGreaterThanOrEqual(1);
  });

  it('plan progress on a terminal: one line redrawn in place, cut to the width, erased at the end; nothing off a terminal', () => {
    const writes: string[] = [];
    const tty = planProgress({ isTTY: true, columns: 40, write: (x: string) => writes.push(x) });
    expect(tty.onProgress).toBeTypeOf('function');
    tty.onProgress!(64, 4783, 'timing');
    tty.onProgress!(4783, 4783, 'timing');
    tty.finish();
    expect(writes.length).toBe(3);
    for (const w of writes.slice(0, 2)) {
      expect(w.startsWith('\r')).toBe(true);
      expect(w.endsWith('\x1b[K')).toBe(true);
      expect(w.length - '\r'.length - '\x1b[K'.length).toBeLessThanOrEqual(39);
    }
    expect(writes[0]).toBe('\rcollemu plan: timing 64/4,783 candidate\x1b[K');
    expect(writes[2]).toBe('\r\x1b[K');
    // wide terminal: the whole line
    const w2: string[] = [];
    const wide = planProgress({ isTTY: true, columns: 200, write: (x: string) => w2.push(x) });
    wide.onProgress!(3, 5, 'simulating the best schedules');
    expect(w2[0]).toBe('\rcollemu plan: simulating the best schedules 3/5 candidate layouts\x1b[K');
    // not a terminal (a pipe, a file): no callback, no output
    const w3: string[] = [];
    const pipe = planProgress({ isTTY: false, write: (x: string) => w3.push(x) });
    expect(pipe.onProgress).toBeUndefined();
    pipe.finish();
    expect(w3).toEqual([]);
  });

  const hasScript = spawnSync('script', ['--version'], { encoding: 'utf8' }).status === 0;
  it.skipIf(!hasScript)('plan on a pseudo-terminal (script -qec): progress on stderr, then the table; piped: no progress', () => {
    const BIN = join(import.meta.dirname, '..', 'bin', 'collemu');
    const args = ['plan', '--model', 'llama3-8b', '--gpu', 'h100', '--gpus', '64', '--seq', '8192', '--global-batch', '256', '--top', '2'];
    const cmd = [process.execPath, BIN, ...args].map((a) => `'${a}'`).join(' ');
    const r = spawnSync('script', ['-qec', cmd, '/dev/null'], { encoding: 'utf8', timeout: 120_000, input: '' });
    expect(r.status).toBe(0);
    const out = r.stdout;
    expect(out).toMatch(/\rcollemu plan: timing \d[\d,]*\/[\d,]+ candidate layouts\x1b\[K/);
    expect(out).toMatch(/\rcollemu plan: simulating the best schedules 2\/2 candidate layouts\x1b\[K\r\x1b\[K/);
    // the progress line is erased before the results
    const end = out.lastIndexOf('\r\x1b[K');
    expect(out.indexOf('rank    MFU')).toBeGreaterThan(end);
    const piped = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 120_000 });
    expect(piped.status).toBe(0);
    expect(piped.stderr).toBe('');
    expect(piped.stdout).not.toMatch(/\r/);
  });

  it('bad input raises PredictError (cli/main.ts prints "error: ...", exit 2)', async () => {
    await expect(run(['predict', '--model', 'nope', '--gpu', 'h100', '--gpus', '8', '--seq', '1024', '--global-batch', '8'])).rejects.toThrow(PredictError);
  });
});

describe('the simulated per-rank pipeline timeline (--timeline)', () => {
  const BIN = join(import.meta.dirname, '..', 'bin', 'collemu');
  const inp: PredictInput = { model: 'llama3-70b', gpu: 'h100', gpus: 64, tp: 8, pp: 4, dp: 2, seq: 4096, globalBatch: 32, schedule: 'zb-h1', microBatch: 4, timeline: true };
  it('lists every action of every pipeline rank, in order, without overlap; its span is the simulated pipeline', () => {
    const p = predictStep(inp);
    const tl = p.pipeline.timeline!;
    expect(tl).toHaveLength(4);
    const m = p.pipeline.microbatches;
    let span = 0;
    for (const l of tl) {
      // zb-h1: F, I and W of every microbatch on every rank
      expect(l).toHaveLength(3 * m);
      for (const k of ['F', 'I', 'W']) expect(l.filter((a) => a.kind === k).map((a) => a.microbatch).sort((x, y) => x - y)).toEqual([...Array(m).keys()]);
      for (let i = 1; i < l.length; i++) expect(l[i]!.start).toBeGreaterThanOrEqual(l[i - 1]!.end - 1e-12);
      span = Math.max(span, l[l.length - 1]!.end);
    }
    // the same idle share as the prediction's bubble (bubble fraction = idle / busy, mean over ranks)
    const busy = tl.map((l) => l.reduce((s, a) => s + a.end - a.start, 0));
    const idle = busy.reduce((s, b) => s + (span - b), 0) / busy.reduce((s, b) => s + b, 0);
    expect(idle).toBeGreaterThanOrEqual(p.pipeline.bubble_fraction - 1e-9);
    expect(idle).toBeLessThan(p.pipeline.bubble_fraction + 0.05);
    // without the option it is not kept
    expect(predictStep({ ...inp, timeline: false }).pipeline.timeline).toBeUndefined();
  });

  it('collemu predict --timeline prints one row per pipeline rank; without PP it is an error', () => {
    const args = ['predict', '--model', 'llama3-70b', '--gpu', 'h100', '--gpus', '64', '--tp', '8', '--pp', '4', '--dp', '2', '--seq', '4096', '--global-batch', '32', '--schedule', 'zb-h1', '--micro-batch', '4', '--timeline'];
    const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status).toBe(0);
    const rows = r.stdout.split('\n').filter((l) => /^\s+rank \d\s+[FBIW+.]+\s+busy/.test(l));
    expect(rows).toHaveLength(4);
    for (const l of rows) expect(l).toMatch(/I/);
    const bad = spawnSync(process.execPath, [BIN, 'predict', '--model', 'llama3-8b', '--gpu', 'h100', '--gpus', '8', '--tp', '8', '--seq', '4096', '--global-batch', '8', '--timeline'], { encoding: 'utf8', timeout: 60_000 });
    expect(bad.status).toBe(2);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
    expect(bad.stderr).toMatch(/--timeline needs pipeline parallelism/);
  });
});
