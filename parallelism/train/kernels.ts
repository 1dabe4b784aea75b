/**
 * The kernels training programs may name: the model's kernels (parallelism/model/kernels.ts) plus
 * layout kernels the parallel strategies need (a 2D transpose for the vocabulary-parallel head) and
 * the parity check's zero-cost gradient capture.
 * runtime/compute.ts runs IR compute ops from this registry.
 */
import { KERNELS, KernelError, type KernelDef } from '../model/kernels.js';

const transpose: KernelDef = {
  name: 'transpose',
  nArgs: 2,
  nParams: 2,
  argNames: ['x', 'y'],
  paramNames: ['rows', 'cols'],
  writes: [1],
  argLens(p) {
    const [rows, cols] = p as [number, number];
    if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows < 0 || cols < 0) throw new KernelError(`transpose: bad shape ${rows}x${cols}`);
    return [rows * cols, rows * cols];
  },
  /** y[c, r] = x[r, c] for x [rows, cols] */
  run(a, p) {
    const [x, y] = a as [Float32Array, Float32Array];
    const rows = p[0]!, cols = p[1]!;
    for (let r = 0; r < rows; r++) {
      const o = r * cols;
      for (let c = 0; c < cols; c++) y[c * rows + r] = x[o + c]!;
    }
  },
  cost(p) {
    return { flops: 0, bytes: 2 * 4 * p[0]! * p[1]! };
  },
};

/**
 * capture [x, y]; [n]: y = x. Instrumentation (the parity check's copy of a gradient into the
 * 'out' buffer): it models no GPU work, so it costs nothing in virtual time.
 */
const capture: KernelDef = {
  name: 'capture',
  nArgs: 2,
  nParams: 1,
  argNames: ['x', 'y'],
  paramNames: ['n'],
  writes: [1],
  argLens(p) {
    const [n] = p as [number];
    if (p.length !== 1 || !Number.isInteger(n) || n < 0) throw new KernelError(`capture: bad length ${n}`);
    return [n, n];
  },
  run(a) {
    a[1]!.set(a[0]!);
  },
  cost() {
    return { flops: 0, bytes: 0 };
  },
};

export const TRAIN_KERNELS: Record<string, KernelDef> = Object.freeze({ ...KERNELS, transpose, capture });
