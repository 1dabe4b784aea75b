/**
 * The native wait helper (native/yieldwait.c, built by scripts/build-native.mjs during npm install):
 * it is built where a C compiler is present, its poll returns as soon as the word reaches the
 * target or after its budget, and runs with it and without it (COLLEMU_NO_YIELD) give the same
 * virtual times and exact data: it changes host waiting only.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { YIELD } from '../runtime/native.js';

const BIN = join(import.meta.dirname, '..', 'bin', 'collemu');
const hasCompiler = spawnSync(process.env.CC || 'cc', ['--version']).status === 0;

describe('native yield-polling helper', () => {
  it('is built and loaded where a C compiler exists (unless turned off)', () => {
    if (!hasCompiler || process.env.COLLEMU_NO_YIELD) return;
    expect(YIELD).toBeDefined();
  });

  it('pollYieldGE returns the value once it reaches the target, or after the budget', () => {
    if ((!hasCompiler || process.env.COLLEMU_NO_YIELD) && !YIELD) return;
    if (!YIELD) throw new Error('native helper not built (npm install builds it)');
    const a = new Int32Array(new SharedArrayBuffer(16));
    a[1] = 7;
    expect(YIELD.pollYieldGE(a, 1, 5, 1e9)).toBe(7);
    const t0 = performance.now();
    expect(YIELD.pollYieldGE(a, 1, 8, 2e6)).toBe(7); // 2 ms budget, never reached
    expect(performance.now() - t0).toBeGreaterThanOrEqual(1.9);
    expect(() => YIELD!.pollYieldGE(a, 9, 1, 1)).toThrow(/index out of range/);
    expect(() => YIELD!.pollYieldGE(new Float32Array(4) as unknown as Int32Array, 0, 1, 1)).toThrow(/Int32Array/);
  });

  it('with and without it (COLLEMU_NO_YIELD): the same virtual times, exact data', () => {
    const args = [BIN, 'bench', 'allreduce', '--ranks', '8', '-b', '1K', '-e', '4M', '-f', '64', '-n', '20', '-w', '5', '--json', '-'];
    const on = spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 120_000 });
    const off = spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 120_000, env: { ...process.env, COLLEMU_NO_YIELD: '1' } });
    expect(on.status).toBe(0);
    expect(off.status).toBe(0);
    type Row = { size: number; time: number; in_time: number; nwrong: number; in_nwrong: number };
    const a = JSON.parse(on.stdout) as Row[], b = JSON.parse(off.stdout) as Row[];
    expect(a.map((r) => [r.size, r.time, r.in_time])).toEqual(b.map((r) => [r.size, r.time, r.in_time]));
    for (const r of [...a, ...b]) expect(r.nwrong + r.in_nwrong).toBe(0);
  }, 120_000);
});
