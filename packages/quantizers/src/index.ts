export { roundHalfEven } from './rounding.js';
export { groupLayout, groupedValues, ungroupValues, matrixShape, type GroupLayout } from './grouping.js';
export { SMALL_RANGE, asymmetricMinMaxInit, dequantizeGroups, maxCode, roundToCodes } from './asymmetric-init.js';
export {
  UPSTREAM_PROXIMAL_OPTIONS,
  optimizeZeroProximal,
  proximalIteration,
  proximalOptions,
  runProximalSolver,
  roundZerosToIntegers,
  shrinkThreshold,
  solverForConfig,
  type ProximalOptions,
  type ProximalStep,
} from './hqq-proximal.js';
export { createWasmKernel, typescriptKernel, wasmKernelAvailable, wasmKernelModule, type KernelChoice, type QuantKernel } from './quant-kernel.js';
export type { KernelPool, KernelTask, KernelTaskResult } from './kernel-worker-pool.js';
export { PACKING, codesPerWord, packCodes, packColumnCodes, unpackCodes, unpackColumnCodes, wordsPerRow } from './bit-packing.js';
export { META_BYTES_PER_VALUE, matrixMemory, modelMemory, type MatrixMemory, type ModelMemory } from './memory-accounting.js';
export {
  FORK_SOLVER_OPTIONS,
  createHqqQuantizer,
  createRtnQuantizer,
  assembleQuantized,
  dequantizeTensor,
  isKernelQuantizer,
  prepareGroups,
  hqqQuantizer,
  rtnQuantizer,
  squaredError,
  unpackQuantizedCodes,
  type HqqQuantizer,
  type HqqQuantizerOptions,
  type KernelQuantizer,
  type QuantizerOptions,
} from './quantizers.js';
export {
  QUANTIZED_FORMAT,
  SCALE_DTYPES,
  COLUMN_BITS_SUFFIX,
  QWEIGHT_SUFFIX,
  SCALE_SUFFIX,
  ZERO_SUFFIX,
  configOfMetadata,
  decodeQuantizedMetadata,
  encodeQuantizedMetadata,
  isQuantizedMetadata,
  metadataOfQuantized,
  quantizedTensorSpecs,
  type QuantizedCheckpointMetadata,
  type QuantizedTensorMetadata,
  type ScaleDtype,
} from './checkpoint-format.js';
export type { QuantizedCheckpoint } from './quantized-checkpoint.js';
export {
  SCALE_BLOCK_GROUPS,
  SCALE_META_SUFFIX,
  ZERO_META_SUFFIX,
  checkScaleDtype,
  decodeScaleZero,
  decodeU8Multipliers,
  dequantizeU8Blocks,
  encodeScaleZero,
  quantizeU8Blocks,
  scaleZeroBytes,
  scaleZeroTensorLayout,
  type StoredScaleZero,
} from './scale-storage.js';
export type { MatrixReport, QuantizeModelOptions, QuantizeModelReport, QuantizeProgress } from './quantize-model.js';
export { checkCalibration, layerOrder, planUnits, quantizeUnits, type FinishedUnit, type MatrixCalibration, type ModelMatrix, type QuantizeUnitsOptions, type TensorEntry, type UnitPlan } from './quantize-units.js';
export { MODEL_LOADER_FILES, QUANTIZATION_REPORT_FILE, QUANTIZED_WEIGHTS_FILE } from './file-names.js';
export { checkedQuantizer } from './quantizer-check.js';
export { GPTQ_OPTIONS, QUANTIZER_PLUGINS, baqPlugin, checkedQuantizerPlugin, configureQuantizer, createQuantizerRegistry, defineQuantizer, gptqOptionsOf, gptqPlugin, hqqPlugin, rtnPlugin, type QuantizerPlugin } from './registry.js';
export {
  GPTQ_DEFAULTS,
  createGptqQuantizer,
  gptqProblem,
  gptqQuantizer,
  gptqSettings,
  isPooledQuantizer,
  runGptq,
  requireHessian,
  roundOnGptqGrid,
  typescriptGptqKernel,
  type GptqKernel,
  type GptqOptions,
  type GptqQuantizer,
  type GptqResult,
  type GptqSettings,
  type GptqSolver,
  type PooledQuantizer,
} from './gptq.js';
export { createWasmGptqKernel } from './gptq-kernel.js';
export { type CholeskyRequest, type CholeskyThreads } from './cholesky-kernel.js';
export {
  HessianNotPositiveDefiniteError,
  gptqGrid,
  gridOfRange,
  inverseCholeskyUpper,
  prepareHessian,
  prepareHessianOn,
  solveGptqColumns,
  type GptqProblem,
  type PreparedHessian,
} from './gptq-solver.js';
export { BAQ_MAX_COLUMN_BITS, baqQuantizer, createBaqQuantizer, dequantizeBaq, equalLossColumnBits, type BaqQuantizer } from './baq.js';
