/**
 * `collemu scenario list` and `collemu scenario run NAME [--json FILE|-] [--executor emulate|simulate]`:
 * the scenarios of scenarios/ (one file each), each stating a question, running collemu's models or
 * its emulator, and printing tables and conclusions computed in the run.
 *
 * `--json -` prints only JSON on stdout (list: [{name, question}]; run: the scenario's rows and
 * findings, see each scenario file); `--json FILE` writes it and prints the tables as well.
 * Bad input (an unknown scenario, --executor on a scenario that runs no training) throws UsageError
 * (cli/bench.ts), which `collemu` reports as "collemu: error: ..." with exit code 2.
 */
import { InvalidArgumentError, type Command } from 'commander';
import { findScenario, SCENARIOS } from '../scenarios/index.js';
import { UsageError } from './bench.js';
import { writeOutput } from './output.js';

export { UsageError };

/** Scenarios that run a training on the emulator and accept --executor. */
const WITH_EXECUTOR = new Set(['comm-profile']);

function emitJson(json: string, value: unknown): void {
  const text = JSON.stringify(value, null, 2) + '\n';
  if (json === '-') process.stdout.write(text);
  else writeOutput(json, text, '--json');
}

export function registerScenarioCommands(program: Command): void {
  const sc = program
    .command('scenario')
    .description('questions from the research answered by the models and the emulator: `scenario list`, `scenario run NAME`');
  // the subcommands are created before the caller configures exit handling and output on the
  // program; they take those settings from the root when they are dispatched
  sc.hook('preSubcommand', (_self, sub) => {
    let root: Command = sc;
    while (root.parent) root = root.parent;
    sub.copyInheritedSettings(root);
  });

  sc.command('list')
    .description('list the scenarios and the question each answers')
    .option('--json <FILE|->', 'write [{name, question}] as JSON to FILE, or only JSON to stdout with -')
    .action((f: { json?: string }) => {
      if (f.json !== '-') {
        const w = Math.max(...SCENARIOS.map((s) => s.name.length));
        for (const s of SCENARIOS) console.log(`${s.name.padEnd(w)}  ${s.question}`);
      }
      if (f.json) emitJson(f.json, SCENARIOS.map((s) => ({ name: s.name, question: s.question })));
    });

  sc.command('run')
    .description('run one scenario and print its tables and conclusions')
    .argument('<name>', SCENARIOS.map((s) => s.name).join('|'))
    .option('--json <FILE|->', 'write the scenario\'s numbers as JSON to FILE, or only JSON to stdout with -')
    .option('--executor <KIND>', 'comm-profile: emulate (worker threads, default) or simulate (one thread, same numbers)', (v: string) => {
      if (v !== 'emulate' && v !== 'simulate') throw new InvalidArgumentError('--executor must be emulate or simulate');
      return v;
    })
    .action(async (name: string, f: { json?: string; executor?: 'emulate' | 'simulate' }) => {
      const s = findScenario(name);
      if (!s) throw new UsageError(`unknown scenario '${name}' (known: ${SCENARIOS.map((x) => x.name).join(', ')})`);
      if (f.executor && !WITH_EXECUTOR.has(s.name)) throw new UsageError(`--executor applies to ${[...WITH_EXECUTOR].join(', ')}; scenario ${s.name} runs no training`);
      const out = await s.run({ executor: f.executor });
      if (f.json !== '-') for (const l of out.lines) console.log(l);
      if (f.json) emitJson(f.json, out.json);
    });
}
