// Spearman's rank correlation for the benches: Pearson's correlation of the ranks, ties given their mean rank.

/** Ranks (1-based) of values, ties sharing their mean rank. */
export function ranks(values) {
  const order = values.map((v, i) => [v, i]).sort((a, b) => a[0] - b[0]);
  const out = new Array(values.length);
  for (let i = 0; i < order.length; ) {
    let j = i;
    while (j + 1 < order.length && order[j + 1][0] === order[i][0]) j++;
    const rank = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++) out[order[k][1]] = rank;
    i = j + 1;
  }
  return out;
}

function pearson(a, b) {
  const n = a.length;
  const ma = a.reduce((s, v) => s + v, 0) / n;
  const mb = b.reduce((s, v) => s + v, 0) / n;
  let sab = 0;
  let saa = 0;
  let sbb = 0;
  for (let i = 0; i < n; i++) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) ** 2;
    sbb += (b[i] - mb) ** 2;
  }
  return saa > 0 && sbb > 0 ? sab / Math.sqrt(saa * sbb) : Number.NaN;
}

/** Spearman's rho of two equally long lists (NaN when either is constant or shorter than 3). */
export function spearman(a, b) {
  if (a.length !== b.length) throw new TypeError(`spearman: ${a.length} and ${b.length} values`);
  if (a.length < 3) return Number.NaN;
  return pearson(ranks(a), ranks(b));
}
