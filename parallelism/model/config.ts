/**
 * Model configuration of the small Llama-style transformer (parallelism/model/): presets, validation
 * and loading from a preset name or a JSON file.
 *
 * Architecture: token embedding; `layers` pre-norm blocks, each RMSNorm → grouped-query attention
 * (RoPE, causal) → residual add → RMSNorm → SwiGLU MLP (or a top-k mixture of SwiGLU experts when
 * `moe` is set) → residual add; final RMSNorm; untied LM head; cross-entropy on next tokens.
 */
import { readFileSync } from 'node:fs';

export interface MoEConfig {
  /** number of experts E */
  experts: number;
  /** experts per token (top-k) */
  topk: number;
  /** capacity per expert per sequence = ceil(capacityFactor · seq · topk / experts) tokens */
  capacityFactor: number;
}

export interface ModelConfig {
  vocab: number;
  hidden: number;
  layers: number;
  /** query heads */
  heads: number;
  /** key/value heads (GQA); divides heads */
  kvHeads: number;
  /** MLP hidden size (per expert with MoE) */
  ffn: number;
  /** sequence length */
  seq: number;
  normEps: number;
  ropeTheta: number;
  moe?: MoEConfig;
}

export class ConfigError extends Error {
  constructor(msg: string) {
    super(msg);
    this.name = 'ConfigError';
  }
}

export const PRESETS: Readonly<Record<string, Readonly<ModelConfig>>> = Object.freeze({
  tiny: { vocab: 64, hidden: 32, layers: 2, heads: 4, kvHeads: 2, ffn: 64, seq: 16, normEps: 1e-5, ropeTheta: 10000 },
  small: { vocab: 256, hidden: 64, layers: 4, heads: 8, kvHeads: 4, ffn: 128, seq: 32, normEps: 1e-5, ropeTheta: 10000 },
  'tiny-moe': {
    vocab: 64, hidden: 32, layers: 2, heads: 4, kvHeads: 2, ffn: 32, seq: 16, normEps: 1e-5, ropeTheta: 10000,
    moe: { experts: 4, topk: 2, capacityFactor: 1.25 },
  },
});

/** hidden / heads */
export function headDim(cfg: ModelConfig): number {
  return cfg.hidden / cfg.heads;
}

/** Capacity C of each expert per routing group (one sequence): ceil(capacityFactor · seq · topk / experts), at least 1. */
export function moeCapacity(cfg: ModelConfig): number {
  if (!cfg.moe) throw new ConfigError('moeCapacity: the config has no moe section');
  const { experts, topk, capacityFactor } = cfg.moe;
  return Math.max(1, Math.ceil((capacityFactor * cfg.seq * topk) / experts - 1e-9));
}

const INT_FIELDS = ['vocab', 'hidden', 'layers', 'heads', 'kvHeads', 'ffn', 'seq'] as const;
const KNOWN = new Set<string>([...INT_FIELDS, 'normEps', 'ropeTheta', 'moe']);
const MOE_KNOWN = new Set(['experts', 'topk', 'capacityFactor']);

/**
 * Check a config and return it (typed). Throws a ConfigError naming every problem: missing or
 * unknown fields, non-positive or non-integer sizes, hidden not divisible by heads, heads not
 * divisible by kvHeads, odd head dimension (RoPE rotates pairs), vocab above 2^24 (token ids are
 * stored as float32), bad normEps / ropeTheta, and bad moe fields.
 */
export function validateConfig(cfg: unknown): ModelConfig {
  const errs: string[] = [];
  if (typeof cfg !== 'object' || cfg === null || Array.isArray(cfg)) throw new ConfigError('model config must be an object');
  const c = cfg as Record<string, unknown>;
  for (const key of Object.keys(c)) if (!KNOWN.has(key)) errs.push(`unknown field '${key}' (known: ${[...KNOWN].join(', ')})`);
  for (const f of INT_FIELDS) {
    const v = c[f];
    if (v === undefined) errs.push(`missing field '${f}'`);
    else if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) errs.push(`${f} must be an integer >= 1, got ${JSON.stringify(v)}`);
  }
  for (const f of ['normEps', 'ropeTheta'] as const) {
    const v = c[f];
    if (v === undefined) errs.push(`missing field '${f}'`);
    else if (typeof v !== 'number' || !Number.isFinite(v)) errs.push(`${f} must be a finite number, got ${JSON.stringify(v)}`);
  }
  if (errs.length === 0) {
    const m = c as unknown as ModelConfig;
    if (m.hidden % m.heads !== 0) errs.push(`hidden (${m.hidden}) must be divisible by heads (${m.heads})`);
    else if ((m.hidden / m.heads) % 2 !== 0) errs.push(`head dimension hidden/heads = ${m.hidden / m.heads} must be even (RoPE rotates pairs)`);
    if (m.heads % m.kvHeads !== 0) errs.push(`heads (${m.heads}) must be divisible by kvHeads (${m.kvHeads})`);
    if (m.vocab > 1 << 24) errs.push(`vocab (${m.vocab}) must be <= 2^24 (token ids are stored as float32)`);
    if (!(m.normEps > 0)) errs.push(`normEps must be > 0, got ${m.normEps}`);
    if (!(m.ropeTheta > 1)) errs.push(`ropeTheta must be > 1, got ${m.ropeTheta}`);
  }
  if (c.moe !== undefined) {
    const moe = c.moe as Record<string, unknown>;
    if (typeof moe !== 'object' || moe === null || Array.isArray(moe)) errs.push('moe must be an object {experts, topk, capacityFactor}');
    else {
      for (const key of Object.keys(moe)) if (!MOE_KNOWN.has(key)) errs.push(`unknown field 'moe.${key}' (known: ${[...MOE_KNOWN].join(', ')})`);
      const { experts, topk, capacityFactor } = moe;
      if (typeof experts !== 'number' || !Number.isInteger(experts) || experts < 1) errs.push(`moe.experts must be an integer >= 1, got ${JSON.stringify(experts)}`);
      if (typeof topk !== 'number' || !Number.isInteger(topk) || topk < 1) errs.push(`moe.topk must be an integer >= 1, got ${JSON.stringify(topk)}`);
      else if (typeof experts === 'number' && topk > experts) errs.push(`moe.topk (${topk}) must be <= moe.experts (${experts})`);
      if (typeof capacityFactor !== 'number' || !Number.isFinite(capacityFactor) || capacityFactor <= 0) {
        errs.push(`moe.capacityFactor must be a number > 0, got ${JSON.stringify(capacityFactor)}`);
      }
    }
  }
  if (errs.length) throw new ConfigError(`invalid model config: ${errs.join('; ')}`);
  return cfg as ModelConfig;
}

/**
 * A model config from a preset name (tiny, small, tiny-moe) or a JSON file. The file holds a full
 * config object, or `{"preset": "<name>", ...overrides}`; normEps and ropeTheta default to 1e-5 and
 * 10000. The result is validated and is a fresh object.
 */
export function loadModelConfig(nameOrJsonFile: string): ModelConfig {
  if (Object.prototype.hasOwnProperty.call(PRESETS, nameOrJsonFile)) return clone(PRESETS[nameOrJsonFile]!);
  let text: string;
  try {
    text = readFileSync(nameOrJsonFile, 'utf8');
  } catch (e) {
    throw new ConfigError(`model config '${nameOrJsonFile}' is neither a preset (${Object.keys(PRESETS).join(', ')}) nor a readable JSON file: ${(e as Error).message}`);
  }
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`model config file '${nameOrJsonFile}': invalid JSON: ${(e as Error).message}`);
  }
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) throw new ConfigError(`model config file '${nameOrJsonFile}': expected a JSON object`);
  let o = { ...(obj as Record<string, unknown>) };
  if ('preset' in o) {
    const name = o.preset;
    if (typeof name !== 'string' || !Object.prototype.hasOwnProperty.call(PRESETS, name)) {
      throw new ConfigError(`model config file '${nameOrJsonFile}': unknown preset ${JSON.stringify(name)} (known: ${Object.keys(PRESETS).join(', ')})`);
    }
    delete o.preset;
    o = { ...clone(PRESETS[name]!), ...o };
  }
  o.normEps ??= 1e-5;
  o.ropeTheta ??= 10000;
  try {
    return validateConfig(o);
  } catch (e) {
    throw new ConfigError(`model config file '${nameOrJsonFile}': ${(e as Error).message}`);
  }
}

function clone(c: Readonly<ModelConfig>): ModelConfig {
  return c.moe ? { ...c, moe: { ...c.moe } } : { ...c };
}
