// The benchmark's task module (`npm run bench`): the tasks of the Python side (bench/peers/bench_app)
// under the same names, so the same messages run on a celeriac worker or a Python Celery worker.
//   celeriac worker -A ./dist/workers/tasks/bench.js

import { defineTask } from '../registry.js';

/** The no-op of the drain and round-trip scenarios: `x + y`, result stored. */
export const noop = defineTask('bench_app.tasks.noop', { params: ['x', 'y'] }, (x: number, y: number) => x + y);

/** A CPU-bound task: a busy loop of `ms` milliseconds. */
export const burn = defineTask('bench_app.tasks.burn', { params: ['ms'] }, (ms: number) => {
  const end = performance.now() + ms;
  while (performance.now() < end);
  return ms;
});

/** The wall-clock time (epoch ms) at which the task started, for measuring how late an ETA task runs. */
export const now = defineTask('bench_app.tasks.now', () => Date.now());
