import './style.css';
import { analyse } from './analysis.js';
import { renderAllocationCell } from './cells/allocation.js';
import { renderKurtosisCell } from './cells/kurtosis.js';
import { renderModelCell } from './cells/model.js';
import { renderOutliersCell } from './cells/outliers.js';
import { createGenerateCell } from './cells/generate.js';
import { createMeasureCell } from './cells/measure.js';
import { createOwnModelCells } from './cells/own-model.js';
import { renderPublishedCell } from './cells/published.js';
import { renderParetoCell, renderTableCell } from './cells/results.js';
import { renderSensitivityCell } from './cells/sensitivity.js';
import { loadNotebookData, type NotebookData } from './data.js';
import { renderKnobs } from './knobs.js';
import { availableMethods } from './methods.js';
import { createLiveModel } from './live/session.js';
import { parsePublishedResults } from './published.js';
import { createCell, element, prose, renderInto } from './notebook.js';
import { DEFAULT_KNOBS, createStore, type Knobs } from './state.js';
import { allocationFileBytes, exportCostModel, shippedSizesInWorker, type ShippedSizes } from './shipped.js';
import { parseDecoderConfig } from '@layerquant/tensor-io/browser';
import type { Allocation } from '@layerquant/core';

const BASE = import.meta.env.BASE_URL;
const DATA_URL = `${BASE}data/notebook.json`;
/** The shipped model and the evaluation text, served beside the page (see vite.config.ts, serveFixtures). */
const MODEL_URL = new URL(`${BASE}models/llama-brown-26m/`, location.href).href;
const TEXT_URL = new URL(`${BASE}data/brown-test.txt`, location.href).href;
const CALIBRATION_URL = new URL(`${BASE}data/brown-calib.txt`, location.href).href;
const PUBLISHED_URL = `${BASE}paper-data/llama-2-7b/published-results.csv`;

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
  const started = performance.now();
  const analysis = analyse(data);
  // Figure 5 and the table show the paper's accounting until the shipped sizes (computed in a worker) arrive.
  let shipped: ShippedSizes | undefined;
  // Cell 5's shipped file of the knobs' allocation: the export's cost model of the served model's config.json.
  let fileBytesOf: ((allocation: Allocation) => number) | undefined;
  const store = createStore(DEFAULT_KNOBS);

  const header = element(
    'header',
    {},
    element('h1', {}, 'Layer-sensitive quantization, step by step'),
    prose(
      `This notebook walks the method of *Towards Superior Quantization Accuracy: A Layer-sensitive Approach* (Zhang et al., arXiv 2503.06518) on ${data.model.name}, ` +
        'the small Llama shipped with layerquant. Each cell says what the step does, shows the call it makes, and draws the result. ' +
        'The knobs re-run the allocators of `@layerquant/allocators` and the memory accounting of `@layerquant/quantizers` here in the page; ' +
        'the statistics and the full-text perplexities of cells 2-8 were computed beforehand and loaded from `data/notebook.json`. ' +
        'Cells 9-15 run the model itself in the page: HQQ in WebAssembly, the decoder in onnxruntime-web, on the shipped model or on your own. ' +
        'Every size is in MiB (2^20 bytes) and says what it measures: the shipped file, the paper\'s accounting or the checkpoint.',
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
      'The x axis is, by default, what a user ships: the size of the ONNX file `layerquant export --format onnx` writes for each allocation, embeddings, `lm_head`, norms and graph included, computed exactly by the export\'s cost model. The paper\'s accounting (the quantized matrices alone, as the paper plots) is the other choice.',
    ],
  });
  const published = createCell(cells, {
    id: 'published',
    number: 7,
    title: 'The paper\'s own numbers: Llama-2-7B',
    text: [
      'The authors published every Llama-2-7B run of their study: HQQ at the budget stops, MXQ at 259 budgets, their outlier-driven MILP allocators (SensiMILP, KurtMILP) and ablations, and GPTQ, AWQ and bitsandbytes. Plotted as Figure 5 is, next to ours at 26M parameters.',
    ],
  });
  const results = createCell(cells, {
    id: 'results',
    number: 8,
    title: 'The results table',
    text: ['The same numbers as a table, one row per method and budget, with the extra memory each method spends over uniform HQQ at the same budget.'],
  });
  const measureCell = createCell(cells, {
    id: 'measure',
    number: 9,
    title: 'Quantize and evaluate here, in the page',
    text: [
      'Everything above about perplexity was computed beforehand. This cell does it live: it loads the shipped model, quantizes every matrix with the knobs\' allocation using the HQQ kernel compiled to WebAssembly (in a worker, so the page stays responsive), and measures perplexity with onnxruntime-web on the first windows of brown-test. Any method, budget and option the knobs allow gets a measurement, inside the precomputed grid or not.',
    ],
  });
  const generate = createCell(cells, {
    id: 'generate',
    number: 10,
    title: 'Generate: what the bits do to the text',
    text: ['Greedy decoding from the float model and from the quantized one, side by side, for the same prompt (the model was trained on the Brown corpus, Moby-Dick, State of the Union addresses and the KJV Bible).'],
  });
  const picker = createCell(cells, {
    id: 'own-model',
    number: 11,
    title: 'Your own model',
    text: [
      'Pick a Hugging Face model directory on this computer (config.json, the safetensors file or shards with their index, tokenizer.json). It is read here with the File API; nothing is uploaded. The cells below run on it: inspect, kurtosis, allocation and, where it fits in the page\'s memory, quantization and perplexity.',
    ],
  });
  const own = {
    inspect: createCell(cells, { id: 'own-inspect', number: 12, title: 'Your model: inspect', text: ['config.json and the safetensors headers: no weight is read.'] }),
    kurtosis: createCell(cells, { id: 'own-kurtosis', number: 13, title: 'Your model: weight kurtosis', text: ['Every linear matrix read once, in the worker. KurtBoost\'s outlier layers ringed.'] }),
    allocation: createCell(cells, {
      id: 'own-allocation',
      number: 14,
      title: 'Your model: allocation',
      text: ['The knobs\' method on your model\'s statistics. Uniform and KurtBoost need only kurtosis; MXQ needs the fnorm table (12 HQQ runs per matrix); SensiBoost and its ablation need activation sensitivity (the model run on calibration text). A method whose table is missing says so here, with a button that measures it in the page.'],
    }),
    measure: createCell(cells, { id: 'own-measure', number: 15, title: 'Your model: quantize and evaluate', text: ['As cell 9, on your model and its tokenizer.'] }),
  };

  const live = createLiveModel({ kind: 'url', base: MODEL_URL, name: data.model.name }, TEXT_URL, CALIBRATION_URL);
  const measure = createMeasureCell(measureCell, live, analysis, store.get(), data);
  const generation = createGenerateCell(generate, live, analysis, store.get());
  const ownModel = createOwnModelCells(picker, own, { text: TEXT_URL, calibration: CALIBRATION_URL }, store.get());
  renderInto(published, () => {
    published.setOutput(element('p', { class: 'muted' }, 'Loading the published results…'));
    void fetch(PUBLISHED_URL)
      .then(async (response) => {
        if (!response.ok) throw new Error(`${PUBLISHED_URL}: HTTP ${response.status}`);
        const rows = parsePublishedResults(await response.text(), 'published-results.csv');
        renderInto(published, () => renderPublishedCell(published, analysis, rows));
      })
      .catch((error: unknown) => published.setError(error));
  });

  const renderAll = (knobs: Knobs, previous?: Knobs) => {
    const topMChanged = !previous || previous.topM !== knobs.topM;
    if (!previous) renderInto(model, () => renderModelCell(model, analysis));
    if (topMChanged) {
      renderInto(kurtosis, () => renderKurtosisCell(kurtosis, analysis, knobs));
      renderInto(sensitivity, () => renderSensitivityCell(sensitivity, analysis, knobs));
      renderInto(outliers, () => renderOutliersCell(outliers, analysis, knobs));
    }
    renderInto(allocation, () => renderAllocationCell(allocation, analysis, knobs, fileBytesOf));
    renderInto(pareto, () => renderParetoCell(pareto, analysis, knobs, shipped));
    renderInto(results, () => renderTableCell(results, analysis, knobs, shipped));
    if (previous) {
      renderInto(measureCell, () => measure.update(knobs));
      renderInto(generate, () => generation.update(knobs));
      ownModel.update(knobs);
    }
    document.body.dataset.knobs = JSON.stringify(knobs);
  };
  renderAll(store.get());
  store.subscribe(renderAll);
  void fetch(`${MODEL_URL}config.json`)
    .then(async (response) => {
      if (!response.ok) throw new Error(`${MODEL_URL}config.json: HTTP ${response.status}`);
      const cost = exportCostModel(parseDecoderConfig(await response.json(), 'config.json'), data.tensors.map((t) => t.name));
      fileBytesOf = (a) => allocationFileBytes(cost, a);
      renderInto(allocation, () => renderAllocationCell(allocation, analysis, store.get(), fileBytesOf));
    })
    .catch((error: unknown) => console.warn(`no shipped size in cell 5: ${error instanceof Error ? error.message : String(error)}`));
  void shippedSizesInWorker(data.results, { data: new URL(DATA_URL, location.href).href, config: `${MODEL_URL}config.json` })
    .then((sizes) => {
      shipped = sizes;
      const knobs = store.get();
      renderInto(pareto, () => renderParetoCell(pareto, analysis, knobs, shipped));
      renderInto(results, () => renderTableCell(results, analysis, knobs, shipped));
      document.body.dataset.shippedSizes = 'ready';
    })
    .catch((error: unknown) => {
      // The figure keeps the paper's axis and says why.
      console.warn(`shipped sizes unavailable: ${error instanceof Error ? error.message : String(error)}`);
      document.body.dataset.shippedSizes = 'unavailable';
    });
  // For tests and the console: the shipped model's worker and the page's start-up time.
  Object.assign(window, { layerquant: { live, analysis, store } });
  document.body.dataset.interactiveMs = String(Math.round(performance.now()));
  document.body.dataset.renderMs = String(Math.round(performance.now() - started));
  document.body.dataset.ready = 'true';
}

void main();
