/**
 * GPU hardware profiles. Figures and sources: ../shared/reference/hardware.md.
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
  /** scale-up (NVLink) bandwidth per GPU per direction, bytes/s */
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
};

export function hardwareProfile(name: string): HardwareProfile {
  const hw = HARDWARE[name.toLowerCase()];
  if (!hw) throw new Error(`unknown GPU '${name}' (known: ${Object.keys(HARDWARE).join(', ')})`);
  return hw;
}

/**
 * Modeled cost of local data movement on a GPU: a reduction reads two operands and writes one
 * (3 bytes of HBM traffic per byte reduced), a copy reads one and writes one (2 per byte).
 */
export const reduceCostPerByte = (hw: HardwareProfile) => 3 / hw.hbmBandwidth;
export const copyCostPerByte = (hw: HardwareProfile) => 2 / hw.hbmBandwidth;
