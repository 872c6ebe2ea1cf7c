// Error classes with stable `code`s. Callers branch on `code`, never on message text; the README lists
// every code (a test checks that), so adding one here means documenting it there.

export type ErrorCode =
  | 'E_CONFIG'
  | 'E_USAGE'
  | 'E_PROTOCOL'
  | 'E_CONTENT_TYPE'
  | 'E_TOO_LARGE'
  | 'E_UNKNOWN_TASK'
  | 'E_RECOVERY_LIMIT'
  | 'E_TASK_FAILED'
  | 'E_TIMEOUT'
  | 'E_REDIS'
  | 'E_HOSTNAME_IN_USE'
  | 'E_APP_LOAD';

export class CeleriacError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A configuration value (flag, env var or option) is invalid; `key` names it. */
export class ConfigError extends CeleriacError {
  readonly key: string;
  constructor(key: string, message: string) {
    super('E_CONFIG', `${key}: ${message}`);
    this.key = key;
  }
}

/** A command line that cannot be understood. The CLI prints it on one line and exits 2. */
export class UsageError extends CeleriacError {
  constructor(message: string) {
    super('E_USAGE', message);
  }
}

/** The codes a message can be dead-lettered with. */
export type RejectionCode = 'E_PROTOCOL' | 'E_CONTENT_TYPE' | 'E_TOO_LARGE' | 'E_UNKNOWN_TASK' | 'E_RECOVERY_LIMIT';

/** Why a message cannot run. It is dead-lettered with this reason; `taskId` is set when it was readable. */
export class ProtocolError extends CeleriacError {
  declare readonly code: RejectionCode;
  readonly taskId: string | null;
  readonly taskName: string | null;
  constructor(
    code: RejectionCode,
    message: string,
    ids: { taskId?: string | null; taskName?: string | null } = {},
  ) {
    super(code, message);
    this.taskId = ids.taskId ?? null;
    this.taskName = ids.taskName ?? null;
  }
}

/**
 * A task ended in FAILURE (ours or a Python worker's). `name` is the exception type as stored
 * (`ValueError`, `TypeError`, ...), so `err.name` reads like the Python exception would.
 */
export class TaskFailedError extends CeleriacError {
  readonly taskId: string;
  readonly excType: string;
  readonly excModule: string | null;
  readonly excMessage: unknown;
  readonly remoteTraceback: string | null;
  constructor(
    taskId: string,
    exc: { excType: string; excModule: string | null; excMessage: unknown; traceback: string | null },
  ) {
    const text = Array.isArray(exc.excMessage) ? exc.excMessage.map(String).join(', ') : String(exc.excMessage ?? '');
    super('E_TASK_FAILED', text);
    this.name = exc.excType;
    this.taskId = taskId;
    this.excType = exc.excType;
    this.excModule = exc.excModule;
    this.excMessage = exc.excMessage;
    this.remoteTraceback = exc.traceback;
  }
}

export class TimeoutError extends CeleriacError {
  constructor(message: string) {
    super('E_TIMEOUT', message);
  }
}

export class HostnameInUseError extends CeleriacError {
  constructor(hostname: string) {
    super(
      'E_HOSTNAME_IN_USE',
      `another live worker holds the hostname ${hostname}; give this one its own with --hostname`,
    );
  }
}

export class AppLoadError extends CeleriacError {
  constructor(message: string, options?: ErrorOptions) {
    super('E_APP_LOAD', message, options);
  }
}

/** Every error code, for the README check. */
export const ERROR_CODES: readonly ErrorCode[] = [
  'E_CONFIG',
  'E_USAGE',
  'E_PROTOCOL',
  'E_CONTENT_TYPE',
  'E_TOO_LARGE',
  'E_UNKNOWN_TASK',
  'E_RECOVERY_LIMIT',
  'E_TASK_FAILED',
  'E_TIMEOUT',
  'E_REDIS',
  'E_HOSTNAME_IN_USE',
  'E_APP_LOAD',
];

/**
 * The exception a waiting client sees when its message is dead-lettered: real Celery/kombu classes
 * where one fits, so Python's `AsyncResult.get()` raises something importable.
 */
export const REJECTION_EXCEPTIONS: Readonly<Record<RejectionCode, { excType: string; excModule: string }>> = {
  E_PROTOCOL: { excType: 'DecodeError', excModule: 'kombu.exceptions' },
  E_CONTENT_TYPE: { excType: 'ContentDisallowed', excModule: 'kombu.exceptions' },
  E_TOO_LARGE: { excType: 'DecodeError', excModule: 'kombu.exceptions' },
  E_UNKNOWN_TASK: { excType: 'NotRegistered', excModule: 'celery.exceptions' },
  E_RECOVERY_LIMIT: { excType: 'WorkerLostError', excModule: 'celery.exceptions' },
};
