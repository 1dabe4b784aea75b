/**
 * Transformer model descriptions for the step-time model: presets, JSON files, parameter counts.
 *
 * A model is a decoder-only transformer: `layers` blocks of (norm, attention, norm, MLP) with
 * residuals, a token embedding of vocab x hidden, a final norm and an output projection
 * (vocab x hidden; the same matrix as the embedding when the embeddings are tied, as in GPT-3).
 *  - attention: `heads` query heads of hidden/heads dims, `kv_heads` key/value heads (GQA; kv_heads =
 *    heads is plain multi-head attention), causal;
 *  - MLP: `activation` gelu (two matrices h x ffn, ffn x h, with biases as GPT-3) or swiglu (three
 *    matrices, gate and up h x ffn and down ffn x h, no biases, as Llama);
 *  - MoE (optional): `experts` MLPs of `expert_ffn` (default ffn) per layer, `top_k` of them per
 *    token, plus a router h x experts; every layer is an MoE layer.
 *  - dropout (optional, default false): whether the model trains with dropout (GPT-3 did, Llama does
 *    not); it adds the dropout masks of Korthikanti et al. 2022 to the activation memory (the
 *    attention-output and MLP-output masks, and with unfused attention the attention-probability
 *    mask and dropout output; memory.ts) and their elementwise traffic (compute.ts). The other
 *    switches of the activation accounting belong to the run, not the model: PredictInput.attention
 *    (flash | unfused) and PredictInput.activationMemory (megatron | lean).
 *
 * JSON file keys: layers, hidden, ffn, heads, kv_heads, vocab, activation ("gelu" | "swiglu"),
 * optional: name, experts, top_k, expert_ffn, dropout, tied_embeddings, comment.
 *
 * Presets (published configurations):
 *  - llama3-8b / 70b / 405b: The Llama 3 Herd of Models (2024), Table 3 and the released configs:
 *    32/80/126 layers, hidden 4096/8192/16384, FFN 14336/28672/53248, 32/64/128 heads, 8 KV heads,
 *    vocab 128,256, SwiGLU, untied embeddings (calibration.md lists 128,000 as in the paper's table).
 *  - gpt3-175b: Brown et al. 2020 / Narayanan et al. 2021: 96 layers, hidden 12288, 96 heads, FFN
 *    4h, GeLU, vocab 51,200 (Megatron's padded vocabulary, as in Narayanan et al. and Korthikanti et
 *    al.), dropout, tied embeddings.
 *  - mixtral-8x7b: Mistral's Mixtral 8x7B config: 32 layers, hidden 4096, FFN 14336, 32 heads, 8 KV
 *    heads, vocab 32,000, SwiGLU, 8 experts, top-2.
 */
import { readFileSync } from 'node:fs';
import { PredictError } from './errors.js';

export interface ModelSpec {
  name: string;
  layers: number;
  hidden: number;
  ffn: number;
  heads: number;
  kvHeads: number;
  vocab: number;
  activation: 'gelu' | 'swiglu';
  /** MoE: number of experts (1 or undefined = dense) */
  experts?: number;
  /** MoE: experts per token */
  topK?: number;
  /** MoE: FFN size of one expert (default ffn) */
  expertFfn?: number;
  /** trained with dropout (adds the masks to activation memory; default false) */
  dropout?: boolean;
  /** output projection shares the embedding matrix (default false) */
  tiedEmbeddings?: boolean;
}

export const MODEL_PRESETS: Record<string, ModelSpec> = {
  'llama3-8b': { name: 'llama3-8b', layers: 32, hidden: 4096, ffn: 14336, heads: 32, kvHeads: 8, vocab: 128256, activation: 'swiglu' },
  'llama3-70b': { name: 'llama3-70b', layers: 80, hidden: 8192, ffn: 28672, heads: 64, kvHeads: 8, vocab: 128256, activation: 'swiglu' },
  'llama3-405b': { name: 'llama3-405b', layers: 126, hidden: 16384, ffn: 53248, heads: 128, kvHeads: 8, vocab: 128256, activation: 'swiglu' },
  'gpt3-175b': {
    name: 'gpt3-175b', layers: 96, hidden: 12288, ffn: 49152, heads: 96, kvHeads: 96, vocab: 51200, activation: 'gelu',
    dropout: true, tiedEmbeddings: true,
  },
  'mixtral-8x7b': {
    name: 'mixtral-8x7b', layers: 32, hidden: 4096, ffn: 14336, heads: 32, kvHeads: 8, vocab: 32000, activation: 'swiglu',
    experts: 8, topK: 2,
  },
};

const posInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 1;

/**
 * Upper bounds on a model's dimensions: far beyond any model built (405B: 126 layers, hidden
 * 16,384, ffn 53,248, vocab 128,256), low enough that every figure the model derives stays finite
 * and the planner's searches (over pp up to the layer count) stay short.
 */
export const MODEL_LIMITS = { layers: 100_000, hidden: 1 << 20, ffn: 1 << 23, heads: 1 << 16, kvHeads: 1 << 16, vocab: 1 << 24, experts: 1 << 16, topK: 1 << 16, expertFfn: 1 << 23 } as const;

/** Check a model description; throws PredictError naming the first problem. */
export function validateModel(m: ModelSpec, where = `model '${m.name}'`): ModelSpec {
  for (const k of ['layers', 'hidden', 'ffn', 'heads', 'kvHeads', 'vocab'] as const) {
    if (!posInt(m[k])) throw new PredictError(`${where}: ${k === 'kvHeads' ? 'kv_heads' : k} must be an integer >= 1 (got ${JSON.stringify(m[k])})`);
  }
  for (const k of ['layers', 'hidden', 'ffn', 'heads', 'kvHeads', 'vocab', 'experts', 'topK', 'expertFfn'] as const) {
    const v = m[k];
    if (typeof v === 'number' && v > MODEL_LIMITS[k]) {
      const name = { kvHeads: 'kv_heads', topK: 'top_k', expertFfn: 'expert_ffn' }[k as string] ?? k;
      throw new PredictError(`${where}: ${name} ${v} is beyond what collemu models (at most ${MODEL_LIMITS[k]})`);
    }
  }
  if (m.activation !== 'gelu' && m.activation !== 'swiglu') throw new PredictError(`${where}: activation must be "gelu" or "swiglu" (got ${JSON.stringify(m.activation)})`);
  if (m.hidden % m.heads !== 0) throw new PredictError(`${where}: hidden ${m.hidden} is not divisible by heads ${m.heads}`);
  if (m.heads % m.kvHeads !== 0) throw new PredictError(`${where}: heads ${m.heads} is not divisible by kv_heads ${m.kvHeads}`);
  if (m.experts !== undefined && !posInt(m.experts)) throw new PredictError(`${where}: experts must be an integer >= 1 (got ${JSON.stringify(m.experts)})`);
  if (m.topK !== undefined && !posInt(m.topK)) throw new PredictError(`${where}: top_k must be an integer >= 1 (got ${JSON.stringify(m.topK)})`);
  if (m.expertFfn !== undefined && !posInt(m.expertFfn)) throw new PredictError(`${where}: expert_ffn must be an integer >= 1 (got ${JSON.stringify(m.expertFfn)})`);
  if ((m.experts ?? 1) > 1 && (m.topK ?? 1) > m.experts!) throw new PredictError(`${where}: top_k ${m.topK} is larger than experts ${m.experts}`);
  return m;
}

/** A model from a JSON object (the file format in the header). */
export function modelFromJson(j: unknown, where = 'model'): ModelSpec {
  if (typeof j !== 'object' || j === null || Array.isArray(j)) throw new PredictError(`${where}: must be a JSON object`);
  const o = j as Record<string, unknown>;
  const known = ['name', 'layers', 'hidden', 'ffn', 'heads', 'kv_heads', 'vocab', 'activation', 'experts', 'top_k', 'expert_ffn', 'dropout', 'tied_embeddings', 'comment'];
  for (const k of Object.keys(o)) if (!known.includes(k)) throw new PredictError(`${where}: unknown key '${k}' (known: ${known.join(', ')})`);
  for (const k of ['layers', 'hidden', 'ffn', 'heads', 'vocab', 'activation']) {
    if (o[k] === undefined) throw new PredictError(`${where}: missing key '${k}'`);
  }
  for (const k of ['dropout', 'tied_embeddings']) {
    if (o[k] !== undefined && typeof o[k] !== 'boolean') throw new PredictError(`${where}: ${k} must be true or false`);
  }
  const m: ModelSpec = {
    name: typeof o.name === 'string' ? o.name : where,
    layers: o.layers as number, hidden: o.hidden as number, ffn: o.ffn as number, heads: o.heads as number,
    kvHeads: (o.kv_heads ?? o.heads) as number, vocab: o.vocab as number, activation: o.activation as ModelSpec['activation'],
  };
  if (o.experts !== undefined) m.experts = o.experts as number;
  if (o.top_k !== undefined) m.topK = o.top_k as number;
  if (o.expert_ffn !== undefined) m.expertFfn = o.expert_ffn as number;
  if (o.dropout !== undefined) m.dropout = o.dropout as boolean;
  if (o.tied_embeddings !== undefined) m.tiedEmbeddings = o.tied_embeddings as boolean;
  return validateModel(m, where);
}

/** A preset name, a path to a JSON file, or a ModelSpec (validated). */
export function resolveModel(m: string | ModelSpec): ModelSpec {
  if (typeof m !== 'string') return validateModel({ ...m });
  const pre = MODEL_PRESETS[m.toLowerCase()];
  if (pre) return { ...pre };
  if (m.endsWith('.json') || m.includes('/')) {
    let text: string;
    try {
      text = readFileSync(m, 'utf8');
    } catch (e) {
      throw new PredictError(`cannot read model file ${m}: ${(e as Error).message}`);
    }
    let j: unknown;
    try {
      j = JSON.parse(text);
    } catch (e) {
      throw new PredictError(`model file ${m} is not valid JSON: ${(e as Error).message}`);
    }
    return modelFromJson(j, m);
  }
  throw new PredictError(`unknown model '${m}' (presets: ${Object.keys(MODEL_PRESETS).join(', ')}, or a .json file)`);
}

export const headDim = (m: ModelSpec) => m.hidden / m.heads;
/** width of K (and of V): kv_heads x head dim */
export const kvDim = (m: ModelSpec) => m.kvHeads * headDim(m);
export const isMoe = (m: ModelSpec) => (m.experts ?? 1) > 1;
export const expertFfn = (m: ModelSpec) => m.expertFfn ?? m.ffn;
export const topK = (m: ModelSpec) => (isMoe(m) ? m.topK ?? 1 : 1);
/** matrices of one MLP: 2 for gelu, 3 for swiglu */
export const mlpMatrices = (m: ModelSpec) => (m.activation === 'swiglu' ? 3 : 2);
const hasBias = (m: ModelSpec) => m.activation === 'gelu';

/** Parameters of one layer, split into the attention part, the dense MLP / experts, norms and router. */
export function layerParams(m: ModelSpec): { attention: number; mlp: number; experts: number; norms: number; router: number } {
  const h = m.hidden, kv = kvDim(m);
  const attention = h * (h + 2 * kv) + h * h + (hasBias(m) ? h + 2 * kv + h : 0);
  const oneMlp = mlpMatrices(m) * h * (isMoe(m) ? expertFfn(m) : m.ffn) + (hasBias(m) ? (isMoe(m) ? expertFfn(m) : m.ffn) + h : 0);
  const norms = hasBias(m) ? 4 * h : 2 * h;
  if (isMoe(m)) return { attention, mlp: 0, experts: m.experts! * oneMlp, norms, router: h * m.experts! };
  return { attention, mlp: oneMlp, experts: 0, norms, router: 0 };
}

/** Total parameters (embedding counted once when tied) and the parameters active per token. */
export function modelParams(m: ModelSpec): { total: number; active: number; embedding: number } {
  const lp = layerParams(m);
  const emb = m.vocab * m.hidden;
  const head = m.tiedEmbeddings ? 0 : m.vocab * m.hidden;
  const perLayer = lp.attention + lp.mlp + lp.experts + lp.norms + lp.router;
  const activePerLayer = lp.attention + lp.mlp + lp.norms + lp.router + (isMoe(m) ? (lp.experts / m.experts!) * topK(m) : 0);
  return { total: m.layers * perLayer + emb + head + m.hidden, active: m.layers * activePerLayer + emb + head + m.hidden, embedding: emb + head };
}
