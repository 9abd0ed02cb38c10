import { readCsv } from '@layerquant/allocators';
import { InvalidDataError } from '@layerquant/core';
import type { MethodPoint } from './figures.js';

/** The authors' published Llama-2-7B results (lm-quant-toolkit `data-vis/endeavors/milp/data/combined.csv`). */
export interface PublishedRow {
  readonly algorithm: string;
  readonly attempt: string;
  readonly config: string;
  readonly bpp: number;
  readonly wikitext: number;
  readonly c4: number;
}

export type PublishedDataset = 'wikitext' | 'c4';

/** Series names for the table's (algo, attempt) pairs; a pair not listed keeps its own name. */
const SERIES_NAMES: Readonly<Record<string, string>> = {
  hqq: 'HQQ uniform',
  'mxq/mxq2': 'MXQ',
  'mxq/sensi-milp-1': 'SensiMILP (top 1)',
  'mxq/sensi-milp-2': 'SensiMILP (top 2)',
  'mxq/sensi-milp-3': 'SensiMILP (top 3)',
  'mxq/kurt-milp-1': 'KurtMILP (top 1)',
  'mxq/kurt-milp-2': 'KurtMILP (top 2)',
  'mxq/kurt-milp-3': 'KurtMILP (top 3)',
  'mxq/sensi-milp-abl': 'Ablation of SensiMILP',
  'mxq/kurt-milp-abl': 'Ablation of KurtMILP',
  gptq: 'GPTQ',
  awq: 'AWQ',
  bnb: 'bitsandbytes',
};

export const PUBLISHED_UNIFORM = SERIES_NAMES.hqq!;

export function seriesOf(row: Pick<PublishedRow, 'algorithm' | 'attempt'>): string {
  const key = row.attempt ? `${row.algorithm}/${row.attempt}` : row.algorithm;
  return SERIES_NAMES[key] ?? key;
}

const number = (text: string) => (text === '' ? Number.NaN : Number(text));

/** Parses published-results.csv; rows without a perplexity stay NaN (the authors left some runs blank). */
export function parsePublishedResults(text: string, source: string): PublishedRow[] {
  const doc = readCsv(text, source);
  const column = (name: string) => {
    const i = doc.header.indexOf(name);
    if (i < 0) throw new InvalidDataError(source, `has no column "${name}"; expected the authors' combined.csv (model,algo,config,bpp,attempt,ppl_wikitext,ppl_c4,...)`);
    return i;
  };
  const [algo, config, bpp, attempt, wikitext, c4] = ['algo', 'config', 'bpp', 'attempt', 'ppl_wikitext', 'ppl_c4'].map(column) as [number, number, number, number, number, number];
  return doc.records.map((r) => {
    const row = { algorithm: r.fields[algo]!, attempt: r.fields[attempt]!, config: r.fields[config]!, bpp: number(r.fields[bpp]!), wikitext: number(r.fields[wikitext]!), c4: number(r.fields[c4]!) };
    if (!Number.isFinite(row.bpp)) throw new InvalidDataError(`${source}:${r.line}`, `bpp "${r.fields[bpp]}" is not a number`);
    return row;
  });
}

/** The quantized rows as figure points for one dataset (the fp16 row is the reference line, not a point). */
export function publishedPoints(rows: readonly PublishedRow[], dataset: PublishedDataset): MethodPoint[] {
  return rows
    .filter((r) => r.algorithm !== 'fp16' && Number.isFinite(r[dataset]))
    .map((r) => ({ series: seriesOf(r), bpp: r.bpp, ppl: r[dataset], note: `${r.algorithm} ${r.config}${r.attempt ? ` (${r.attempt})` : ''}` }));
}

export function publishedFloat(rows: readonly PublishedRow[], dataset: PublishedDataset): number | undefined {
  return rows.find((r) => r.algorithm === 'fp16')?.[dataset];
}
