/** The `collemu` command line. */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { ALGORITHMS, AlgorithmError } from '../collectives/registry.js';
import { COLLECTIVES, type Algorithm, type Collective } from '../collectives/types.js';
import { EmulatorDeadlock, RankFailure } from '../runtime/cluster.js';
import { ContentionDeadlock } from '../runtime/contention.js';
import { HardwareError } from '../runtime/hardware.js';
import { IRError, type ReduceOp } from '../runtime/ir.js';
import { DeadlockError } from '../runtime/simulate.js';
import { OutOfMemoryError } from '../runtime/memory.js';
import { makeTopology, TopologyError, TOPOLOGY_PRESETS, type TopologyOptions } from '../runtime/topology.js';
import { writeTrace } from '../runtime/trace.js';
import { footerLines, formatRow, formulaLines, headerLines, jsonRows, parseBytes, runBench, runSimulate, scaleLines, UsageError } from './bench.js';
import { registerCalibrate } from './calibrate.js';
import { checkOutputOptions, guardWrite, writeOutput } from './output.js';
import { registerPipeline } from './pipeline.js';
import { registerTrain } from './train.js';
import { PredictError, registerPredictCommands } from './predict.js';
import { registerScenarioCommands } from './scenario.js';
import { MeshError } from '../parallelism/mesh.js';
import { ConfigError } from '../parallelism/model/config.js';
import { KernelError } from '../parallelism/model/kernels.js';
import { ScheduleError } from '../parallelism/schedules.js';
import { TrainOutOfMemory } from '../parallelism/train/arena.js';
import { TrainConfigError } from '../parallelism/train/step.js';

const BENCH_COLLS = ['allreduce', 'allgather', 'reducescatter', 'broadcast', 'reduce', 'alltoall', 'sendrecv', 'barrier'];

function num(what: string, integer = false) {
  return (v: string) => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || (integer && !Number.isInteger(n))) throw new InvalidArgumentError(`${what} must be ${integer ? 'an integer' : 'a number'}`);
    return n;
  };
}
const bytesArg = (what: string) => (v: string) => {
  try {
    return parseBytes(v, what);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
};

interface TopoFlags { topology: string; ranks?: number; nodes?: number; linkBw?: number; linkLatency?: number; reduceBw?: number; gpu?: string; memCapacity?: number; torus?: string; oversubscription?: number; podSize?: number; ingress?: boolean; contention?: boolean; nicsPerNode?: number }

function topoFrom(f: TopoFlags) {
  const o: TopologyOptions = {
    ranks: f.ranks, nodes: f.nodes, linkBw: f.linkBw, linkLatency: f.linkLatency, reduceBw: f.reduceBw, gpu: f.gpu, memCapacity: f.memCapacity, torus: f.torus,
    spineOversubscription: f.oversubscription, podSize: f.podSize, ...(f.ingress ? { ingress: true } : {}),
    ...(f.contention ? { contention: true } : {}), nicsPerNode: f.nicsPerNode,
  };
  return makeTopology(f.topology, o);
}

function addTopoOptions(c: Command): Command {
  return c
    .option('--ranks <N>', 'number of ranks (simulated GPUs)', num('--ranks', true))
    .option('--topology <NAME|FILE>', `topology preset (${TOPOLOGY_PRESETS.join(', ')}) or a JSON file`, 'hgx-h100')
    .option('--nodes <K>', 'nodes for hgx-h100 / dgx-a100 (8 GPUs each), racks for gb200-nvl72 (72 each)', num('--nodes', true))
    .option('--oversubscription <S>', 'hgx-h100 / dgx-a100 / llama3: spine (llama3: between pods) oversubscription 1:S, charged as the per-GPU share under full load', num('--oversubscription'))
    .option('--pod-size <N>', 'llama3: GPUs per pod (default 3072); with --contention on hgx-h100 / dgx-a100: GPUs per scalable unit (default 256)', num('--pod-size', true))
    .option('--torus <AxBxC>', 'TPU presets: slice shape, e.g. 4x4x8 (3D) or 8x8 (2D); axis suffix w/m forces/removes the wraparound')
    .option('--link-bw <GB/s>', 'flat: link bandwidth per direction', num('--link-bw'))
    .option('--link-latency <us>', 'flat: link latency', num('--link-latency'))
    .option('--reduce-bw <GB/s>', 'modeled local reduce/copy throughput (0 = free); default: from the GPU HBM bandwidth (flat: free)', num('--reduce-bw'))
    .option('--gpu <NAME>', 'hardware profile: a100, h100, h200, b200, tpu-v4, tpu-v5p, tpu-v5e, tpu-v6e')
    .option('--mem-capacity <bytes>', 'device memory per rank (scaled down), e.g. 2G', bytesArg('--mem-capacity'))
    .option('--ingress', 'model receiver-side (ingress) contention: messages into a rank share its ingress port, in its receive order')
    .option('--contention', 'time shared resources (spine / pod uplinks, shared NICs, torus route links) in start-time order instead of static shares')
    .option('--nics-per-node <K>', 'hgx-h100 / dgx-a100: NICs per 8-GPU node (1, 2, 4, 8; default 8 = one per GPU)', num('--nics-per-node', true));
}

async function loadAlgoFile(file: string, coll: Collective): Promise<Algorithm> {
  if (!existsSync(file)) throw new UsageError(`cannot read --algo-file ${file}: no such file`);
  let mod: Record<string, unknown>;
  try {
    mod = (await import(pathToFileURL(resolve(file)).href)) as Record<string, unknown>;
  } catch (e) {
    const err = e as Error;
    throw new UsageError(`--algo-file ${file}: cannot load it as a JavaScript module: ${err.name}: ${err.message.split('\n')[0]}`);
  }
  const a = (mod.default ?? mod.algorithm) as Algorithm | undefined;
  if (!a || typeof a.build !== 'function' || typeof a.cost !== 'function' || typeof a.name !== 'string') {
    throw new UsageError(`${file} must export (default or 'algorithm') an object with name, coll, build(spec, topo) and cost(spec, topo)`);
  }
  if (a.coll !== coll) throw new UsageError(`${file} implements ${a.coll}, not ${coll}`);
  return a;
}

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('collemu')
    .description('Emulator of GPU collective communication: worker threads as GPUs, real Float32 collectives, deterministic virtual time')
    .version('0.1.0')
    // argument errors as every other bad input: one line 'collemu: error: ...' (exit 2, see main);
    // commander's own messages start with 'error: ' and may add a '(Did you mean ...?)' line
    .configureOutput({ outputError: (s, write) => write(`collemu: ${s.trim().replace(/\s*\n\s*/g, ' ')} (run with --help for usage)\n`) })
    // output files (--json, --trace, --csv-out, --out) are checked before any command runs
    .hook('preAction', (_self, action) => checkOutputOptions(action.opts()));

  const sweepCommand = (name: 'bench' | 'simulate', description: string) => {
    const cmd = program
      .command(name)
      .description(description)
      .argument('<collective>', BENCH_COLLS.join('|'))
      .option('--algo <NAME>', 'algorithm name or auto (see `collemu algos`)', 'auto')
      .option('--algo-file <FILE>', 'a JavaScript module exporting a user-written Algorithm (see README: Writing an algorithm)')
      .option('-b, --min-bytes <size>', 'smallest size (suffixes K, M, G)', bytesArg('--min-bytes'), 1024)
      .option('-e, --max-bytes <size>', 'largest size', bytesArg('--max-bytes'), 64 * 1024 * 1024)
      .option('-f, --factor <F>', 'size multiplication factor', num('--factor'), 4)
      .option('-n, --iters <N>', 'timed iterations', num('--iters', true), name === 'bench' ? 20 : 1)
      .option('-w, --warmup <N>', 'warm-up iterations', num('--warmup', true), name === 'bench' ? 5 : 0)
      .option('-c, --check <0|1>', 'check results (1) or not (0)', num('--check', true), name === 'bench' ? 1 : 0)
      .option('--op <OP>', 'reduction: sum, prod, max, min, avg', 'sum')
      .option('-r, --root <R>', 'root rank for broadcast / reduce', num('--root', true), 0)
      .option('--no-in-place', 'skip the in-place half')
      .option('--scale-down <k>', 'run tensors / k on links (and reduce/copy throughput, memory) / k: stands for the full size (prints both)', num('--scale-down'), 1)
      .option('--trace <FILE>', "write the largest size's out-of-place run as Chrome trace JSON (or .msgpack)")
      .option('--json <FILE|->', 'write rows as JSON to FILE, or to stdout with -');
    if (name === 'bench') {
      cmd
        .option('--pace <dilation>', 'wall-clock pacing: wall time tracks virtual time x dilation (0 = off)', num('--pace'), 0)
        .option('--no-simd', 'plain JavaScript kernels instead of WebAssembly SIMD');
    }
    return addTopoOptions(cmd);
  };

  const sweepAction = (name: 'bench' | 'simulate') => async (collArg: string, f: Record<string, unknown> & TopoFlags) => {
    if (!BENCH_COLLS.includes(collArg)) throw new UsageError(`unknown collective '${collArg}' (known: ${BENCH_COLLS.join(', ')})`);
    const coll = collArg as Collective;
    if (f.check !== 0 && f.check !== 1) throw new UsageError(`--check must be 0 or 1 (got ${f.check})`);
    if (name === 'simulate' && f.check === 1) throw new UsageError('the simulator moves no data: --check 1 needs `collemu bench`');
    if (f.algoFile && f.algo !== 'auto') throw new UsageError('give either --algo or --algo-file, not both');
    const topo = topoFrom(f);
    const algo = f.algoFile ? await loadAlgoFile(f.algoFile as string, coll) : (f.algo as string);
    const json = f.json as string | undefined;
    const toStdout = json === '-';
    const out = (s: string) => { if (!toStdout) process.stdout.write(s + '\n'); };
    const opts = {
      coll, topo, algo, minBytes: f.minBytes as number, maxBytes: f.maxBytes as number, factor: f.factor as number,
      iters: f.iters as number, warmup: f.warmup as number, check: f.check === 1, op: f.op as ReduceOp, root: f.root as number,
      pace: (f.pace as number | undefined) ?? 0, inPlace: f.inPlace as boolean, simd: f.simd as boolean | undefined, trace: !!f.trace,
      scaleDown: f.scaleDown as number,
    };
    const algoName = typeof algo === 'string' ? algo : `${algo.name} (${f.algoFile})`;
    const run = name === 'bench' ? runBench : runSimulate;
    // the header once the options are checked (a bad one prints nothing but its error)
    const onStart = () => { for (const l of headerLines(`collemu ${name} ${coll}`, opts, algoName, name === 'simulate')) out(l); };
    const { rows, events } = await run({ ...opts, onStart, onRow: (r) => out(formatRow(r)) });
    for (const l of footerLines(rows, opts.check)) out(l);
    if (typeof algo !== 'string') for (const l of formulaLines(algo, opts, rows)) out(l);
    for (const l of scaleLines(opts, rows)) out(l);
    if (json) {
      const text = JSON.stringify(jsonRows(rows), null, 2);
      if (toStdout) process.stdout.write(text + '\n');
      else writeOutput(json, text + '\n', '--json');
    }
    if (f.trace && events) {
      guardWrite(f.trace as string, '--trace', () => writeTrace(f.trace as string, events, topo.data.links.map((l) => l.name)));
      if (!toStdout) out(`# trace: ${events.length} events written to ${f.trace}`);
    }
    const wrong = rows.reduce((s, r) => s + Math.max(0, r.oop.nwrong) + Math.max(0, r.ip?.nwrong ?? 0), 0);
    if (wrong > 0) process.exitCode = 1;
  };

  sweepCommand('bench', 'nccl-tests style benchmark of one collective on the worker-thread emulator (time = virtual us)').action(sweepAction('bench'));
  sweepCommand('simulate', 'the same sweep on the one-thread discrete-event simulator: no data, any rank count (time = virtual us)').action(sweepAction('simulate'));

  program
    .command('algos')
    .description('list the algorithms of every collective with their cost formulas')
    .argument('[collective]', 'only this collective')
    .action((coll?: string) => {
      if (coll && !COLLECTIVES.includes(coll as Collective)) throw new UsageError(`unknown collective '${coll}' (known: ${COLLECTIVES.join(', ')})`);
      for (const a of ALGORITHMS) {
        if (coll && a.coll !== coll) continue;
        console.log(`${a.coll.padEnd(14)} ${a.name.padEnd(13)} ${a.summary}`);
        console.log(`${''.padEnd(28)} T = ${a.formula}`);
      }
    });

  addTopoOptions(
    program.command('topology').description('describe a topology: link classes, ranks per node, hardware'),
  ).action((f: TopoFlags) => {
    const t = topoFrom(f);
    console.log(t.describe());
    for (const [i, l] of t.data.links.entries()) {
      console.log(`  link class ${i}: ${l.name.padEnd(10)} ${String(+(l.bw / 1e9).toPrecision(4)).padStart(6)} GB/s  ${(l.alpha * 1e6).toString().padStart(5)} us`);
    }
    console.log(`  reduce cost ${(t.gamma * 1e12).toFixed(3)} ps/B, copy cost ${(t.delta * 1e12).toFixed(3)} ps/B, memory ${t.data.memCapacity / 1e9} GB per rank`);
  });

  registerCalibrate(program); // collemu calibrate <nccl-tests-output.txt>: fit link alpha/bandwidth (cli/calibrate.ts)
  registerPipeline(program); // collemu pipeline: pipeline schedules as data (cli/pipeline.ts)
  registerTrain(program); // collemu train: parallel training with parity (cli/train.ts)
  registerPredictCommands(program); // collemu predict / plan: step time, MFU, memory at scale (cli/predict.ts)
  registerScenarioCommands(program); // collemu scenario list / run NAME (cli/scenario.ts)

  program
    .command('tour')
    .description('the main job (npm start): a short guided run')
    .action(async () => {
      const { runTour } = await import('./tour.js');
      await runTour();
    });

  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  program.exitOverride();
  program.configureOutput({ writeErr: (s) => process.stderr.write(s) });
  for (const c of program.commands) c.exitOverride();
  try {
    await program.parseAsync(argv);
    return (process.exitCode as number | undefined) ?? 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') return 0;
      return 2; // commander already printed the message
    }
    const err = e as Error;
    const userErrors = [UsageError, TopologyError, HardwareError, AlgorithmError, IRError, OutOfMemoryError, MeshError, ConfigError, KernelError, ScheduleError, TrainConfigError, TrainOutOfMemory, PredictError];
    if (userErrors.some((c) => err instanceof c) || err.message.startsWith('emulation limit')) {
      process.stderr.write(`collemu: error: ${err.message.replace(/\s*\n\s*/g, ' ')}\n`);
      return 2;
    }
    if (err instanceof RankFailure || err instanceof EmulatorDeadlock || err instanceof DeadlockError || err instanceof ContentionDeadlock) {
      process.stderr.write(`collemu: ${err.message}\n`);
      return 1;
    }
    process.stderr.write(`collemu: internal error: ${err.stack ?? err.message}\n`);
    return 1;
  }
}

