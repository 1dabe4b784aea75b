/**
 * `npm start` (collemu tour): the main job runs its four parts and each one shows what it claims: a
 * checked AllReduce with no wrong element, a 4D training run within the parity bound, the Llama 3
 * 405B prediction, and the diminishing-returns table. (Its run time is measured, not asserted: README.)
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const BIN = join(import.meta.dirname, '..', 'bin', 'collemu');

describe('collemu tour', () => {
  it('runs all four parts, each checked', () => {
    const r = spawnSync(process.execPath, [BIN, 'tour'], { encoding: 'utf8', timeout: 120_000 });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const out = r.stdout;
    for (let k = 1; k <= 4; k++) expect(out).toContain(`collemu tour ${k}/4:`);
    // part 1: every size of the nccl-tests table has #wrong 0, out of place and in place
    const rows = out.split('\n').filter((l) => /^\s+\d+\s+\d+\s+float\s+sum/.test(l));
    expect(rows.length).toBeGreaterThanOrEqual(5);
    for (const l of rows) {
      const f = l.trim().split(/\s+/);
      expect(f[8], l).toBe('0');
      expect(f[12], l).toBe('0');
    }
    // part 2: parity within the bound
    expect(out).toMatch(/# parity with the serial run: .*within 1e-5/);
    // part 3: an MFU figure for Llama 3 405B
    expect(out).toMatch(/MFU\s+\d+\.\d%/);
    // part 4: the naive and planned tables
    expect(out).toContain('naive data parallelism on h100-1nic');
    expect(out).toContain("the planner's best layout on h100-1nic");
  }, 120_000);
});
