/**
 * Compute kernels that IR `compute` ops may name (ComputeOp.kernel): the registry of the model's
 * Float32 kernels (parallelism/model/kernels.ts, with parallelism/train/kernels.ts), run by every executor that carries data on views
 * of the op's argument regions. Timing never depends on the kernel: it comes from the op's flops
 * and bytes (runtime/timing.ts), so timing-only runs skip the kernels.
 */
import { TRAIN_KERNELS as KERNELS } from '../parallelism/train/kernels.js';
import { IRError, type ComputeOp, type Program, type Region } from './ir.js';

/** Run the kernel of a compute op on views of its args. */
export function runComputeKernel(o: ComputeOp, view: (r: Region) => Float32Array): void {
  const def = KERNELS[o.kernel!];
  if (!def) throw new IRError(`unknown compute kernel ${JSON.stringify(o.kernel)}`);
  const args = o.args ?? [];
  const views = new Array<Float32Array>(args.length);
  for (let j = 0; j < args.length; j++) views[j] = view(args[j]!);
  def.run(views, o.params ?? []);
}

/** Static checks of kernel ops: known kernel, argument and parameter counts, argument lengths. */
export function validateKernelOps(programs: Program[]): void {
  programs.forEach((prog, r) => {
    prog.forEach((o, i) => {
      if (o.k !== 'compute' || o.kernel === undefined) return;
      const def = KERNELS[o.kernel];
      if (!def) throw new IRError(`rank ${r} op ${i}: unknown compute kernel ${JSON.stringify(o.kernel)}`);
      const args = o.args ?? [], params = o.params ?? [];
      if (args.length !== def.nArgs || params.length !== def.nParams) {
        throw new IRError(`rank ${r} op ${i}: kernel ${o.kernel} takes ${def.nArgs} args and ${def.nParams} params (got ${args.length} and ${params.length})`);
      }
      const lens = def.argLens(params);
      args.forEach((a, j) => {
        if (a.len !== lens[j]) throw new IRError(`rank ${r} op ${i}: kernel ${o.kernel} arg ${j} has ${a.len} elements, expected ${lens[j]}`);
      });
    });
  });
}
