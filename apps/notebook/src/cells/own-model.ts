import { hasTable, type ModelStats } from '@layerquant/allocators';
import { architectureFacts } from '@layerquant/tensor-io/browser';
import { analyseModel, type ModelAnalysis } from '../analysis.js';
import { pickedFilesOf } from '../live/model-files.js';
import { describeError } from '../live/client.js';
import { progressView } from '../live/progress.js';
import { PAGE_CALIBRATION_BLOCKS, type OpenResult, type PageTable } from '../live/protocol.js';
import { createLiveModel, type LiveModel } from '../live/session.js';
import { element, formatBytes, formatInteger, prose, renderInto, type Cell } from '../notebook.js';
import { methods, missingTables } from '../methods.js';
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
  /** Every table measured so far (kurtosis on opening, fnorm and sensitivity on request). */
  stats: ModelStats;
  analysis?: ModelAnalysis;
  measure?: MeasureCell;
}

/** The tables the page measures itself, what each costs, and the button that measures it. */
const PAGE_TABLES: Readonly<Record<Exclude<PageTable, 'kurtosis'>, { readonly label: string; readonly what: string; readonly button: string }>> = {
  fnorm: { label: 'fnorm table', what: 'HQQ at the 12 configs of every matrix, the Frobenius error of each', button: 'Measure the fnorm table (for MXQ)' },
  sensitivity: {
    label: 'activation sensitivity table',
    what: 'the model run on calibration blocks of brown-calib, each block part quantized at b4g64 in turn (`layerquant sensitivity`)',
    button: 'Measure activation sensitivity (for SensiBoost)',
  },
};
const isPageTable = (table: string): table is keyof typeof PAGE_TABLES => Object.hasOwn(PAGE_TABLES, table);
/** Calibration blocks a reader may choose for the page's activation sensitivity (more is slower and steadier). */
export const CALIBRATION_BLOCK_CHOICES: readonly number[] = Object.freeze([2, 4, 8, 16, 32, 128]);

/**
 * A reader's own Hugging Face directory, picked with a directory input (read in the page; nothing is uploaded):
 * inspect it, measure kurtosis, and on request the fnorm table (MXQ) and activation sensitivity (SensiBoost),
 * allocate with the knobs, and where it fits in the page's memory, quantize and evaluate it like the shipped model.
 * A cell whose method needs a table the page has not measured says so and offers to measure it.
 */
export function createOwnModelCells(
  picker: Cell,
  cells: { inspect: Cell; kurtosis: Cell; allocation: Cell; measure: Cell },
  urls: { readonly text: string; readonly calibration: string },
  initial: Knobs,
): OwnModelCells {
  let knobs = initial;
  let loaded: Loaded | undefined;
  let busy = false;
  const input = element('input', { type: 'file', 'data-live-input': 'directory', webkitdirectory: '', directory: '', multiple: '' });
  const progress = progressView('own-model');
  const buttons = {
    fnorm: element('button', { type: 'button', 'data-action': 'fnorm', disabled: '' }, PAGE_TABLES.fnorm.button),
    sensitivity: element('button', { type: 'button', 'data-action': 'sensitivity', disabled: '' }, PAGE_TABLES.sensitivity.button),
  };
  const blocks = element('select', { 'data-live-input': 'calibration-blocks' });
  for (const n of CALIBRATION_BLOCK_CHOICES) blocks.append(element('option', { value: String(n) }, `${n} calibration block${n === 1 ? '' : 's'}`));
  blocks.value = String(PAGE_CALIBRATION_BLOCKS);
  picker.setCode('<input type="file" webkitdirectory>   // config.json, *.safetensors (+ index), tokenizer.json: read with File.slice, never uploaded');
  picker.setOutput(
    element('div', { class: 'live-controls' }, element('label', {}, 'Model directory: ', input), buttons.fnorm, buttons.sensitivity, element('label', {}, 'on ', blocks)),
    progress.root,
  );
  for (const cell of Object.values(cells)) cell.setOutput(element('p', { class: 'muted' }, 'Choose a model directory in the cell above.'));

  /** Why a table cannot be measured here (no tokenizer, too large), or undefined when it can. */
  const cannotMeasure = (table: keyof typeof PAGE_TABLES): string | undefined => {
    if (!loaded || table !== 'sensitivity') return undefined;
    if (!loaded.opened.hasTokenizer) return `${loaded.opened.summary.dir} has no tokenizer.json, which the calibration text needs`;
    return loaded.opened.fits.ok ? undefined : loaded.opened.fits.message;
  };
  const refreshButtons = () => {
    for (const [table, button] of Object.entries(buttons) as [keyof typeof PAGE_TABLES, HTMLButtonElement][]) {
      // Enabled while the table is missing and the page can measure it.
      button.disabled = busy || !loaded || hasTable(loaded.stats, table) || cannotMeasure(table) !== undefined;
      button.title = loaded && hasTable(loaded.stats, table) ? `measured: ${PAGE_TABLES[table].label}` : (cannotMeasure(table) ?? PAGE_TABLES[table].what);
    }
  };

  /** What a cell shows for knobs whose method needs tables the model lacks: which, and a button for each the page can measure. */
  const needsView = (missing: readonly string[]): HTMLElement => {
    const method = methods.get(knobs.method);
    const name = loaded?.opened.summary.dir ?? 'this model';
    return element(
      'div',
      { class: 'cell-message', 'data-needs': missing.join(' ') },
      element('p', {}, `${method.label} needs the ${missing.map((t) => (isPageTable(t) ? PAGE_TABLES[t].label : `${t} table`)).join(' and the ')}, which ${name} does not have yet.`),
      ...missing.map((table) => {
        if (!isPageTable(table)) return element('p', { class: 'muted' }, `The page cannot measure the ${table} table: \`layerquant sensitivity ${name} --out <dir>\` does (see its --help), then use the CLI.`);
        const why = cannotMeasure(table);
        if (why) return element('p', { class: 'muted' }, `The page cannot measure it: ${why}. \`layerquant sensitivity\` can.`);
        const button = element('button', { type: 'button', 'data-action': `measure-${table}` }, `${PAGE_TABLES[table].button}: ${PAGE_TABLES[table].what}`);
        if (busy) button.disabled = true;
        button.addEventListener('click', () => void measureTable(table));
        return element('p', {}, button);
      }),
    );
  };

  const renderAnalysis = () => {
    if (!loaded?.analysis) return;
    const { analysis, opened } = loaded;
    // Kurtosis needs no allocation: it renders whatever the knobs' method.
    renderInto(cells.kurtosis, () => renderKurtosisCell(cells.kurtosis, analysis, knobs));
    const missing = missingTables(analysis.stats, knobs);
    if (missing.length > 0) {
      cells.allocation.setCode(`${methods.get(knobs.method).code(knobs)}   // not run: a table is missing`);
      cells.allocation.setOutput(needsView(missing));
    } else {
      renderInto(cells.allocation, () => renderAllocationCell(cells.allocation, analysis, knobs));
    }
    if (!opened.fits.ok || !opened.hasTokenizer) {
      cells.measure.setCode('// not run: see below');
      cells.measure.setOutput(
        element(
          'p',
          { class: 'cell-message', 'data-message': opened.fits.ok ? 'no-tokenizer' : 'too-large' },
          opened.fits.ok ? `${opened.summary.dir} has no tokenizer.json: the page needs it to tokenize brown-test.` : opened.fits.message,
        ),
      );
    } else if (missing.length > 0) {
      cells.measure.setCode('// not run: the allocation needs a table the page has not measured');
      cells.measure.setOutput(needsView(missing));
    } else if (!loaded.measure) {
      const live = loaded.live;
      renderInto(cells.measure, () => (loaded!.measure = createMeasureCell(cells.measure, live, analysis, knobs)));
    } else {
      const measure = loaded.measure;
      measure.setAnalysis(analysis);
      renderInto(cells.measure, () => measure.update(knobs));
    }
    refreshButtons();
  };

  const addTables = (tables: Partial<ModelStats>) => {
    if (!loaded) return;
    const { opened } = loaded;
    loaded.stats = { ...loaded.stats, ...tables, source: opened.summary.dir };
    loaded.analysis = analyseModel(loaded.stats, opened.tensors, opened.summary.numLayers, `${opened.summary.dir} tensors`);
    renderAnalysis();
  };

  const measureTable = async (table: keyof typeof PAGE_TABLES) => {
    const current = loaded;
    if (!current || busy) return;
    busy = true;
    refreshButtons();
    picker.root.dataset.live = 'busy';
    try {
      const chosen = Number(blocks.value);
      const answer = await current.live.statistics(table, (p) => progress.update(p, PAGE_TABLES[table].label), table === 'sensitivity' ? { blocks: chosen } : {});
      if (loaded !== current) return;
      if (table === 'fnorm' && answer.fnorm) {
        addTables({ fnorm: answer.fnorm });
        progress.status(`fnorm table: ${answer.fnorm.rows.length} rows in ${answer.seconds.toFixed(1)} s; MXQ can allocate now`, 'done');
      } else if (table === 'sensitivity' && answer.sensitivity) {
        addTables({ sensitivity: answer.sensitivity });
        progress.status(
          `activation sensitivity: ${answer.sensitivity.rows.length} rows (${answer.blocks} blocks of ${answer.seqlen} tokens of brown-calib) in ${answer.seconds.toFixed(1)} s; SensiBoost can allocate now`,
          'done',
        );
      }
      picker.root.dataset.live = 'done';
    } catch (error) {
      progress.status(describeError(error), 'error');
      picker.root.dataset.live = 'error';
    } finally {
      busy = false;
      if (loaded === current) renderAnalysis();
      refreshButtons();
    }
  };

  const open = async (list: FileList) => {
    loaded?.live.terminate();
    loaded = undefined;
    busy = false;
    refreshButtons();
    picker.root.dataset.live = 'busy';
    const { name, files } = pickedFilesOf(list);
    const live = createLiveModel({ kind: 'picked', name, files }, urls.text, urls.calibration);
    try {
      progress.status(`reading ${name} (${files.length} files)`);
      const opened = await live.open();
      renderInspect(cells.inspect, opened, files.length);
      const stats = await live.statistics('kurtosis', (p) => progress.update(p, 'kurtosis'));
      loaded = { live, opened, stats: { ...(stats.kurtosis ? { kurtosis: stats.kurtosis } : {}), source: name } };
      addTables({});
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
  buttons.fnorm.addEventListener('click', () => void measureTable('fnorm'));
  buttons.sensitivity.addEventListener('click', () => void measureTable('sensitivity'));
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
    ...architectureFacts(s),
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
