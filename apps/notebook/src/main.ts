import './style.css';
import { analyse } from './analysis.js';
import { renderAllocationCell } from './cells/allocation.js';
import { renderKurtosisCell } from './cells/kurtosis.js';
import { renderModelCell } from './cells/model.js';
import { renderOutliersCell } from './cells/outliers.js';
import { renderParetoCell, renderTableCell } from './cells/results.js';
import { renderSensitivityCell } from './cells/sensitivity.js';
import { loadNotebookData, type NotebookData } from './data.js';
import { renderKnobs } from './knobs.js';
import { availableMethods } from './methods.js';
import { createCell, element, prose, renderInto } from './notebook.js';
import { DEFAULT_KNOBS, createStore, type Knobs } from './state.js';

const DATA_URL = `${import.meta.env.BASE_URL}data/notebook.json`;

function sourceBanner(data: NotebookData): HTMLElement {
  const badge = (kind: string) => element('span', { class: `badge badge-${kind}` }, kind === 'oracles' ? 'PyTorch oracles' : 'layerquant CLI');
  const { sources } = data;
  return element(
    'aside',
    { class: 'sources', 'data-source': data.source },
    element('strong', {}, 'Data shown: '),
    badge(data.source),
    element(
      'ul',
      {},
      element('li', {}, 'model: ', badge(sources.model.kind), ` ${sources.model.detail}`),
      element('li', {}, 'statistics: ', badge(sources.statistics.kind), ` ${sources.statistics.detail}`),
      element('li', {}, 'perplexity: ', badge(sources.results.kind), ` ${sources.results.detail}`),
    ),
    prose(`Generated ${data.generatedAt} by \`pnpm --filter notebook precompute\`.`),
  );
}

async function main(): Promise<void> {
  const app = document.querySelector<HTMLElement>('#app')!;
  let data: NotebookData;
  try {
    data = await loadNotebookData(DATA_URL);
  } catch (error) {
    app.replaceChildren(element('pre', { class: 'cell-error' }, error instanceof Error ? error.message : String(error)));
    return;
  }
  const analysis = analyse(data);
  const store = createStore(DEFAULT_KNOBS);

  const header = element(
    'header',
    {},
    element('h1', {}, 'Layer-sensitive quantization, step by step'),
    prose(
      `This notebook walks the method of *Towards Superior Quantization Accuracy: A Layer-sensitive Approach* (Zhang et al., arXiv 2503.06518) on ${data.model.name}, ` +
        'the small Llama shipped with layerquant. Each cell says what the step does, shows the call it makes, and draws the result. ' +
        'The knobs re-run the allocators of `@layerquant/allocators` and the memory accounting of `@layerquant/quantizers` here in the page; ' +
        'statistics and perplexity, which need the model to run, were computed beforehand and loaded from `data/notebook.json`.',
    ),
    sourceBanner(data),
  );
  app.replaceChildren(header);
  renderKnobs(app, store, availableMethods(analysis.stats));
  const cells = element('div', { class: 'cells' });
  app.append(cells);

  const model = createCell(cells, {
    id: 'model',
    number: 1,
    title: 'Load the model',
    text: [
      'A Llama-family checkpoint is a set of named tensors. Only the seven linear matrices of each decoder layer (`q, k, v, o` of attention, `gate, up, down` of the MLP) are quantized; embeddings, norms and `lm_head` stay in float.',
      'Reading the safetensors headers is enough to know every tensor\'s name, dtype and shape, so nothing here loads a weight.',
    ],
  });
  const kurtosis = createCell(cells, {
    id: 'kurtosis',
    number: 2,
    title: 'Weight kurtosis per layer and module',
    text: [
      'Kurtosis measures how heavy the tails of a weight distribution are: Pearson kurtosis `m4 / m2²` of all weights of a matrix, 3 for a normal distribution. Matrices with a few very large weights are harder to quantize with few bits, because one scale per group must stretch to cover them.',
      'KurtBoost looks for layers where kurtosis *jumps* compared with the layer before: the red rings are those outlier layers for the current `top_m`.',
    ],
  });
  const sensitivity = createCell(cells, {
    id: 'sensitivity',
    number: 3,
    title: 'Activation sensitivity per layer (the paper\'s Figure 1)',
    text: [
      'Activation sensitivity quantizes part of one decoder block (HQQ b4g64), runs calibration text through it, and measures the mean squared error of the block output against the float block. Four measurements per layer: `attn_in` (q, k, v quantized), `attn_out` (o), `mlp_gate` (gate, up) and `mlp_down` (down).',
      'As in the paper, the first layers and a few isolated ones stand out. SensiBoost compares each layer with the previous one (a ratio), so it catches those jumps.',
    ],
  });
  const outliers = createCell(cells, {
    id: 'outliers',
    number: 4,
    title: 'Outlier layers',
    text: [
      'For each module type the consecutive changes `D_i` are scored against a trimmed mean and deviation; a layer is an outlier when its z-score exceeds 3. `top_m` keeps the most extreme few (1 is the authors\' default; 0 keeps all).',
    ],
  });
  const allocation = createCell(cells, {
    id: 'allocation',
    number: 5,
    title: 'Allocate bits: a layer x module map',
    text: [
      'Every method starts from a *budget*, a stop on the ladder of 12 uniform configs (2.13 = b2g128 ... 8.51 = b8g32). Uniform HQQ gives every matrix that config. SensiBoost and KurtBoost move each outlier matrix `boost_stop` stops up the ladder, paying a little extra memory for the layers that need it. MXQ instead solves for the configs that minimise the summed Frobenius error within the budget.',
      'Change the knobs above: the allocator runs again here, and the heat map and memory follow.',
    ],
  });
  const pareto = createCell(cells, {
    id: 'pareto',
    number: 6,
    title: 'Perplexity against memory (the paper\'s Figure 5)',
    text: [
      `Each point is one allocation quantized with HQQ and evaluated by perplexity on held-out text (${data.reference.perplexityDataset}, non-overlapping windows). Down and left is better; the dashed line is the float model.`,
    ],
  });
  const results = createCell(cells, {
    id: 'results',
    number: 7,
    title: 'The results table',
    text: ['The same numbers as a table, one row per method and budget, with the extra memory each method spends over uniform HQQ at the same budget.'],
  });

  const renderAll = (knobs: Knobs, previous?: Knobs) => {
    const topMChanged = !previous || previous.topM !== knobs.topM;
    if (!previous) renderInto(model, () => renderModelCell(model, analysis));
    if (topMChanged) {
      renderInto(kurtosis, () => renderKurtosisCell(kurtosis, analysis, knobs));
      renderInto(sensitivity, () => renderSensitivityCell(sensitivity, analysis, knobs));
      renderInto(outliers, () => renderOutliersCell(outliers, analysis, knobs));
    }
    renderInto(allocation, () => renderAllocationCell(allocation, analysis, knobs));
    renderInto(pareto, () => renderParetoCell(pareto, analysis, knobs));
    renderInto(results, () => renderTableCell(results, analysis, knobs));
    document.body.dataset.knobs = JSON.stringify(knobs);
  };
  renderAll(store.get());
  store.subscribe(renderAll);
  document.body.dataset.ready = 'true';
}

void main();
