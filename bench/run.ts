/**
 * `npm run bench`: the data-plane micro-benchmarks (tinybench) and the host-speed comparison with
 * Open MPI. Flags: --quick (fewer sizes), --peer-live (run Open MPI now via ../shared/peers, or the
 * directory COLLEMU_PEERS_DIR names: a writable copy of it where ../shared is read-only).
 */
import { runHostBench } from './host.js';

const args = new Set(process.argv.slice(2));
const quick = args.has('--quick');
let dataplane: ((o?: { quick?: boolean }) => Promise<string>) | undefined;
try {
  ({ runDataplaneBench: dataplane } = await import('./dataplane.js'));
} catch {
  dataplane = undefined;
}
if (dataplane && !args.has('--host-only')) {
  console.log('== data plane (tinybench) ==');
  console.log(await dataplane({ quick }));
  console.log();
}
if (!args.has('--host-only')) {
  const { runSimulateBench } = await import('./simulate.js');
  console.log('== one-thread simulator at scale ==');
  console.log(await runSimulateBench({ quick }));
  console.log();
}
console.log('== emulator host speed ==');
try {
  console.log(await runHostBench({ live: args.has('--peer-live'), quick }));
} catch (e) {
  console.error(`bench: ${(e as Error).message}`);
  process.exit(1);
}
