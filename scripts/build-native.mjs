#!/usr/bin/env node
// Builds collemu's optional native helpers into dist/native/ (part of `npm install`, via prepare):
//   native/yieldwait.c -> yieldwait.node  sched_yield polling for waiting ranks (runtime/worker.ts)
//   native/kernels.c   -> kernels.node    reduce/copy between ranks' memories (runtime/native.ts)
// It compiles with the C compiler and the headers of the Node.js that runs it (no node-gyp, no
// network). It never fails the install: without a compiler or headers, ranks block in Atomics.wait
// without yielding first and move data with the WebAssembly/JS kernels, which is slower only.
//
//   node scripts/build-native.mjs
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const candidates = [
  process.env.npm_config_nodedir && join(process.env.npm_config_nodedir, 'include', 'node'),
  join(dirname(process.execPath), '..', 'include', 'node'),
].filter(Boolean);
const inc = candidates.find((d) => existsSync(join(d, 'node_api.h')));
const cc = process.env.CC || 'cc';

const addons = [
  { name: 'yieldwait', what: 'sched_yield polling for waiting ranks', flags: [['-O2']], without: 'ranks will block in Atomics.wait without yielding first' },
  // -march=native: the addon is built on the machine that runs it; plain -O3 if the compiler refuses
  { name: 'kernels', what: 'native reduce/copy between ranks', flags: [['-O3', '-march=native'], ['-O3']], without: 'ranks will use the WebAssembly/JS kernels' },
];
for (const a of addons) {
  const src = join(root, 'native', `${a.name}.c`);
  const out = join(root, 'dist', 'native', `${a.name}.node`);
  mkdirSync(dirname(out), { recursive: true });
  let err = '';
  for (const flags of a.flags) {
    try {
      if (!inc) throw new Error(`node_api.h not found (looked in ${candidates.join(', ')})`);
      execFileSync(cc, [...flags, '-shared', '-fPIC', '-I', inc, src, '-o', out], { stdio: ['ignore', 'inherit', 'pipe'], timeout: 60_000 });
      createRequire(import.meta.url)(out);
      err = '';
      break;
    } catch (e) {
      rmSync(out, { force: true });
      err = String(e.message).split('\n')[0];
    }
  }
  if (err) console.warn(`collemu: native ${a.name} not built (${err}); ${a.without}`);
  else console.log(`collemu: built ${out} (${a.what})`);
}
