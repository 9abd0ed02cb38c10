import { checkContextLength } from '@layerquant/core';
import type { MatrixCalibration } from '@layerquant/quantizers';
import { loadDecoderBlocks } from '@layerquant/runtime';
import { loadTokenizer, openModel } from '@layerquant/tensor-io';
import { DEFAULT_SEQLEN, calibrationBlocks, type CalibrationBlocks, type CalibrationOrder } from './calibration.js';
import { createSequentialCalibration } from './hessians.js';

export interface SequentialCalibrationSource {
  /** Calibration text, tokenized with the model's tokenizer and cut into blocks ... */
  readonly text?: string;
  /** ... or blocks already tokenized. */
  readonly calibration?: CalibrationBlocks;
  /** Name of the text in errors (default `calibration`). */
  readonly name?: string;
  readonly blocks?: number;
  readonly seqlen?: number;
  readonly order?: CalibrationOrder;
  readonly seed?: number;
  /** onnxruntime intra-op threads of the layer pass. */
  readonly threads?: number;
  /** Blocks per runtime call (default 8): bounds memory, not the result. */
  readonly batchSize?: number;
  readonly allowLongContext?: boolean;
  readonly onLayer?: (layer: number, layers: number) => void;
}

export interface OpenedSequentialCalibration {
  /** For quantizeModel's `calibration`. */
  readonly calibration: MatrixCalibration;
  readonly blocks: number;
  readonly seqlen: number;
  close(): Promise<void>;
}

/**
 * The layer pass a calibrated quantizer needs, over a model directory: its decoder blocks (streamed, one layer's
 * weights at a time) and the calibration blocks, as a MatrixCalibration for `quantizeModel({ calibration })`.
 * Close it after the run.
 */
export async function openSequentialCalibration(modelDir: string, source: SequentialCalibrationSource): Promise<OpenedSequentialCalibration> {
  const { config, checkpoint } = await openModel(modelDir);
  try {
    let blocks = source.calibration;
    if (!blocks) {
      if (source.text === undefined) throw new TypeError('openSequentialCalibration: give the calibration text or blocks');
      checkContextLength(source.seqlen ?? DEFAULT_SEQLEN, config, '--seqlen', source.allowLongContext === true);
      blocks = calibrationBlocks(source.text, await loadTokenizer(modelDir), {
        source: source.name ?? 'calibration',
        ...(source.blocks === undefined ? {} : { blocks: source.blocks }),
        ...(source.seqlen === undefined ? {} : { seqlen: source.seqlen }),
        ...(source.order === undefined ? {} : { order: source.order }),
        ...(source.seed === undefined ? {} : { seed: source.seed }),
      });
    }
    const model = await loadDecoderBlocks(checkpoint, config, source.threads ? { threads: source.threads } : {});
    const calibration = createSequentialCalibration(model, blocks, {
      ...(source.blocks === undefined ? {} : { blocks: source.blocks }),
      ...(source.batchSize === undefined ? {} : { batchSize: source.batchSize }),
      ...(source.onLayer ? { onLayer: source.onLayer } : {}),
    });
    return {
      calibration,
      blocks: calibration.blocks,
      seqlen: calibration.seqlen,
      async close() {
        await model.dispose();
        await checkpoint.close();
      },
    };
  } catch (error) {
    await checkpoint.close();
    throw error;
  }
}
