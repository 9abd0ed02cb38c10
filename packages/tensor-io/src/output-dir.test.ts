import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync, chmodSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { OutputDirectoryError } from '@layerquant/core';
import { describe, expect, it } from 'vitest';
import { openOutputDirectory, removeStaleTemporaries, writeFileSet } from './output-dir.js';
import { writeDirectoryAtomic } from './atomic.js';

const distIndex = fileURLToPath(new URL('../dist/index.js', import.meta.url));

function scratch(): string {
  return mkdtempSync(join(tmpdir(), 'lq-outdir-'));
}

/** A pid that is not running: spawn a process and wait for it to end. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '0']);
  await new Promise((r) => child.on('exit', r));
  return child.pid!;
}

describe('openOutputDirectory', () => {
  it('creates the directory, takes the lock and releases it', async () => {
    const dir = join(scratch(), 'a', 'b');
    const out = await openOutputDirectory(dir, 'test');
    expect(existsSync(join(dir, '.layerquant.lock'))).toBe(true);
    out.release();
    expect(readdirSync(dir)).toEqual([]);
  });

  it('refuses a file, a path under a file, and a directory it cannot write', async () => {
    const root = scratch();
    writeFileSync(join(root, 'file'), 'x');
    await expect(openOutputDirectory(join(root, 'file'), 'test')).rejects.toThrow(/--out is an existing file/);
    await expect(openOutputDirectory(join(root, 'file', 'sub'), 'test')).rejects.toThrow(/lies under .*file", which is a file/);
    if (process.getuid?.() !== 0) {
      mkdirSync(join(root, 'ro'));
      chmodSync(join(root, 'ro'), 0o500);
      await expect(openOutputDirectory(join(root, 'ro', 'x'), 'test')).rejects.toThrow(/not writable/);
    }
    await expect(openOutputDirectory(join(root, 'file'), 'test')).rejects.toBeInstanceOf(OutputDirectoryError);
  });

  it('refuses a directory locked by a live process and takes over the lock of a dead one', async () => {
    const dir = scratch();
    const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 20000)']);
    try {
      writeFileSync(join(dir, '.layerquant.lock'), JSON.stringify({ pid: child.pid, command: 'quantize', started: 'now' }));
      await expect(openOutputDirectory(dir, 'test')).rejects.toThrow(new RegExp(`pid ${child.pid}, "quantize"`));
    } finally {
      child.kill('SIGKILL');
    }
    writeFileSync(join(dir, '.layerquant.lock'), JSON.stringify({ pid: await deadPid(), command: 'quantize', started: 'then' }));
    const out = await openOutputDirectory(dir, 'test');
    out.release();
  });

  it('removes stale temporaries of dead processes only', async () => {
    const dir = scratch();
    const dead = await deadPid();
    writeFileSync(join(dir, `.model.safetensors.${dead}.0123abcd.tmp`), 'half');
    writeFileSync(join(dir, `.model.safetensors.${process.pid}.0123abcd.tmp`), 'mine');
    writeFileSync(join(dir, 'model.safetensors'), 'kept');
    expect(removeStaleTemporaries(dir)).toEqual([`.model.safetensors.${dead}.0123abcd.tmp`]);
    expect(readdirSync(dir).sort()).toEqual([`.model.safetensors.${process.pid}.0123abcd.tmp`, 'model.safetensors']);
  });

  it('SIGINT and SIGTERM during an atomic write remove the temporary and the lock', async () => {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      const dir = scratch();
      // A child that locks `dir` and starts an atomic write that never finishes.
      const script = `
        const io = await import(${JSON.stringify(distIndex)});
        await io.openOutputDirectory(${JSON.stringify(dir)}, 'child');
        io.writeFileAtomic(${JSON.stringify(join(dir, 'big.bin'))}, async (h) => { await h.write('partial'); console.log('writing'); await new Promise(() => setInterval(() => {}, 1000)); });
      `;
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
      await new Promise<void>((r) => child.stdout.on('data', () => r()));
      expect(readdirSync(dir).length).toBe(2); // lock + temporary
      const code = await new Promise<number | null>((r) => {
        child.on('exit', (c) => r(c));
        child.kill(signal);
      });
      expect(code).toBe(signal === 'SIGINT' ? 130 : 143);
      expect(readdirSync(dir)).toEqual([]);
    }
  });
});

describe('writeFileSet', () => {
  it('swaps a whole set in, replaces the previous set, keeps other files, and leaves the directory unchanged when writing fails', async () => {
    const dir = scratch();
    writeFileSync(join(dir, 'notes.txt'), 'mine');
    await writeFileSet(dir, async (staging) => {
      writeFileSync(join(staging, 'weights.bin'), 'one');
      writeFileSync(join(staging, 'old-extra.bin'), 'one');
      writeFileSync(join(staging, 'report.json'), 'one');
    }, { last: 'report.json' });
    expect(readdirSync(dir).sort()).toEqual(['notes.txt', 'old-extra.bin', 'report.json', 'weights.bin']);
    await expect(writeFileSet(dir, async (staging) => {
      writeFileSync(join(staging, 'weights.bin'), 'two');
      throw new Error('interrupted while writing');
    })).rejects.toThrow('interrupted while writing');
    expect(readdirSync(dir).sort()).toEqual(['notes.txt', 'old-extra.bin', 'report.json', 'weights.bin']);
    expect(readFileSync(join(dir, 'weights.bin'), 'utf8')).toBe('one');
    const { files } = await writeFileSet(dir, async (staging) => {
      writeFileSync(join(staging, 'weights.bin'), 'two');
      writeFileSync(join(staging, 'report.json'), 'two');
    }, { replaces: ['weights.bin', 'old-extra.bin', 'report.json', '../escape', '.layerquant.lock'], last: 'report.json' });
    expect(files.sort()).toEqual(['report.json', 'weights.bin']);
    expect(readdirSync(dir).sort()).toEqual(['notes.txt', 'report.json', 'weights.bin']);
    expect(readFileSync(join(dir, 'weights.bin'), 'utf8')).toBe('two');
  });
});

describe('writeDirectoryAtomic', () => {
  it('swaps a whole new directory in, and leaves the old one and no temporary when the fill fails', async () => {
    const parent = scratch();
    const dir = join(parent, 'entry');
    await writeDirectoryAtomic(dir, async (tmp) => {
      writeFileSync(join(tmp, 'a.csv'), 'one\n');
      writeFileSync(join(tmp, 'b.csv'), 'two\n');
    });
    expect(readdirSync(dir).sort()).toEqual(['a.csv', 'b.csv']);
    await expect(
      writeDirectoryAtomic(dir, async (tmp) => {
        writeFileSync(join(tmp, 'a.csv'), 'half written\n');
        throw new Error('disk full');
      }),
    ).rejects.toThrow('disk full');
    expect(readFileSync(join(dir, 'a.csv'), 'utf8')).toBe('one\n');
    expect(readdirSync(parent)).toEqual(['entry']);
    // A second complete write replaces every file (b.csv of the old entry does not survive).
    await writeDirectoryAtomic(dir, async (tmp) => writeFileSync(join(tmp, 'c.csv'), 'three\n'));
    expect(readdirSync(dir)).toEqual(['c.csv']);
    expect(readdirSync(parent)).toEqual(['entry']);
  });
});
