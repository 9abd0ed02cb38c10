import { describe, expect, it } from 'vitest';
import { QueueResultError, checkCellResult, checkStatisticsResult, checkTableLayers, type PlannedCell } from './results.js';

const HASH = 'c'.repeat(64);
const planned: PlannedCell = { jobId: 'cell-0123456789abcdef', key: '0123456789abcdef', modelHash: HASH, modelName: 'llama', method: 'hqq', budget: 3.25, quantizer: 'hqq', tokens: 2100, seqlen: 512 };

/**
 * A result as a worker returns it for `planned`: 2100 tokens in windows of 512 are 4 windows (the tail dropped),
 * each scoring 511 positions; the perplexity is exp(sum of the weighted window NLL / (4 * 511)).
 */
function result(): { key: string; modelHash: string; row: Record<string, unknown> } {
  const meanNll = [2.5, 2.25, 2.75, 2.0];
  const windowNll = meanNll.map((m) => m * 511);
  return {
    key: planned.key,
    modelHash: HASH,
    row: {
      model: 'llama', method: 'hqq', quantizer: 'hqq', options: '', budget: 3.25, bpp: 3.25, memoryMB: 1.5, packedBytes: 1_600_000, extraMemoryPercent: 0, ppl: Math.exp(windowNll.reduce((s, v) => s + v, 0) / 2044), seconds: 3.5,
      windowNll, windowWeights: [511, 511, 511, 511],
    },
  };
}

function refusal(value: unknown, plan: PlannedCell = planned): string {
  try {
    checkCellResult(plan, value);
    return '';
  } catch (error) {
    expect(error).toBeInstanceOf(QueueResultError);
    return (error as Error).message;
  }
}

describe('the coordinator checks every result against the cell it planned', () => {
  it('accepts a result that matches the plan', () => {
    expect(refusal(result())).toBe('');
    expect(checkCellResult(planned, result()).row.ppl).toBeCloseTo(Math.exp(2.375), 12);
    // The fp row: no budget, no quantizer, no uniform baseline (NaN, null in JSON).
    const fp = result();
    fp.row = { ...fp.row, method: 'fp', budget: null, extraMemoryPercent: null };
    delete fp.row.quantizer;
    expect(refusal(fp, { ...planned, method: 'fp', budget: null, quantizer: null })).toBe('');
  });

  it('experiment --refine: accepts a refined cell\'s row saying what its correction did when planned; refuses one without, one not planned, and a kept correction that measured worse', () => {
    const refined = (refinement: Record<string, unknown> = {}) => {
      const r = result();
      r.row = { ...r.row, refinement: { additiveKld: 0.05, refinedKld: 0.04, kept: 'refined', heldOut: { blocks: 1, additiveKld: 0.06, refinedKld: 0.05 }, changed: 3, measured: 2, stopped: 'converged', ...refinement } };
      return r;
    };
    const refinePlan = { ...planned, refine: true };
    expect(refusal(refined(), refinePlan)).toBe('');
    expect(refusal(refined({ kept: 'additive', refinedKld: 0.06, stopped: null }), refinePlan)).toBe('');
    expect(refusal(result(), refinePlan)).toMatch(/row\.refinement must be an object/);
    expect(refusal(refined())).toMatch(/row\.refinement is not a field of this result/);
    expect(refusal(refined({ refinedKld: 0.06 }), refinePlan)).toMatch(/row\.refinement\.kept is "refined" with a higher measured KLD/);
    expect(refusal(refined({ additiveKld: Number.NaN }), refinePlan)).toMatch(/row\.refinement\.additiveKld must be a finite number/);
    expect(refusal(refined({ measured: 1.5 }), refinePlan)).toMatch(/row\.refinement\.measured must be a whole number/);
    expect(refusal(refined({ extra: 1 }), refinePlan)).toMatch(/row\.refinement\.extra is not a field of this result/);
    // The held-out check: none (null) is accepted; a kept correction worse on the held-out blocks, or a malformed one, is not.
    expect(refusal(refined({ heldOut: null }), refinePlan)).toBe('');
    expect(refusal(refined({ heldOut: { blocks: 1, additiveKld: 0.05, refinedKld: 0.06 } }), refinePlan)).toMatch(/row\.refinement\.kept is "refined" with a higher KLD on the held-out blocks/);
    expect(refusal(refined({ kept: 'additive', heldOut: { blocks: 1, additiveKld: 0.05, refinedKld: 0.06 } }), refinePlan)).toBe('');
    expect(refusal(refined({ heldOut: { blocks: 0, additiveKld: 0.05, refinedKld: 0.04 } }), refinePlan)).toMatch(/row\.refinement\.heldOut\.blocks must be a whole number/);
    expect(refusal(refined({ heldOut: undefined }), refinePlan)).toMatch(/row\.refinement\.heldOut is missing|must be an object/);
  });

  it('experiment --kld: accepts a row with its KL divergence when planned, refuses one without, one not planned, and a mean that is not its windows\'', () => {
    const withKld = () => {
      const r = result();
      const windowKld = [0.05, 0.04, 0.06, 0.05].map((m) => m * 511);
      r.row = { ...r.row, windowKld, windowKldCount: [511, 511, 511, 511], kld: { mean: windowKld.reduce((a, b) => a + b, 0) / 2044, error: 0.001, median: 0.04, p99: 0.2, p999: 0.4, max: 0.5, sameTop: 0.9, sameTopError: 0.01, rmsDeltaP: 0.02, pplRatio: 1.01, pplRatioError: 0.001 } };
      return r;
    };
    const kldPlan = { ...planned, kld: true };
    expect(refusal(withKld(), kldPlan)).toBe('');
    expect(refusal(result(), kldPlan)).toMatch(/row\.kld must be an object/);
    expect(refusal(withKld())).toMatch(/row\.kld is not a field of this result/);
    const tampered = withKld();
    (tampered.row.kld as { mean: number }).mean = 0.01;
    expect(refusal(tampered, kldPlan)).toMatch(/row\.kld\.mean 0\.01 is not the mean KLD of its windows/);
    const counts = withKld();
    counts.row.windowKldCount = [511, 511, 511, 510];
    expect(refusal(counts, kldPlan)).toMatch(/row\.windowKldCount\[3\] is 510, the job planned 511/);
    const sameTop = withKld();
    (sameTop.row.kld as { sameTop: number }).sameTop = 1.5;
    expect(refusal(sameTop, kldPlan)).toMatch(/row\.kld\.sameTop/);
  });

  it('refuses each tampered field, naming the job and the field', () => {
    const cases: [(r: ReturnType<typeof result>) => void, RegExp][] = [
      [(r) => (r.modelHash = 'd'.repeat(64)), /result modelHash \(the content hash of the model the worker read\) is "d{64}", the job planned "c{64}"/],
      [(r) => (r.key = 'fedcba9876543210'), /result key is "fedcba9876543210", the job planned "0123456789abcdef"/],
      [(r) => (r.row.ppl = null), /result row\.ppl must be a finite number, not null \(NaN or infinite in JSON\)/],
      [(r) => (r.row.ppl = 3025.5), /result row\.ppl 3025\.5 is not the perplexity of its windows/],
      [(r) => (r.row.ppl = 0.5), /result row\.ppl 0\.5 is outside 1 to/],
      [(r) => (r.row.bpp = 'NaN'), /result row\.bpp must be a finite number, not the string "NaN"/],
      [(r) => ((r.row.windowNll as number[])[2] = null as unknown as number), /result row\.windowNll\[2\] must be a finite number/],
      [(r) => (r.row.windowNll = [1, 2, 3]), /result row\.windowNll must hold one number per window \(4 windows of 512 tokens\), not 3/],
      [(r) => (r.row.windowWeights = [511, 511, 511, 510]), /result row\.windowWeights\[3\] is 510, the job planned 511/],
      [(r) => (r.row.method = 'mxq'), /result row\.method is "mxq", the job planned "hqq"/],
      [(r) => (r.row.budget = 8), /result row\.budget is 8, the job planned 3\.25/],
      [(r) => (r.row.model = 'other'), /result row\.model is "other"/],
      [(r) => (r.row.quantizer = 'rtn'), /result row\.quantizer is "rtn", the job planned "hqq"/],
      [(r) => (r.row.note = 'x'), /result row\.note is not a field of this result/],
      [(r) => delete (r as Partial<typeof r>).modelHash, /result value\.modelHash is missing/],
    ];
    for (const [tamper, expected] of cases) {
      const r = result();
      tamper(r);
      const message = refusal(r);
      expect(message, String(expected)).toMatch(expected);
      expect(message).toMatch(/^job cell-0123456789abcdef: result .*; it is not recorded/);
    }
    expect(refusal(null)).toMatch(/result value must be an object, not null/);
    expect(refusal('{"key":1}')).toMatch(/result value must be an object, not string/);
  });

  it('checks statistics results: the planned hash, exactly the planned tables, the job layers', () => {
    const plan = { jobId: 'statistics-k-fnorm-3', modelHash: HASH, tables: ['fnorm'] };
    expect(checkStatisticsResult(plan, { modelHash: HASH, tables: { fnorm: 'a,b\n' } })).toEqual({ fnorm: 'a,b\n' });
    expect(() => checkStatisticsResult(plan, { modelHash: 'e'.repeat(64), tables: { fnorm: '' } })).toThrow(/job statistics-k-fnorm-3: result modelHash/);
    expect(() => checkStatisticsResult(plan, { modelHash: HASH, tables: { fnorm: '', kurtosis: '' } })).toThrow(/result tables\.kurtosis is not a field/);
    expect(() => checkStatisticsResult(plan, { modelHash: HASH, tables: {} })).toThrow(/result tables\.fnorm is missing/);
    expect(() => checkStatisticsResult(plan, { modelHash: HASH, tables: { fnorm: 5 } })).toThrow(/result tables\.fnorm must be CSV text/);
    const rows = (layers: number[]) => ({ rows: layers.map((layer) => ({ layer, module: 'q_proj' })) });
    expect(() => checkTableLayers('j', 'fnorm', rows([3, 3, -1]), [3], true)).not.toThrow();
    expect(() => checkTableLayers('j', 'fnorm', rows([3, 4]), [3], true)).toThrow(/job j: result tables\.fnorm row 2 is for layer 4, not one of the job's layers \(3\)/);
    expect(() => checkTableLayers('j', 'fnorm', rows([3]), [3, 5], true)).toThrow(/has no rows for layer 5 of the job/);
    expect(() => checkTableLayers('j', 'fnorm', rows([]), [3], true)).toThrow(/has no rows for the job's layers/);
    expect(() => checkTableLayers('j', 'sensitivity', rows([0, 1]), [0, 1, 2], false)).not.toThrow();
  });
});
