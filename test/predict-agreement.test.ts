/**
 * The step model's two opinions on the pipeline agree: the per-rank timeline from the simulate
 * executor (the schedule compiled to IR, with the stage-to-stage messages on the PP group's link)
 * and the closed forms (bubble formulas + message chains), within 5% of the step time.
 */
import { describe, expect, it } from 'vitest';
import { predictStep, type PredictInput } from '../parallelism/predict/index.js';

const CASES: [string, PredictInput][] = [
  ['Llama 3 405B, 8,192 H100, interleaved', { model: 'llama3-405b', gpu: 'h100', gpus: 8192, cluster: 'llama3-h100', tp: 8, pp: 16, dp: 64, seq: 8192, globalBatch: 2048, zero: 1, sequenceParallel: true, vpp: 8 }],
  ['Llama 3 405B, 16,384 H100, 1F1B', { model: 'llama3-405b', gpu: 'h100', gpus: 16384, cluster: 'llama3-h100', tp: 8, pp: 16, dp: 128, seq: 8192, globalBatch: 2048, zero: 1, sequenceParallel: true, vpp: 1 }],
  ['Llama 3 70B, 1,024 H100, GPipe', { model: 'llama3-70b', gpu: 'h100', gpus: 1024, tp: 8, pp: 4, dp: 32, seq: 8192, globalBatch: 512, zero: 1, sequenceParallel: true, vpp: 1, schedule: 'gpipe', recompute: 'full' }],
  ['Llama 3 70B, 1,024 H100, ZB-H1', { model: 'llama3-70b', gpu: 'h100', gpus: 1024, tp: 8, pp: 4, dp: 32, seq: 8192, globalBatch: 512, zero: 1, sequenceParallel: true, vpp: 1, schedule: 'zb-h1' }],
  ['GPT-3 175B, 1,024 A100, interleaved v = 3', { model: 'gpt3-175b', gpu: 'a100', gpus: 1024, tp: 8, pp: 8, dp: 16, seq: 2048, globalBatch: 1536, vpp: 3 }],
];

describe('predict: simulated pipeline timeline vs closed form', () => {
  for (const [name, inp] of CASES) {
    it(`${name}: step times within 5%`, () => {
      const sim = predictStep({ ...inp, pipelineModel: 'simulate' });
      const cf = predictStep({ ...inp, pipelineModel: 'formula' });
      expect(sim.pipeline.method).toMatch(/simulated/);
      expect(cf.pipeline.method).toMatch(/closed form/);
      expect(Math.abs(sim.step_time_s - cf.step_time_s) / sim.step_time_s).toBeLessThanOrEqual(0.05);
      expect(Math.abs(sim.mfu - cf.mfu)).toBeLessThanOrEqual(0.05 * sim.mfu);
    });
  }
});
