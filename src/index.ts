// The public API: re-exports only.
export { Client, createClient } from './producer.js';
export type { ClientOptions, SendOptions, TaskCall, TaskHandle } from './producer.js';
export { AsyncResult } from './results.js';
export type { GetOptions, ResultMeta, TaskState } from './results.js';
export { Supervisor } from './supervisor.js';
export { loadWorkerConfig, WORKER_SETTINGS, DEFAULT_BROKER_URL } from './config.js';
export type { WorkerConfig } from './config.js';
export {
  CeleriacError,
  ConfigError,
  ProtocolError,
  TaskFailedError,
  TimeoutError,
  UsageError,
  ERROR_CODES,
} from './errors.js';
export type { ErrorCode } from './errors.js';
export { decode, encode } from './protocol.js';
export type { TaskMessage } from './protocol.js';
export { WorkerMetrics, producerMetrics } from './metrics.js';
export { EventBus } from './events.js';
export type { EventMap } from './events.js';
