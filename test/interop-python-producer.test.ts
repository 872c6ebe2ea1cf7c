// A Python Celery app, unchanged, sends work to our worker: the tutorial's add.delay(10, 20).get(), and
// every JSON type, keyword arguments, protocol v1 and exceptions as Python sees them.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { startRedis, type RedisServer } from './helpers/redis-server.js';
import { startWorker, type WorkerProcess } from './helpers/daemon.js';
import { EXAMPLES_PY, PYTHON, python } from './helpers/celery.js';

let redis: RedisServer;
let worker: WorkerProcess;

before(async () => {
  redis = await startRedis();
  worker = await startWorker({ url: redis.url });
});

after(async () => {
  await worker?.stop();
  await redis?.stop();
});

test('the tutorial script run_task.py prints 30, answered by our worker', async () => {
  const out = await new Promise<string>((resolve, reject) =>
    execFile(PYTHON, ['run_task.py'], { cwd: EXAMPLES_PY, env: { ...process.env, CELERY_BROKER_URL: redis.url }, timeout: 30_000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${err.message}: ${stderr}`)) : resolve(stdout),
    ),
  );
  assert.equal(out, '30\n');
  assert.equal(worker.events('task:succeeded').filter((l) => l.task === 'celery_app.tasks.add').length >= 1, true);
});

test('arguments of every JSON type arrive intact and come back intact', async () => {
  const out = await python(
    `
import json
from celery_app.tasks import add, echo
big = 2**70
r = echo.delay('h\\u00e9llo \\u2713 \\U0001F600', [1, [2, {'k': None}]], big, -big, 1.5, -0.25, 1e-300, True, False, None,
               key={'\\u043a\\u043b\\u044e\\u0447': '\\u503c', 'nested': {'a': [1.25, False, None]}}).get(timeout=10)
print(json.dumps({
  'echo_ok': r == {'args': ['h\\u00e9llo \\u2713 \\U0001F600', [1, [2, {'k': None}]], big, -big, 1.5, -0.25, 1e-300, True, False, None],
                   'kwargs': {'key': {'\\u043a\\u043b\\u044e\\u0447': '\\u503c', 'nested': {'a': [1.25, False, None]}}}},
  'echo': repr(r),
  'kwargs_add': add.delay(x=1, y=2).get(timeout=10),
  'mixed_add': add.delay(40, y=2).get(timeout=10),
  'floats': add.delay(0.1, 0.2).get(timeout=10),
  'strings': add.delay('ab', 'cd').get(timeout=10),
}))
`,
    redis.url,
  );
  const r = JSON.parse(out) as Record<string, unknown>;
  assert.equal(r.echo_ok, true, String(r.echo));
  assert.equal(r.kwargs_add, 3);
  assert.equal(r.mixed_add, 42);
  assert.equal(r.floats, 0.1 + 0.2);
  assert.equal(r.strings, 'abcd');
});

test('an exception in our task is raised in Python with its type and message', async () => {
  const out = await python(
    `
import json
from celery_app import app
from celery_app.tasks import add, fail
seen = {}
try:
    fail.delay('bad thing').get(timeout=10)
except ValueError as e:
    seen['value_error'] = [type(e).__module__, type(e).__name__, str(e)]
try:
    # send_task: add.delay would check the Python signature before sending.
    app.send_task('celery_app.tasks.add', args=[1, 2], kwargs={'z': 3}).get(timeout=10)
except TypeError as e:
    seen['type_error'] = [type(e).__module__, type(e).__name__, str(e)]
try:
    app.send_task('celery_app.tasks.no_such_task', args=[1]).get(timeout=10)
except Exception as e:
    seen['not_registered'] = [type(e).__module__, type(e).__name__, str(e)]
for name in ['unserializable', 'crash']:
    try:
        app.send_task('celery_app.tasks.' + name).get(timeout=10)
    except Exception as e:
        seen[name] = [type(e).__module__, type(e).__name__]
r = fail.delay('x')
try:
    r.get(timeout=10)
except ValueError:
    pass
seen['state'] = r.state
seen['traceback_has_js_stack'] = 'celery_app.js' in (r.traceback or '')
print(json.dumps(seen))
`,
    redis.url,
  );
  const seen = JSON.parse(out) as Record<string, unknown>;
  assert.deepEqual(seen.value_error, ['builtins', 'ValueError', 'bad thing']);
  assert.deepEqual(seen.type_error, ['builtins', 'TypeError', "celery_app.tasks.add() got an unexpected keyword argument 'z'"]);
  assert.deepEqual((seen.not_registered as string[]).slice(0, 2), ['celery.exceptions', 'NotRegistered']);
  assert.deepEqual(seen.unserializable, ['kombu.exceptions', 'EncodeError'], 'a result JSON cannot hold');
  // celery.exceptions.WorkerLostError is billiard's class, re-exported.
  assert.deepEqual(seen.crash, ['billiard.exceptions', 'WorkerLostError'], 'a thread that exits under its task');
  assert.equal(seen.state, 'FAILURE');
  assert.equal(seen.traceback_has_js_stack, true);
});

test('protocol v1 messages (task_protocol=1) run too', async () => {
  const out = await python(
    `
from celery_app import app
from celery_app.tasks import add
app.conf.task_protocol = 1
print(add.delay(20, 22).get(timeout=10))
`,
    redis.url,
  );
  assert.equal(out, '42\n');
  const received = worker.events('task:received').at(-1);
  assert.equal(received?.task, 'celery_app.tasks.add');
});

test('ignore_result from Python stores nothing; countdown from Python waits in Redis, then runs', async () => {
  const out = await python(
    `
import time, json
from celery_app.tasks import add
r1 = add.apply_async((1, 1), ignore_result=True)
t = time.time()
r2 = add.apply_async((2, 2), countdown=1)
print(json.dumps({'ignored': r1.id, 'value': r2.get(timeout=10), 'waited': time.time() - t}))
`,
    redis.url,
  );
  const r = JSON.parse(out) as { ignored: string; value: number; waited: number };
  assert.equal(r.value, 4);
  assert.ok(r.waited >= 0.9, `waited ${r.waited}s`);
  await worker.waitFor((l) => l.event === 'task:succeeded' && l.task_id === r.ignored);
  assert.equal(await redis.cli('EXISTS', `celery-task-meta-${r.ignored}`), '0');
});

test('eta=, time_limit= and priority= from Python: the task waits for its eta, is stopped at its limit, and a backlog drains highest priority first', async () => {
  const out = await python(
    `
import json, time, datetime
from celery_app.tasks import add, sleep
seen = {}
t = time.time()
seen['eta_value'] = add.apply_async((5, 5), eta=datetime.datetime.utcnow() + datetime.timedelta(seconds=1)).get(timeout=10)
seen['eta_waited'] = time.time() - t
try:
    sleep.apply_async((30,), time_limit=1).get(timeout=15)
except Exception as e:
    seen['limit'] = type(e).__name__
seen['low'] = [add.apply_async((i, 0), priority=9, queue='prio').id for i in range(3)]
seen['high'] = [add.apply_async((i, 100), priority=0, queue='prio').id for i in range(3)]
print(json.dumps(seen))
`,
    redis.url,
  );
  const seen = JSON.parse(out) as { eta_value: number; eta_waited: number; limit: string; low: string[]; high: string[] };
  assert.equal(seen.eta_value, 10);
  assert.ok(seen.eta_waited >= 0.9, `waited for its eta: ${seen.eta_waited}s`);
  assert.equal(seen.limit, 'TimeLimitExceeded');
  const prio = await startWorker({ url: redis.url, concurrency: 1, args: ['-Q', 'prio', '--prefetch-multiplier', '1'] });
  try {
    await prio.waitFor(() => prio.events('task:succeeded').length === 6, 15_000, 'the six prio tasks');
    const order = prio.events('task:received').map((l) => String(l.task_id));
    assert.deepEqual(order.slice(0, 3).sort(), [...seen.high].sort(), `priority 0 first: ${order.join(', ')}`);
  } finally {
    await prio.stop();
  }
});
