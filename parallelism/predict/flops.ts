/**
 * FLOPs counting convention of the step-time model.
 *
 * MODEL FLOPs (what MFU and tflops_per_gpu count) follow Megatron-LM's
 * `num_floating_point_operations` (megatron/training/training.py), the generalisation of Narayanan
 * et al. 2021 eq. 3 (formulas.md: F = 72 B s L h^2 (1 + s/(6h) + V/(12 L h)) for GPT, f = 4h) to
 * GQA, SwiGLU and MoE:
 *
 *   F = 12 B s L h^2 [ (1 + g/a + s/(2h)) + f_eff/h + V/(2 L h) ]
 *
 * with B sequences of s tokens, L layers, hidden h, a heads, g KV heads, V vocab, and
 * f_eff = ffn x 3/2 for SwiGLU (three matrices instead of two), x top_k (expert FFN) for MoE.
 * 12 = 3 (forward, backward for inputs, backward for weights) x 2 (two GEMMs of each shape) x 2
 * (one multiply-add = 2 FLOPs). The attention-score term s/(2h) counts the causal half of the
 * s x s score matrix, as Megatron-LM does today; Narayanan et al.'s paper formula counts all of it
 * (s/h). For GPT-3 (s = 2048, h = 12288) the two differ by 0.7% of F; at Llama 3's 131,072-token
 * context the attention term is the largest one. `attentionFlops: 'full'` selects the paper's count.
 * Recomputation is not model work: with full recompute the hardware executes one more forward of
 * every layer (Narayanan et al.: 96 B s L h^2 (...) hardware FLOPs); HFU counts it.
 *
 * MFU = model FLOPs per step / (step time x GPUs x dense BF16 peak) (formulas.md). Peaks: runtime/hardware.ts.
 * Router GEMMs (h x experts per token) and norms / elementwise ops are not counted, as in Megatron.
 */
import { expertFfn, isMoe, topK, type ModelSpec } from './models.js';

export type AttentionFlops = 'causal' | 'full';

/** Model FLOPs of one sequence of s tokens, forward and backward (Megatron-LM's formula, above). */
export function modelFlopsPerSequence(m: ModelSpec, s: number, attention: AttentionFlops = 'causal'): number {
  const h = m.hidden, L = m.layers;
  const gated = m.activation === 'swiglu' ? 1.5 : 1;
  const ffnEff = (isMoe(m) ? expertFfn(m) * topK(m) : m.ffn) * gated;
  const attn = 1 + m.kvHeads / m.heads + (attention === 'causal' ? s / (2 * h) : s / h);
  return 12 * s * L * h * h * (attn + ffnEff / h + m.vocab / (2 * L * h));
}

/** Forward FLOPs of one layer for one sequence (a third of its share of F): recompute counts this. */
export function layerForwardFlopsPerSequence(m: ModelSpec, s: number, attention: AttentionFlops = 'causal'): number {
  const h = m.hidden;
  const gated = m.activation === 'swiglu' ? 1.5 : 1;
  const ffnEff = (isMoe(m) ? expertFfn(m) * topK(m) : m.ffn) * gated;
  const attn = 1 + m.kvHeads / m.heads + (attention === 'causal' ? s / (2 * h) : s / h);
  return 4 * s * h * h * (attn + ffnEff / h);
}

/** Core-attention forward FLOPs of one layer for one sequence (QK^T and AV; the selective-recompute part). */
export function coreAttentionForwardFlopsPerSequence(m: ModelSpec, s: number, attention: AttentionFlops = 'causal'): number {
  return 4 * s * s * m.hidden * (attention === 'causal' ? 0.5 : 1);
}
