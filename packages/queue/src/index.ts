// A grid spread over machines: the coordinator enqueues statistics and cells on Redis (BullMQ), workers compute
// them with @layerquant/experiment's functions.
export { QueueConnectionError, QueueJobsFailedError, connectCoordinator, type Coordinator, type CoordinatorOptions, type RedisCommands, type RunCellsOptions } from './coordinator.js';
export { startWorker, type RunningWorker, type WorkerOptions } from './worker.js';
export { MissingBlobError, ModelMismatchError, QUEUE_NAME } from './jobs.js';
export { isAuthenticationError, parseQueueUrl, redactCredentials, type QueueAddress, type RedisConnection } from './redis-url.js';
