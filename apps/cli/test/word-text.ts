import { writeFileSync } from 'node:fs';

/** A plain-text file of `count` words cycling through a short vocabulary (the text of tiny random-model tests). */
export function writeWordText(path: string, count: number): void {
  const words = ['the', 'quick', 'brown', 'fox', 'jumps', 'over', 'a', 'lazy', 'dog', 'and', 'runs', 'away'];
  writeFileSync(path, `${Array.from({ length: count }, (_, i) => words[(i * 7 + (i >> 3)) % words.length]).join(' ')}.\n`);
}
