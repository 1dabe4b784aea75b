#!/usr/bin/env node
// Builds native/yieldwait.c into dist/native/yieldwait.node (part of `npm install`, via prepare).
// It compiles with the C compiler and the headers of the Node.js that runs it (no node-gyp, no
// network). It never fails the install: without a compiler or headers, collemu's ranks block in
// Atomics.wait without yielding first (runtime/worker.ts), which is slower for small messages only.
//
//   node scripts/build-native.mjs
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(root, 'native', 'yieldwait.c');
const out = join(root, 'dist', 'native', 'yieldwait.node');
const candidates = [
  process.env.npm_config_nodedir && join(process.env.npm_config_nodedir, 'include', 'node'),
  join(dirname(process.execPath), '..', 'include', 'node'),
].filter(Boolean);
const inc = candidates.find((d) => existsSync(join(d, 'node_api.h')));
mkdirSync(dirname(out), { recursive: true });
try {
  if (!inc) throw new Error(`node_api.h not found (looked in ${candidates.join(', ')})`);
  const cc = process.env.CC || 'cc';
  execFileSync(cc, ['-O2', '-shared', '-fPIC', '-I', inc, src, '-o', out], { stdio: ['ignore', 'inherit', 'inherit'], timeout: 60_000 });
  createRequire(import.meta.url)(out);
  console.log(`collemu: built ${out} (sched_yield polling for waiting ranks)`);
} catch (e) {
  rmSync(out, { force: true });
  console.warn(`collemu: native helper not built (${String(e.message).split('\n')[0]}); ranks will block in Atomics.wait without yielding first`);
}
