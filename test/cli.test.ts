// The command line: `call` and `result` against a real worker, and bad arguments answered with one
// line on stderr and exit code 2 (never a stack trace).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startRedis, type RedisServer } from './helpers/redis-server.js';
import { ROOT, runCli, startWorker, type WorkerProcess } from './helpers/daemon.js';
import { decode } from '../src/protocol.js';
import { WORKER_SETTINGS } from '../src/config.js';

let redis: RedisServer;
let worker: WorkerProcess;
let env: NodeJS.ProcessEnv;

before(async () => {
  redis = await startRedis();
  worker = await startWorker({ url: redis.url });
  env = { CELERIAC_BROKER_URL: redis.url };
});

after(async () => {
  await worker?.stop();
  await redis?.stop();
});

test('call --wait prints the result; without --wait the task id, which result reads later', async () => {
  const waited = await runCli(['call', 'celery_app.tasks.add', '--args', '[10,20]', '--wait', '--timeout', '10'], env);
  assert.deepEqual([waited.code, waited.stdout, waited.stderr], [0, '30\n', '']);

  const sent = await runCli(['call', 'celery_app.tasks.echo', '--args', '[1, 18446744073709551616]', '--kwargs', '{"k": "é"}'], env);
  assert.equal(sent.code, 0);
  const id = sent.stdout.trim();
  assert.match(id, /^[0-9a-f-]{36}$/);
  const read = await runCli(['result', id, '--wait', '--timeout', '10'], env);
  assert.equal(read.code, 0);
  const meta = JSON.parse(read.stdout) as Record<string, unknown>;
  assert.equal(meta.status, 'SUCCESS');
  assert.match(read.stdout, /"args":\[1,18446744073709551616\]/, 'big integers stay exact');
  assert.deepEqual((meta.result as { kwargs: unknown }).kwargs, { k: 'é' });

  const pending = await runCli(['result', 'never-sent'], env);
  assert.equal(pending.code, 0);
  assert.equal((JSON.parse(pending.stdout) as { status: string }).status, 'PENDING');
});

test('call puts its options in the message as Celery would: queue, priority, task id, countdown or eta, expires, ignore result', async () => {
  const before = Date.now();
  const a = await runCli(['call', 'celery_app.tasks.add', '--args', '[1,2]', '--queue', 'nowhere', '--priority', '3', '--task-id', 'cli-opts-1', '--countdown', '60', '--expires', '120', '--ignore-result'], env);
  assert.deepEqual([a.code, a.stdout, a.stderr], [0, 'cli-opts-1\n', '']);
  const b = await runCli(['call', 'celery_app.tasks.add', '--args', '[3,4]', '--queue', 'nowhere', '--task-id', 'cli-opts-2', '--eta', '2030-01-01T00:00:00Z'], env);
  assert.deepEqual([b.code, b.stderr], [0, '']);
  const [rawA] = await redis.cli('LRANGE', 'nowhere\x06\x163', '0', '-1').then((t) => t.split('\n'));
  const msgA = decode(rawA as string, { maxBytes: 1e6 });
  assert.deepEqual([msgA.id, msgA.task, msgA.args, msgA.priority, msgA.routingKey, msgA.ignoreResult], ['cli-opts-1', 'celery_app.tasks.add', [1, 2], 3, 'nowhere', true]);
  assert.ok(msgA.eta !== null && Math.abs(msgA.eta - (before + 60_000)) < 5000, 'eta: 60 s from now');
  assert.ok(msgA.expires !== null && Math.abs(msgA.expires - (before + 120_000)) < 5000, 'expires: 120 s from now');
  const msgB = decode(await redis.cli('LINDEX', 'nowhere', '0'), { maxBytes: 1e6 });
  assert.deepEqual([msgB.id, msgB.eta, msgB.priority, msgB.ignoreResult], ['cli-opts-2', Date.UTC(2030, 0, 1), 0, false]);
});

test('a failed task and a time-out are one line on stderr and exit code 1', async () => {
  const failed = await runCli(['call', 'celery_app.tasks.fail', '--args', '["nope"]', '--wait', '--timeout', '10'], env);
  assert.equal(failed.code, 1);
  assert.match(failed.stderr, /^celeriac: task \S+ failed: ValueError: nope\n$/);
  const late = await runCli(['call', 'celery_app.tasks.sleep', '--args', '[5]', '--wait', '--timeout', '0.3'], env);
  assert.equal(late.code, 1);
  assert.match(late.stderr, /^celeriac: no result for task \S+ within 300 ms\n$/);
});

test('--help lists every worker option with its variable, each standing apart', async () => {
  const help = await runCli(['--help'], env);
  assert.equal(help.code, 0);
  for (const s of WORKER_SETTINGS) assert.match(help.stdout, new RegExp(`^  --${s.flag} +${s.env} +\\S`, 'm'), s.flag);
});

test('--help after a command prints the same help and exits 0, before checking the other arguments', async () => {
  const help = await runCli(['--help'], env);
  for (const args of [['worker', '--help'], ['worker', '-A', 'no-such-module', '--help'], ['call', '--help'], ['beat', '--help']]) {
    const r = await runCli(args, env);
    assert.equal(r.code, 0, args.join(' '));
    assert.equal(r.stdout, help.stdout, args.join(' '));
  }
});

test('bad arguments: one line on stderr, exit code 2', async () => {
  const cases: [string[], RegExp][] = [
    [['frobnicate'], /unknown command 'frobnicate'/],
    [['call'], /expected exactly one argument/],
    [['call', 'x', '--args', '[1,'], /--args: not valid JSON/],
    [['call', 'x', '--args', '{"a":1}'], /--args: expected a JSON array/],
    [['call', 'x', '--kwargs', '[1]'], /--kwargs: expected a JSON object/],
    [['call', 'x', '--countdown', 'soon'], /--countdown: expected seconds/],
    [['call', 'x', '--priority', '12'], /--priority: expected 0 to 9/],
    [['call', 'x', '--eta', 'tomorrow'], /--eta: expected an ISO 8601 time/],
    [['call', 'x', '--bogus'], /Unknown option '--bogus'/],
    [['call', 'x', '--broker', 'http://nope'], /--broker: expected a redis:\/\/ or rediss:\/\/ URL/],
    [['call', 'x', '--broker', 'redis://127.0.0.1:6379/0?keyPrefix=app:'], /--broker: the keyPrefix option is not supported/],
    [['worker'], /--app: the task module is required/],
    [['worker', '-A', 'x.js', '-c', 'many'], /--concurrency: expected a whole number, got 'many'/],
    [['worker', '-A', 'x.js', '-c', '0'], /--concurrency: expected a number from 1 to 1024/],
    [['worker', '-A', 'x.js', '--loglevel', 'loud'], /--loglevel: expected one of/],
    [['worker', '-A', 'x.js', '-Q', 'a,,b'], /--queues: expected comma-separated queue names/],
    [['worker', '-A', 'x.js', '--thread-nice', '20'], /--thread-nice: expected a number from 0 to 19/],
    [['result'], /expected exactly one argument/],
  ];
  for (const [args, message] of cases) {
    const r = await runCli(args, env);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message, args.join(' '));
    assert.equal(r.stderr.trimEnd().split('\n').length, 1, `one line for ${args.join(' ')}: ${r.stderr}`);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  }
  const bad = await runCli(['worker', '-A', 'x.js'], { CELERIAC_CONCURRENCY: 'lots' });
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /CELERIAC_CONCURRENCY: expected a whole number/);
});

test('a task module that does not exist or fails to load: a clear message and exit code 1, no hang', async () => {
  const missing = await runCli(['worker', '-A', '/nonexistent/tasks.js', '--hostname', 'missing@test', '--metrics-port', '0'], env);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /cannot find the task module \/nonexistent\/tasks\.js/);
  const broken = await runCli(['worker', '-A', `${ROOT}test/fixtures/tasks/broken.js`, '--hostname', 'broken@test', '--metrics-port', '0'], env);
  assert.equal(broken.code, 1);
  assert.match(broken.stderr, /^celeriac: the task module failed to load: this module is broken on purpose\n$/);
  const unreachable = await runCli(['worker', '-A', 'x.js', '--broker', 'redis://127.0.0.1:1/0', '--connect-timeout', '0.5', '--hostname', 'unreach@test', '--metrics-port', '0'], {});
  assert.equal(unreachable.code, 1);
  assert.match(unreachable.stderr, /cannot reach Redis at redis:\/\/127\.0\.0\.1:1\/0/);
});

test('a password in the broker URL appears in no log line or error, only redacted', async () => {
  const r = await runCli(['worker', '-A', 'x.js', '--broker', 'redis://user:s3cret-pw@127.0.0.1:1/0', '--connect-timeout', '1', '--hostname', 'secret@test', '--metrics-port', '0'], {});
  assert.equal(r.code, 1);
  assert.match(r.stdout, /redis:\/\/user:\*\*\*@127\.0\.0\.1:1\/0/, 'the retry lines name the redacted URL');
  assert.match(r.stderr, /redis:\/\/user:\*\*\*@127\.0\.0\.1:1\/0/);
  assert.doesNotMatch(r.stdout + r.stderr, /s3cret-pw/);
});
