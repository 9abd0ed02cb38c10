import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, chmodSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { OutputDirectoryError } from '@layerquant/core';
import { describe, expect, it } from 'vitest';
import { openOutputDirectory, removeStaleTemporaries, writeFileSet } from './output-dir.js';
import { writeDirectoryAtomic } from './atomic.js';
import { directorySnapshot, swapRenamesDone } from './testing.js';

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
    }, { replace: (name) => name.endsWith('.bin') || name === 'report.json' || name === '..' || name === '.layerquant.lock', last: 'report.json' });
    expect(files.sort()).toEqual(['report.json', 'weights.bin']);
    expect(readdirSync(dir).sort()).toEqual(['notes.txt', 'report.json', 'weights.bin']);
    expect(readFileSync(join(dir, 'weights.bin'), 'utf8')).toBe('two');
  });
});

const tree = (dir: string) => directorySnapshot(dir, { content: 'text' });

describe('writeFileSet: the previous set or the new one, whole, at every instant', () => {
  // A previous set (report, weights, a file only it has), and files that are not the set's (notes, a cache).
  const previous = () => {
    const dir = scratch();
    for (const [name, text] of [['report.json', 'old report'], ['weights.bin', 'old weights'], ['old-only.bin', 'old extra'], ['notes.txt', 'mine']] as const) writeFileSync(join(dir, name), text);
    mkdirSync(join(dir, 'stats'));
    writeFileSync(join(dir, 'stats', 'fnorm.csv'), 'cached');
    return dir;
  };
  // A child that swaps in a new set with every rename slowed by the test hook, printing nothing: the test watches the disk.
  const swapChild = (dir: string) => {
    const script = `
      const io = await import(${JSON.stringify(distIndex)});
      const out = await io.openOutputDirectory(${JSON.stringify(dir)}, 'child');
      await io.writeFileSet(${JSON.stringify(dir)}, async (staging) => {
        const fs = await import('node:fs');
        for (const [name, text] of [['weights.bin', 'new weights'], ['new-only.bin', 'new extra'], ['report.json', 'new report']]) fs.writeFileSync(staging + '/' + name, text);
      }, { replace: (name) => name.endsWith('.bin') || name === 'report.json', last: 'report.json' });
      out.release();
    `;
    return spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LAYERQUANT_TEST_SWAP_DELAY_MS: '120' } });
  };
  const waitFor = async (dir: string, renames: number) => {
    const deadline = Date.now() + 20_000;
    while (swapRenamesDone(dir, 3) < renames) {
      if (Date.now() > deadline) throw new Error(`the swap never reached ${renames} renames`);
      await new Promise((r) => setTimeout(r, 5));
    }
  };

  it('SIGINT after each rename of the swap leaves the previous set whole (and the user\'s files), exit 130', async () => {
    // 6 renames: 3 out (report first), 3 in (report last). Interrupted after 1 ... 5 of them.
    for (let renames = 1; renames <= 5; renames++) {
      const dir = previous();
      const before = tree(dir);
      const child = swapChild(dir);
      const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
      await waitFor(dir, renames);
      child.kill('SIGINT');
      expect(await exited, `after ${renames} renames`).toBe(130);
      expect(tree(dir), `after ${renames} renames`).toEqual(before);
    }
  });

  it('SIGKILL in the middle of the swap: the next run puts the previous set back from the journal; an uninterrupted swap then replaces it whole', async () => {
    const dir = previous();
    const before = tree(dir);
    const child = swapChild(dir);
    const exited = new Promise((r) => child.on('exit', r));
    await waitFor(dir, 4); // the old set aside, one new file in
    child.kill('SIGKILL');
    await exited;
    expect(tree(dir)).not.toEqual(before);
    removeStaleTemporaries(dir);
    const { '.layerquant.lock': _lock, ...recovered } = tree(dir); // the dead child's lock is the next open's to take over
    expect(recovered).toEqual(before);

    rmSync(join(dir, '.layerquant.lock'));
    await writeFileSet(dir, async (staging) => {
      writeFileSync(join(staging, 'weights.bin'), 'new weights');
      writeFileSync(join(staging, 'report.json'), 'new report');
    }, { replace: (name) => name.endsWith('.bin') || name === 'report.json', last: 'report.json' });
    expect(tree(dir)).toEqual({ 'report.json': 'new report', 'weights.bin': 'new weights', 'notes.txt': 'mine', 'stats/fnorm.csv': 'cached' });
  });

  it('a replace predicate is the only way a previous file goes: names outside it stay, whatever else claims them', async () => {
    const dir = previous();
    await writeFileSet(dir, async (staging) => writeFileSync(join(staging, 'report.json'), 'new'), { replace: (name) => name === 'weights.bin' });
    expect(tree(dir)).toEqual({ 'report.json': 'new', 'old-only.bin': 'old extra', 'notes.txt': 'mine', 'stats/fnorm.csv': 'cached' });
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
