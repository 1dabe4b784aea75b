/**
 * Output files (--json FILE, --trace FILE, --csv-out FILE, --out FILE): checked before a command
 * runs, so a long benchmark does not end in a failed write; a write that still fails (a full disk)
 * is a one-line error like any bad input.
 */
import { accessSync, constants, statSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { UsageError } from './bench.js';

/** The options that name an output file, by commander's option key. '-' means stdout. */
const OUTPUT_FLAGS: Record<string, string> = { json: '--json', trace: '--trace', csvOut: '--csv-out', out: '--out' };

/** Throws UsageError unless `file` can be written: its directory exists and is writable, and it is not a directory. */
export function checkOutputFile(file: string, flag: string): void {
  if (file === '') throw new UsageError(`${flag} needs a file name`);
  const kind = (f: string): 'dir' | 'file' | undefined => {
    try {
      return statSync(f).isDirectory() ? 'dir' : 'file';
    } catch {
      return undefined;
    }
  };
  const k = kind(file);
  if (k === 'dir') throw new UsageError(`${flag} ${file}: is a directory`);
  const dir = dirname(resolve(file));
  if (k === undefined && kind(dir) !== 'dir') throw new UsageError(`${flag} ${file}: directory ${dir} does not exist`);
  try {
    accessSync(k === 'file' ? file : dir, constants.W_OK);
  } catch {
    throw new UsageError(`${flag} ${file}: ${k === 'file' ? 'the file' : `directory ${dir}`} is not writable`);
  }
}

/** Checks every output-file option among a command's parsed options (commander's opts()). */
export function checkOutputOptions(opts: Record<string, unknown>): void {
  const seen = new Map<string, string>();
  for (const [key, flag] of Object.entries(OUTPUT_FLAGS)) {
    const v = opts[key];
    if (typeof v !== 'string') continue;
    if (v === '-') {
      if (key === 'json') continue;
      throw new UsageError(`${flag} needs a file name ('-', stdout, is for --json only)`);
    }
    checkOutputFile(v, flag);
    const abs = resolve(v);
    const other = seen.get(abs);
    if (other) throw new UsageError(`${other} and ${flag} name the same file (${v}): one would overwrite the other`);
    seen.set(abs, flag);
  }
}

/** Runs `write` (which writes `file`), turning a failure into a one-line UsageError. */
export function guardWrite(file: string, flag: string, write: () => void): void {
  try {
    write();
  } catch (e) {
    throw new UsageError(`${flag}: cannot write ${file}: ${(e as Error).message}`);
  }
}

/** writeFileSync with a one-line UsageError on failure. */
export function writeOutput(file: string, data: string | Uint8Array, flag: string): void {
  guardWrite(file, flag, () => writeFileSync(file, data));
}
