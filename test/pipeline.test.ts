/**
 * Pipeline schedules as data (parallelism/schedules.ts), run on the IR (parallelism/pipeline.ts),
 * and `collemu pipeline` (cli/pipeline.ts; the CLI tests need `npx tsc -p .` first, as `npm test` does).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  actionString, fromCsv, makeSchedule, peakInflight, SCHEDULE_NAMES, ScheduleError, toCsv, validateSchedule, type Schedule,
} from '../parallelism/schedules.js';
import { compileSchedule, formulaBubble, formulaPeakInflight, renderTimeline, runSchedule } from '../parallelism/pipeline.js';
import { DeadlockError } from '../runtime/simulate.js';

/** T_F = T_B = T_W = 1 virtual second: every time is an integer, so the arithmetic is exact */
const UNIT = { tF: 1, tB: 1, tW: 1 };
const run1 = (s: Schedule, times = UNIT) => runSchedule(s, { times, peakFlops: 1e15 });

const TORCHTITAN = join(import.meta.dirname, '..', '..', 'shared', 'data', 'external', 'torchtitan_custom_schedule.csv');
const haveShared = existsSync(TORCHTITAN);
if (!haveShared) console.warn(`pipeline.test: ${TORCHTITAN} is absent (no ../shared checkout): the torchtitan CSV test is skipped`);

/** rank, step and the message of the ScheduleError that validateSchedule throws */
function validationError(s: Schedule): string {
  try {
    validateSchedule(s);
  } catch (e) {
    expect(e).toBeInstanceOf(ScheduleError);
    return (e as Error).message;
  }
  throw new Error('validateSchedule accepted the schedule');
}
const clone = (s: Schedule): Schedule => ({ ...s, actions: s.actions.map((l) => l.map((a) => ({ ...a }))) });

describe('bubble fraction, p = 4, m = 8, T_F = T_B = T_W (calibration.md pipeline section)', () => {
  const cases: [string, number | undefined, number][] = [
    ['gpipe', undefined, 0.375],
    ['1f1b', undefined, 0.375],
    ['interleaved', 2, 0.1875],
    ['zb-h1', undefined, 0.125],
    ['zb-v', undefined, 0.0625],
  ];
  for (const [name, v, want] of cases) {
    it(`${name}${v ? ` v = ${v}` : ''}: measured on the IR == closed form == ${want}`, () => {
      const s = makeSchedule(name, 4, 8, v);
      const r = run1(s);
      const formula = formulaBubble(name, 4, 8, s.stages / s.ranks, UNIT);
      expect(formula).toBe(want);
      expect(r.bubbleFraction).toBe(want); // exact: integer times
      // the same with the CLI's default 1 ms times, up to float rounding
      expect(runSchedule(s).bubbleFraction).toBeCloseTo(want, 12);
      // every rank computes m (T_F + T_B + T_W) per stage it holds
      for (const b of r.busy) expect(b).toBe(8 * 3 * (s.stages / s.ranks));
    });
  }

  it('the convention is idle / compute ("of ideal", formulas.md); 1 - busy/makespan is b / (1 + b)', () => {
    const r = run1(makeSchedule('1f1b', 4, 8));
    expect(r.makespan).toBe(33); // (m + p - 1)(T_F + T_B + T_W)
    expect(r.idleShare).toBeCloseTo(0.375 / 1.375, 14);
  });

  it('measured == formula for other time ratios (zb-h1 where T_W <= min(T_F, T_B)) and other p, m', () => {
    for (const t of [{ tF: 1, tB: 2, tW: 1 }, { tF: 2, tB: 1, tW: 1 }, { tF: 1, tB: 1, tW: 0.5 }, { tF: 3, tB: 2, tW: 1 }, { tF: 2, tB: 2, tW: 1 }]) {
      for (const [name, v] of [['gpipe', 1], ['1f1b', 1], ['interleaved', 2], ['interleaved', 3], ['zb-h1', 1]] as const) {
        for (const [p, m] of [[4, 8], [3, 9], [8, 16]]) {
          const s = makeSchedule(name, p, m, name === 'interleaved' ? v : undefined);
          expect(run1(s, t).bubbleFraction, `${name} v=${v} p=${p} m=${m} ${JSON.stringify(t)}`).toBeCloseTo(formulaBubble(name, p, m, v, t)!, 12);
        }
      }
    }
    for (const [p, m] of [[2, 3], [3, 5], [4, 7], [4, 16], [8, 32]]) {
      expect(run1(makeSchedule('zb-v', p, m)).bubbleFraction, `zb-v p=${p} m=${m}`).toBeCloseTo((p - 1) / (6 * m), 12);
    }
  });

  it('ZB-V is bubble-free counted per rank from its first to its last action (the zero-bubble papers), 1F1B is not', () => {
    expect(run1(makeSchedule('zb-v', 4, 8)).spanBubbleFraction).toBe(0);
    expect(run1(makeSchedule('1f1b', 4, 8)).spanBubbleFraction).toBeCloseTo(0.1875, 12);
  });
});

describe('peak in-flight microbatches (formulas.md, stage 0)', () => {
  it('GPipe m, 1F1B min(m, p), interleaved p (1 + (p-1)/(p v)), ZB-H1 p, ZB-V p', () => {
    expect(peakInflight(makeSchedule('gpipe', 4, 8)).microbatches).toEqual([8, 8, 8, 8]);
    expect(peakInflight(makeSchedule('1f1b', 4, 8)).microbatches).toEqual([4, 3, 2, 1]);
    expect(peakInflight(makeSchedule('1f1b', 4, 2)).microbatches[0]).toBe(2); // min(m, p) with m < p
    const il = peakInflight(makeSchedule('interleaved', 4, 8, 2));
    expect(il.chunks[0]).toBe(11); // stage activations: p v + p - 1
    expect(il.microbatches[0]).toBe(5.5);
    expect(peakInflight(makeSchedule('zb-h1', 4, 8)).microbatches[0]).toBe(4);
    expect(peakInflight(makeSchedule('zb-v', 4, 8)).microbatches).toEqual([4, 4, 4, 4]);
    for (const [name, v, m] of [['gpipe', 1, 8], ['1f1b', 1, 8], ['1f1b', 1, 2], ['interleaved', 2, 8], ['interleaved', 4, 16], ['zb-h1', 1, 8], ['zb-v', 2, 8]] as const) {
      const s = makeSchedule(name, 4, m, name === 'interleaved' ? v : undefined);
      expect(peakInflight(s).microbatches[0], `${name} v=${v} m=${m}`).toBe(formulaPeakInflight(name, 4, m, v));
    }
  });
});

describe('schedules as data: generators, CSV', () => {
  it('placement: interleaved stage s on rank s mod p; zb-v rank r holds stages r and 2p-1-r', () => {
    expect(makeSchedule('interleaved', 4, 8, 2).stageToRank).toEqual([0, 1, 2, 3, 0, 1, 2, 3]);
    expect(makeSchedule('zb-v', 4, 8).stageToRank).toEqual([0, 1, 2, 3, 3, 2, 1, 0]);
    expect(makeSchedule('1f1b', 4, 8).stageToRank).toEqual([0, 1, 2, 3]);
  });

  it('CSV round trip for every generator (same actions, placement, counts and timeline)', () => {
    for (const name of SCHEDULE_NAMES) {
      for (const [p, m, v] of [[4, 8, 2], [3, 6, 3], [2, 4, 2]]) {
        const s = makeSchedule(name, p!, m!, name === 'interleaved' ? v : undefined);
        const text = toCsv(s);
        expect(text.split('\n').filter((l) => l !== '')).toHaveLength(p!);
        const back = fromCsv(text, `${name}.csv`);
        expect(back.ranks).toBe(s.ranks);
        expect(back.stages).toBe(s.stages);
        expect(back.microbatches).toBe(s.microbatches);
        expect(back.stageToRank).toEqual(s.stageToRank);
        expect(back.actions).toEqual(s.actions);
        expect(toCsv(back)).toBe(text);
        expect(run1(back).makespan).toBe(run1(s).makespan);
      }
    }
  });

  it('CSV import: idle cells keep their columns; PyTorch comm actions are skipped; OVERLAP_F_B runs its sub-actions', () => {
    const s = fromCsv('0F0,,0F1,0RECV_B0,0B0,0B1\r\n1RECV_F0,1F0,1F1,1B0,(1B1;)OVERLAP_F_B\r\n', 'x.csv');
    expect(s.actions.map((l) => l.map(actionString))).toEqual([['0F0', '0F1', '0B0', '0B1'], ['1F0', '1F1', '1B0', '1B1']]);
    expect(s.steps![0]).toEqual([0, 2, 4, 5]);
    expect(toCsv(s)).toBe('0F0,,0F1,,0B0,0B1\n,1F0,1F1,1B0,1B1\n');
    validateSchedule(s);
  });

  it('malformed CSV: one-line errors naming rank and step', () => {
    expect(() => fromCsv('0F0,0F1\n1F0,1Q1\n', 'bad.csv')).toThrow(/^bad\.csv: rank 1, step 1: cannot parse '1Q1'/);
    expect(() => fromCsv('0F0,0F\n', 'bad.csv')).toThrow(/rank 0, step 1: cannot parse '0F'/);
    expect(() => fromCsv('\n\n', 'bad.csv')).toThrow(/no rows/);
    expect(() => fromCsv('0F0,1F0\n1B0\n', 'bad.csv')).toThrow(/rank 1, step 0: stage 1 \(1B0\) also runs on rank 0 \(step 1\)/);
    expect(() => fromCsv('0F0,2F0\n,,\n', 'bad.csv')).toThrow(/rank 1 \(row 2\) has no actions/);
    expect(() => fromCsv('0F0,0B0\n2F0,2B0\n', 'bad.csv')).toThrow(/stage 1 has no actions on any rank/);
  });

  it.skipIf(!haveShared)('the torchtitan schedule (../shared/data/external): 2 ranks, 4 stages, 8 microbatches, 8 F/I/W per stage, no B, placement {0:0, 1:1, 2:0, 3:1}; validates and runs', () => {
    const text = readFileSync(TORCHTITAN, 'utf8');
    const s = fromCsv(text, 'torchtitan_custom_schedule.csv');
    expect(s.ranks).toBe(2);
    expect(s.stages).toBe(4);
    expect(s.microbatches).toBe(8);
    expect(s.stageToRank).toEqual([0, 1, 0, 1]);
    for (let st = 0; st < 4; st++) {
      const count = (k: string) => s.actions.flat().filter((a) => a.stage === st && a.kind === k).length;
      expect([count('F'), count('I'), count('W'), count('B')], `stage ${st}`).toEqual([8, 8, 8, 0]);
    }
    validateSchedule(s);
    expect(toCsv(s)).toBe(text.replace(/\r\n/g, '\n'));
    const r = run1(s);
    // rank 0 runs its 16 forwards, then waits 2 slots for 3I0 (rank 1 finishes 3F7 at 17, 3I0 at 18);
    // rank 1 idles 1 slot at the start and 1 at the end: 4 idle slots over 2 x 48 of compute
    expect(r.makespan).toBe(50);
    expect(r.bubbleFraction).toBeCloseTo(4 / 96, 14);
    expect(peakInflight(s).chunks).toEqual([16, 16]);
    expect(r.events.filter((e) => e.kind === 'compute').map((e) => e.label).slice(0, 2)).toEqual(['F s0 m0', 'F s1 m0']);
  });
});

describe('validation', () => {
  it('an incomplete schedule: missing backward, missing forward, duplicate, W without I, B before F', () => {
    const s = makeSchedule('1f1b', 4, 8);
    const a = clone(s);
    a.actions[2]!.pop(); // rank 2's last B (2B7)
    expect(validationError(a)).toBe('rank 2, step 15 (end of its list): incomplete: stage 2 microbatch 7 has no backward (2B7, or 2I7 and 2W7)');

    const b = clone(s);
    b.actions[1]!.splice(0, 1); // 1F0
    expect(validationError(b)).toMatch(/^rank 1, step 2 \(1B0\): backward \(B\) of stage 1 microbatch 0 without a forward before it on rank 1$/);

    const c = clone(s);
    c.actions[3]![5] = { stage: 3, kind: 'F', mb: 1 }; // 3F2 -> a second 3F1
    expect(validationError(c)).toMatch(/^rank 3, step 5 \(3F1\): duplicate: 3F1 already ran at rank 3, step 2$/);

    const z = clone(makeSchedule('zb-h1', 4, 8));
    const l = z.actions[0]!;
    const iI = l.findIndex((x) => x.kind === 'I' && x.mb === 0);
    const iW = l.findIndex((x) => x.kind === 'W' && x.mb === 0);
    [l[iI], l[iW]] = [l[iW]!, l[iI]!];
    expect(validationError(z)).toMatch(new RegExp(`^rank 0, step ${iI} \\(0W0\\): weight gradient W of stage 0 microbatch 0 without an input gradient I before it on rank 0$`));

    const d = clone(s);
    d.actions[0]!.push({ stage: 0, kind: 'B', mb: 8 });
    expect(validationError(d)).toMatch(/^rank 0, step 16 \(0B8\): microbatch 8 is not in 0\.\.7$/);
  });

  it('a deadlocking schedule (two actions swapped) names every stuck rank and step; the simulator agrees', () => {
    const s = clone(makeSchedule('gpipe', 4, 8));
    const l = s.actions[0]!;
    expect([actionString(l[7]!), actionString(l[8]!)]).toEqual(['0F7', '0B0']);
    [l[7], l[8]] = [l[8]!, l[7]!];
    const msg = validationError(s);
    expect(msg).toBe('deadlock: every unfinished rank is stuck: rank 0 at step 7 (0B0) waits for 1B0 or 1I0 on rank 1; '
      + 'rank 1 at step 7 (1F7) waits for 0F7 on rank 0; rank 2 at step 7 (2F7) waits for 1F7 on rank 1; rank 3 at step 7 (3F7) waits for 2F7 on rank 2');
    expect(msg).not.toContain('\n');
    // the IR executor deadlocks on the same programs
    expect(() => runSchedule(s, { validated: true })).toThrow(DeadlockError);
  });

  it('every generated schedule validates', () => {
    for (const name of SCHEDULE_NAMES) {
      for (const [p, m] of [[1, 1], [1, 3], [2, 2], [4, 4], [4, 8], [5, 10], [8, 24]]) {
        const s = makeSchedule(name, p!, m!);
        expect(() => validateSchedule(s), `${name} p=${p} m=${m}`).not.toThrow();
      }
    }
  });

  it('bad generator input', () => {
    expect(() => makeSchedule('pipedream', 4, 8)).toThrow(/unknown schedule 'pipedream'/);
    expect(() => makeSchedule('interleaved', 4, 2)).toThrow(/m = 2 < p = 4/);
    expect(() => makeSchedule('interleaved', 4, 6, 2)).toThrow(/multiple of p/);
    expect(() => makeSchedule('zb-h1', 4, 3)).toThrow(/m = 3 < p = 4/);
    expect(() => makeSchedule('1f1b', 4, 8, 2)).toThrow(/--virtual 2 does not apply/);
    expect(() => makeSchedule('zb-v', 4, 8, 3)).toThrow(/--virtual 3 does not apply/);
    expect(() => makeSchedule('1f1b', 0, 8)).toThrow(ScheduleError);
  });
});

describe('execution on the IR', () => {
  it('compiles to compute ops labelled like F s3 m5 and one send/recv per cross-rank hop', () => {
    const s = makeSchedule('1f1b', 4, 8);
    const progs = compileSchedule(s, { times: UNIT, peakFlops: 1e15 });
    const count = (k: string) => progs.flat().filter((o) => o.k === k).length;
    expect(count('compute')).toBe(4 * 16);
    expect(count('send')).toBe(2 * 3 * 8); // activations forward, gradients backward, over p-1 boundaries
    expect(count('recv')).toBe(2 * 3 * 8);
    const labels = progs[3]!.flatMap((o) => (o.k === 'compute' ? [o.label] : []));
    expect(labels.slice(0, 3)).toEqual(['F s3 m0', 'B s3 m0', 'F s3 m1']);
    // compute time = flops / peak = T
    expect(progs[0]!.find((o) => o.k === 'compute')).toMatchObject({ flops: 1e15, bytes: 0 });
    // zb-v: the two stages of the V's tip live on rank p-1 and need no message; 0 -> 1 carries both directions
    const v = compileSchedule(makeSchedule('zb-v', 4, 8), { times: UNIT });
    expect(v.flat().filter((o) => o.k === 'send').length).toBe(2 * 6 * 8); // 2p - 2 = 6 cross-rank boundaries
  });

  it('trace events carry virtual start/end and labels; the timeline is what the ASCII view prints', () => {
    const r = run1(makeSchedule('1f1b', 4, 8));
    const first = r.events.find((e) => e.kind === 'compute' && e.rank === 3)!;
    expect(first).toMatchObject({ label: 'F s3 m0', vStart: 3, vEnd: 4 });
    const rows = renderTimeline(r);
    expect(rows).toHaveLength(5);
    expect(rows[1]).toBe('rank 0  F0 F1 F2 F3 .  .  .  .  .  .  B0 B0 F4 B1 B1 F5 B2 B2 F6 B3 B3 F7 B4 B4 .  B5 B5 .  B6 B6 .  B7 B7');
    expect(rows[4]).toBe('rank 3  .  .  .  F0 B0 B0 F1 B1 B1 F2 B2 B2 F3 B3 B3 F4 B4 B4 F5 B5 B5 F6 B6 B6 F7 B7 B7 .  .  .  .  .  .');
  });

  it('message latency: GPipe pays it on the fill and the drain, 2 (p-1) alpha', () => {
    const s = makeSchedule('gpipe', 4, 8);
    const base = run1(s).makespan;
    const slow = runSchedule(s, { times: UNIT, peakFlops: 1e15, p2pLatency: 0.5 }).makespan;
    expect(slow - base).toBeCloseTo(2 * 3 * 0.5, 9);
    // bytes cost bytes / bandwidth on the same path
    const big = runSchedule(s, { times: UNIT, peakFlops: 1e15, p2pBytes: 450e6, linkBw: 450e9 }).makespan; // 1 ms per message
    expect(big - base).toBeCloseTo(6e-3, 9);
  });
});

describe('collemu pipeline (CLI)', () => {
  const BIN = join(import.meta.dirname, '..', 'bin', 'collemu');
  const built = existsSync(join(import.meta.dirname, '..', 'dist', 'cli', 'pipeline.js'));
  const cli = (args: string[]) => {
    if (!built) throw new Error('dist/cli/pipeline.js is missing: run `npx tsc -p .` (npm test does) before the CLI tests');
    const r = spawnSync(process.execPath, [BIN, 'pipeline', ...args], { encoding: 'utf8', timeout: 60_000 });
    return { code: r.status, out: r.stdout, err: r.stderr };
  };

  it('prints the timeline, the measured and formula bubble, and peak in-flight per rank', () => {
    const r = cli(['--schedule', '1f1b', '--stages', '4', '--microbatches', '8']);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const lines = r.out.split('\n');
    expect(lines).toContain('rank 0  F0 F1 F2 F3 .  .  .  .  .  .  B0 B0 F4 B1 B1 F5 B2 B2 F6 B3 B3 F7 B4 B4 .  B5 B5 .  B6 B6 .  B7 B7');
    expect(r.out).toContain('bubble fraction (idle / compute per rank, formulas.md): measured 0.3750, formula (p-1)/m = 0.3750');
    expect(r.out).toContain('peak in-flight microbatches per rank (F done, backward for inputs not yet): 4 3 2 1; formulas.md rank 0: min(m, p) = 4');

    const il = cli(['--schedule', 'interleaved', '--stages', '4', '--microbatches', '8', '--virtual', '2']);
    expect(il.code).toBe(0);
    expect(il.out).toMatch(/^rank 0 {2}0F0 0F1 0F2 0F3 4F0 /m); // stage shown when a rank holds several
    expect(il.out).toContain('measured 0.1875, formula (p-1)/(v m) = 0.1875');
  });

  it('--json - prints exactly the documented keys', () => {
    for (const [sched, want, extra] of [['zb-h1', 0.125, []], ['interleaved', 0.1875, ['--virtual', '2']], ['1f1b', 0.375, []]] as const) {
      const r = cli(['--schedule', sched, '--stages', '4', '--microbatches', '8', ...extra, '--json', '-']);
      expect(r.code).toBe(0);
      const j = JSON.parse(r.out) as Record<string, unknown>;
      expect(Object.keys(j)).toEqual(['schedule', 'stages', 'model_chunks', 'microbatches', 'bubble_fraction', 'formula_bubble_fraction', 'peak_inflight']);
      expect(j).toMatchObject({ schedule: sched, stages: 4, model_chunks: sched === 'interleaved' ? 8 : 4, microbatches: 8, bubble_fraction: want, formula_bubble_fraction: want });
      expect((j.peak_inflight as number[]).length).toBe(4);
    }
  });

  it('--csv-out writes PyTorch CSV that --from-csv reads back (same bubble)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'collemu-pp-'));
    const f = join(dir, 'zbv.csv');
    const a = cli(['--schedule', 'zb-v', '--stages', '4', '--microbatches', '8', '--csv-out', f, '--json', '-']);
    expect(a.code).toBe(0);
    expect(readFileSync(f, 'utf8').split('\n')[0]!.startsWith('0F0,0F1,0F2,0F3,0F4,0F5,0F6,7F0,7I0,7W0')).toBe(true);
    const b = cli(['--from-csv', f, '--schedule', 'zb-v', '--json', '-']);
    expect(b.code).toBe(0);
    expect(JSON.parse(b.out)).toEqual(JSON.parse(a.out));
  });

  it.skipIf(!haveShared)('imports the torchtitan schedule', () => {
    const r = cli(['--from-csv', TORCHTITAN]);
    expect(r.code).toBe(0);
    expect(r.out).toContain('p = 2 pipeline ranks, 4 stages, 2 per rank (stage -> rank: 0:0 1:1 2:0 3:1), m = 8 microbatches');
    expect(r.out).toMatch(/^rank 0 {2}0F0 0F1 .* 0I7 0W7$/m);
  });

  it('bad input: one-line error, exit 2', () => {
    const dir = mkdtempSync(join(tmpdir(), 'collemu-pp-'));
    const bad = join(dir, 'bad.csv');
    writeFileSync(bad, '0F0,0F1,0B0,0B1\n1F0,1F1,1B0,1X1\n');
    const dead = join(dir, 'dead.csv');
    writeFileSync(dead, '0F0,0B0,0F1,0B1\n1F0,1F1,1B0,1B1\n');
    const cases: [string[], RegExp][] = [
      [['--schedule', 'pipedream', '--stages', '4', '--microbatches', '8'], /unknown schedule 'pipedream'/],
      [['--schedule', 'zb-h1', '--stages', '4', '--microbatches', '2'], /m = 2 < p = 4/],
      [['--schedule', 'interleaved', '--stages', '4', '--microbatches', '6'], /multiple of p/],
      [['--schedule', '1f1b', '--stages', '4', '--microbatches', '8', '--virtual', '3'], /--virtual 3 does not apply/],
      [['--schedule', '1f1b', '--stages', '4'], /needs --microbatches/],
      [['--from-csv', bad], /bad\.csv: rank 1, step 3: cannot parse '1X1'/],
      [['--from-csv', dead], /dead\.csv: deadlock: every unfinished rank is stuck: rank 0 at step 1 \(0B0\) waits for 1B0 or 1I0 on rank 1; rank 1 at step 1 \(1F1\) waits for 0F1 on rank 0/],
      [['--from-csv', join(dir, 'missing.csv')], /cannot read --from-csv/],
    ];
    for (const [args, re] of cases) {
      const r = cli(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.out, args.join(' ')).toBe('');
      expect(r.err, args.join(' ')).toMatch(/^collemu: error: [^\n]*\n$/);
      expect(r.err, args.join(' ')).toMatch(re);
    }
  });
});
