import type { ModelStats } from '@layerquant/allocators';
import { analyseModel, type ModelAnalysis } from '../analysis.js';
import { pickedFilesOf } from '../live/model-files.js';
import { describeError } from '../live/client.js';
import { progressView } from '../live/progress.js';
import type { OpenResult } from '../live/protocol.js';
import { createLiveModel, type LiveModel } from '../live/session.js';
import { element, formatBytes, formatInteger, prose, renderInto, type Cell } from '../notebook.js';
import type { Knobs } from '../state.js';
import { renderAllocationCell } from './allocation.js';
import { renderKurtosisCell } from './kurtosis.js';
import { createMeasureCell, type MeasureCell } from './measure.js';

export interface OwnModelCells {
  update(knobs: Knobs): void;
}

interface Loaded {
  readonly live: LiveModel;
  readonly opened: OpenResult;
  analysis?: ModelAnalysis;
  measure?: MeasureCell;
}

/**
 * A reader's own Hugging Face directory, picked with a directory input (read in the page; nothing is uploaded):
 * inspect it, measure kurtosis (and, on request, the fnorm table MXQ needs), allocate with the knobs, and where it
 * fits in the page's memory, quantize and evaluate it like the shipped model.
 */
export function createOwnModelCells(
  picker: Cell,
  cells: { inspect: Cell; kurtosis: Cell; allocation: Cell; measure: Cell },
  textUrl: string,
  initial: Knobs,
): OwnModelCells {
  let knobs = initial;
  let loaded: Loaded | undefined;
  const input = element('input', { type: 'file', 'data-live-input': 'directory', webkitdirectory: '', directory: '', multiple: '' });
  const progress = progressView('own-model');
  const fnormButton = element('button', { type: 'button', 'data-action': 'fnorm', disabled: '' }, 'Measure the fnorm table (for MXQ)');
  picker.setCode('<input type="file" webkitdirectory>   // config.json, *.safetensors (+ index), tokenizer.json: read with File.slice, never uploaded');
  picker.setOutput(element('div', { class: 'live-controls' }, element('label', {}, 'Model directory: ', input), fnormButton), progress.root);
  for (const cell of Object.values(cells)) cell.setOutput(element('p', { class: 'muted' }, 'Choose a model directory in the cell above.'));

  const renderAnalysis = () => {
    if (!loaded?.analysis) return;
    const analysis = loaded.analysis;
    renderInto(cells.kurtosis, () => renderKurtosisCell(cells.kurtosis, analysis, knobs));
    renderInto(cells.allocation, () => renderAllocationCell(cells.allocation, analysis, knobs));
    const measure = loaded.measure;
    if (measure) renderInto(cells.measure, () => measure.update(knobs));
  };

  const setStats = (stats: ModelStats) => {
    if (!loaded) return;
    const { opened } = loaded;
    loaded.analysis = analyseModel(stats, opened.tensors, opened.summary.numLayers, `${opened.summary.dir} tensors`);
    if (!loaded.measure) {
      if (opened.fits.ok && opened.hasTokenizer) {
        loaded.measure = createMeasureCell(cells.measure, loaded.live, loaded.analysis, knobs);
      } else {
        cells.measure.setCode('// not run: see below');
        cells.measure.setOutput(
          element(
            'p',
            { class: 'cell-message', 'data-message': opened.fits.ok ? 'no-tokenizer' : 'too-large' },
            opened.fits.ok ? `${opened.summary.dir} has no tokenizer.json: the page needs it to tokenize brown-test.` : opened.fits.message,
          ),
        );
      }
    }
    renderAnalysis();
  };

  const open = async (list: FileList) => {
    loaded?.live.terminate();
    loaded = undefined;
    picker.root.dataset.live = 'busy';
    fnormButton.disabled = true;
    const { name, files } = pickedFilesOf(list);
    const live = createLiveModel({ kind: 'picked', name, files }, textUrl);
    try {
      progress.status(`reading ${name} (${files.length} files)`);
      const opened = await live.open();
      loaded = { live, opened };
      renderInspect(cells.inspect, opened, files.length);
      const stats = await live.statistics(false, (p) => progress.update(p, 'kurtosis'));
      setStats({ kurtosis: stats.kurtosis, source: name });
      fnormButton.disabled = false;
      progress.status(`${name}: ${opened.summary.linearMatrices} matrices, kurtosis in ${stats.seconds.toFixed(1)} s. ${opened.fits.message}`, 'done');
      picker.root.dataset.live = 'done';
    } catch (error) {
      progress.status(describeError(error), 'error');
      picker.root.dataset.live = 'error';
      for (const cell of Object.values(cells)) cell.setError(error);
    }
  };
  input.addEventListener('change', () => {
    if (input.files && input.files.length > 0) void open(input.files);
  });
  fnormButton.addEventListener('click', async () => {
    if (!loaded) return;
    fnormButton.disabled = true;
    try {
      const stats = await loaded.live.statistics(true, (p) => progress.update(p, 'fnorm'));
      setStats({ kurtosis: stats.kurtosis, ...(stats.fnorm ? { fnorm: stats.fnorm } : {}), source: loaded.opened.summary.dir });
      progress.status(`fnorm table: ${stats.fnorm?.rows.length ?? 0} rows in ${stats.seconds.toFixed(1)} s; MXQ can allocate now`, 'done');
    } catch (error) {
      progress.status(describeError(error), 'error');
    } finally {
      fnormButton.disabled = false;
    }
  });
  return {
    update(next) {
      knobs = next;
      renderAnalysis();
    },
  };
}

function renderInspect(cell: Cell, opened: OpenResult, fileCount: number): void {
  const s = opened.summary;
  cell.setCode(`openModelFiles(pickedModelFiles(...))   // @layerquant/tensor-io/browser: config.json + safetensors headers; ${fileCount} files picked`);
  const facts: [string, string][] = [
    ['model', s.dir],
    ['architecture', `${s.architecture} (${s.modelType})`],
    ['layers', String(s.numLayers)],
    ['hidden size', String(s.hiddenSize)],
    ['ffn size', String(s.intermediateSize)],
    ['heads', `${s.numHeads} (${s.numKeyValueHeads} key/value)`],
    ['vocabulary', formatInteger(s.vocabSize)],
    ['parameters', formatInteger(s.params)],
    ['linear parameters', `${formatInteger(s.linearParams)} in ${s.linearMatrices} matrices`],
    ['stored', `${s.tensors} tensors in ${s.files} file${s.files === 1 ? '' : 's'}, ${formatBytes(s.bytes)} (${Object.entries(s.dtypes).map(([d, n]) => `${d} x${n}`).join(', ')})`],
    ['tokenizer', opened.hasTokenizer ? 'tokenizer.json' : 'none (perplexity and generation need tokenizer.json)'],
    ['page memory', opened.fits.message],
  ];
  cell.setOutput(
    element('dl', { class: 'facts', 'data-facts': 'own-model' }, ...facts.flatMap(([k, v]) => [element('dt', {}, k), element('dd', {}, v)])),
    opened.fits.ok ? prose('It fits: the cells below quantize and evaluate it here.') : element('p', { class: 'cell-message', 'data-message': 'too-large' }, opened.fits.message),
  );
}
