// A grid spread over machines: the coordinator enqueues statistics and cells on Redis (BullMQ), workers compute
// them with @layerquant/experiment's functions.
export { QueueConnectionError, QueueJobsFailedError, connectCoordinator, type Coordinator, type CoordinatorOptions, type RedisCommands, type RunCellsOptions } from './coordinator.js';
export { startWorker, type RunningWorker, type WorkerOptions } from './worker.js';
export { MissingBlobError, ModelMismatchError, QUEUE_NAME, type CellCalibration, type CellJobData, type CellJobResult, type CellRefine, type StatisticsJobData, type StatisticsJobResult } from './jobs.js';
export { InvalidJobError, MAX_JOB_DATA_BYTES, validateJob } from './job-schema.js';
export { ModelNotServedError, servedModels, servedPath, type ServedModels } from './model-access.js';
export { QueueResultError, checkCellResult, checkStatisticsResult, type PlannedCell, type PlannedStatistics } from './results.js';
export { isAuthenticationError, parseQueueUrl, redactCredentials, redactQueueUrl, type QueueAddress, type RedisConnection } from './redis-url.js';
