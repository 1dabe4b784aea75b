/**
 * GPU and TPU hardware profiles. Figures and sources: ../shared/reference/hardware.md.
 * Peak figures are dense (no sparsity). Bytes are decimal (1 GB = 1e9 B) unless named GiB.
 */

export type Dtype = 'fp32' | 'tf32' | 'bf16' | 'fp16' | 'fp8';

export interface HardwareProfile {
  name: string;
  /** peak dense FLOP/s per dtype */
  peakFlops: Record<Dtype, number>;
  /** HBM capacity in bytes */
  hbmBytes: number;
  /** HBM bandwidth in bytes/s */
  hbmBandwidth: number;
  /** scale-up (NVLink; TPU: ICI, all links) bandwidth per GPU per direction, bytes/s */
  scaleUpBandwidth: number;
  source: string;
}

const T = 1e12;

export const HARDWARE: Record<string, HardwareProfile> = {
  // NVIDIA A100 SXM 80GB datasheet; Narayanan et al. 2021 (Megatron-LM, Selene): 312 TFLOP/s BF16,
  // 19.5 TFLOP/s FP32, 156 TF32 dense; 80 GB HBM2e at 2.0 TB/s; NVLink 3 300 GB/s per direction.
  a100: {
    name: 'A100 SXM 80GB',
    peakFlops: { fp32: 19.5 * T, tf32: 156 * T, bf16: 312 * T, fp16: 312 * T, fp8: 312 * T },
    hbmBytes: 80e9,
    hbmBandwidth: 2.0e12,
    scaleUpBandwidth: 300e9,
    source: 'NVIDIA A100 datasheet; Narayanan et al. 2021',
  },
  // NVIDIA H100 SXM datasheet (secondary): 989 TFLOP/s BF16/FP16 dense, 1979 FP8, 494 TF32, 67 FP32;
  // 80 GB HBM3 at 3.35 TB/s; NVLink 4 450 GB/s per direction (nccl-tests issue #212: line rate).
  h100: {
    name: 'H100 SXM 80GB',
    peakFlops: { fp32: 67 * T, tf32: 494 * T, bf16: 989 * T, fp16: 989 * T, fp8: 1979 * T },
    hbmBytes: 80e9,
    hbmBandwidth: 3.35e12,
    scaleUpBandwidth: 450e9,
    source: 'NVIDIA H100 datasheet (2nd); nccl-tests #212',
  },
  // H200: H100 compute, 141 GB HBM3e at 4.8 TB/s (MLPerf v4.1 system description; 2nd for bandwidth).
  h200: {
    name: 'H200 SXM 141GB',
    peakFlops: { fp32: 67 * T, tf32: 494 * T, bf16: 989 * T, fp16: 989 * T, fp8: 1979 * T },
    hbmBytes: 141e9,
    hbmBandwidth: 4.8e12,
    scaleUpBandwidth: 450e9,
    source: 'MLPerf v4.1 system description; NVIDIA H200 page (2nd)',
  },
  // B200 as in a GB200 NVL72 (hardware.md GPU table, "B200 / GB200 NVL72" row, NVIDIA GB200 NVL72
  // page (2nd)): BF16 dense ~2.25-2.5 PFLOP/s -> 2.5 (the GB200 part; 2.25 is HGX B200);
  // HBM3e ~180-192 GB -> 186 GB (13.4 TB per 72-GPU rack / 72, the NVL72 page's figure);
  // HBM bandwidth ~7.7-8 TB/s -> 8 TB/s; NVLink 5: 900 GB/s per direction.
  // FP8 = 2x BF16 and TF32 = BF16 / 2 as on H100 (derived); FP32 ~80 TFLOP/s (approximate, not in
  // hardware.md; only bf16 is used by the executors).
  b200: {
    name: 'B200 (GB200) 186GB',
    peakFlops: { fp32: 80 * T, tf32: 1250 * T, bf16: 2500 * T, fp16: 2500 * T, fp8: 5000 * T },
    hbmBytes: 186e9,
    hbmBandwidth: 8e12,
    scaleUpBandwidth: 900e9,
    source: 'hardware.md (B200 / GB200 NVL72 row); NVIDIA GB200 NVL72 page (2nd)',
  },
  // TPUs: hardware.md "TPUs" table (Google Cloud TPU docs; jax-ml scaling-book tpus.md). BF16 peak,
  // HBM and HBM bandwidth as listed. scaleUpBandwidth = ICI per chip per direction: links x
  // per-link one-way bandwidth (runtime/topology.ts has the per-link figures and how v5e's is derived).
  // TPUs have no FP8 (v4-v6e) or FP16/TF32 MXU paths of their own: fp16 = bf16; fp8 = bf16 (runs as
  // bf16); fp32 ~ bf16 / 6 and tf32 ~ bf16 / 3 (XLA's multi-pass bf16 emulation, precision HIGHEST /
  // HIGH; derived, approximate).
  'tpu-v4': {
    name: 'TPU v4 32GiB',
    peakFlops: { fp32: 275 * T / 6, tf32: 275 * T / 3, bf16: 275 * T, fp16: 275 * T, fp8: 275 * T },
    hbmBytes: 32 * 2 ** 30,
    hbmBandwidth: 1.2e12,
    scaleUpBandwidth: 6 * 45e9,
    source: 'hardware.md TPU table (Google Cloud TPU docs; scaling-book tpus.md)',
  },
  'tpu-v5p': {
    name: 'TPU v5p 95GB',
    peakFlops: { fp32: 459 * T / 6, tf32: 459 * T / 3, bf16: 459 * T, fp16: 459 * T, fp8: 459 * T },
    hbmBytes: 95e9,
    hbmBandwidth: 2.77e12,
    scaleUpBandwidth: 6 * 90e9,
    source: 'hardware.md TPU table (Google Cloud TPU docs; scaling-book tpus.md)',
  },
  'tpu-v5e': {
    name: 'TPU v5e 16GB',
    peakFlops: { fp32: 197 * T / 6, tf32: 197 * T / 3, bf16: 197 * T, fp16: 197 * T, fp8: 197 * T },
    hbmBytes: 16e9,
    hbmBandwidth: 819e9,
    scaleUpBandwidth: 4 * 50e9,
    source: 'hardware.md TPU table (Google Cloud TPU docs; scaling-book tpus.md); ICI derived (topology.ts)',
  },
  'tpu-v6e': {
    name: 'TPU v6e (Trillium) 32GB',
    peakFlops: { fp32: 918 * T / 6, tf32: 918 * T / 3, bf16: 918 * T, fp16: 918 * T, fp8: 918 * T },
    hbmBytes: 32e9,
    hbmBandwidth: 1.64e12,
    scaleUpBandwidth: 4 * 100e9,
    source: 'hardware.md TPU table (Google Cloud TPU docs; scaling-book tpus.md)',
  },
};

/** An unknown hardware profile name: bad input (the CLI's one-line error, exit 2). */
export class HardwareError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HardwareError';
  }
}

export function hardwareProfile(name: string): HardwareProfile {
  const hw = HARDWARE[name.toLowerCase()];
  if (!hw) throw new HardwareError(`unknown GPU '${name}' (known: ${Object.keys(HARDWARE).join(', ')})`);
  return hw;
}

/**
 * Modeled cost of local data movement on a GPU: a reduction reads two operands and writes one
 * (3 bytes of HBM traffic per byte reduced), a copy reads one and writes one (2 per byte).
 */
export const reduceCostPerByte = (hw: HardwareProfile) => 3 / hw.hbmBandwidth;
export const copyCostPerByte = (hw: HardwareProfile) => 2 / hw.hbmBandwidth;
