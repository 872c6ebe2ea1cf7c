// protocol.ts against every captured Celery message, and our encoding read back.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { decode, encode, parseIsoTime, formatIsoTime, type TaskMessage } from '../src/protocol.js';
import { ProtocolError } from '../src/errors.js';
import { parseJson } from '../src/json.js';
import { queueList } from '../src/keys.js';
import { exceptionMeta, parseMeta, successMeta } from '../src/results.js';

const FIXTURES = fileURLToPath(new URL('../../test/fixtures/celery/', import.meta.url));
const LIMIT = { maxBytes: 1 << 20 };

interface Captured {
  list_key: string;
  raw: string;
  envelope: { headers: Record<string, unknown>; properties: Record<string, unknown> & { delivery_info: { routing_key: string } } };
  body_decoded: unknown;
}

const fixtures = readdirSync(FIXTURES)
  .filter((f) => f.endsWith('.json'))
  .map((f) => ({ file: f, data: JSON.parse(readFileSync(FIXTURES + f, 'utf8')) as { messages?: Captured[] } }))
  .filter((f) => Array.isArray(f.data.messages));

const time = (v: unknown): number | null => (typeof v === 'string' ? parseIsoTime(v) : null);

test('every captured Celery message decodes with the fields it was sent with', () => {
  assert.ok(fixtures.length >= 19, `expected the captured fixtures, found ${fixtures.length}`);
  let count = 0;
  for (const { file, data } of fixtures) {
    for (const m of data.messages ?? []) {
      const msg = decode(m.raw, LIMIT);
      count += 1;
      const h = m.envelope.headers;
      // The body again, losslessly: types.json carries 2**70.
      const body = parseJson(Buffer.from(JSON.parse(m.raw).body as string, 'base64').toString('utf8'));
      assert.equal(msg.priority, m.envelope.properties.priority, file);
      assert.equal(queueList(msg.routingKey ?? '', msg.priority), m.list_key, `${file}: list`);
      if (file === 'protocol_v1.json') {
        const b = body as Record<string, unknown>;
        assert.equal(msg.protocol, 1);
        assert.equal(msg.id, b.id);
        assert.equal(msg.task, b.task);
        assert.deepEqual(msg.args, b.args);
        assert.deepEqual(msg.kwargs, b.kwargs);
        continue;
      }
      const [args, kwargs, embed] = body as [unknown[], Record<string, unknown>, Record<string, unknown>];
      assert.equal(msg.protocol, 2, file);
      assert.equal(msg.id, h.id, file);
      assert.equal(msg.task, h.task, file);
      assert.deepEqual(msg.args, args, file);
      assert.deepEqual(msg.kwargs, kwargs, file);
      assert.deepEqual(msg.embed.callbacks, embed.callbacks, file);
      assert.deepEqual(msg.embed.errbacks, embed.errbacks, file);
      assert.deepEqual(msg.embed.chain, embed.chain, file);
      assert.deepEqual(msg.embed.chord, embed.chord, file);
      assert.equal(msg.retries, h.retries, file);
      assert.equal(msg.eta, time(h.eta), file);
      assert.equal(msg.expires, time(h.expires), file);
      assert.deepEqual(msg.timeLimit, h.timelimit, file);
      assert.equal(msg.ignoreResult, h.ignore_result, file);
      assert.equal(msg.rootId, h.root_id, file);
      assert.equal(msg.parentId, h.parent_id, file);
      assert.equal(msg.group, h.group, file);
      assert.equal(msg.groupIndex, h.group_index, file);
      assert.equal(msg.origin, h.origin, file);
      assert.deepEqual(msg.headers, h, file);
    }
  }
  assert.ok(count >= 23, `decoded ${count} messages`);
});

function one(file: string): TaskMessage {
  const data = JSON.parse(readFileSync(FIXTURES + file, 'utf8')) as { messages: Captured[] };
  return decode((data.messages[0] as Captured).raw, LIMIT);
}

test('specific fixtures carry what Celery put in them', () => {
  const types = one('types.json');
  assert.deepEqual(types.args, ['héllo ✓', [1, [2, { k: null }]], 2n ** 70n, 1.5, true, null]);
  assert.deepEqual(types.kwargs, { ключ: '值', nested: { a: [1.25, false] } });

  assert.deepEqual(one('time_limits.json').timeLimit, [10, 5], 'hard first');
  assert.equal(one('ignore_result.json').ignoreResult, true);
  assert.equal(one('task_id_and_headers.json').id, 'my-id-1');
  assert.equal(one('task_id_and_headers.json').headers['x-custom'], 'v');
  assert.equal(one('queue_high.json').routingKey, 'high');
  assert.equal(one('priority_9.json').priority, 9);
  const countdown = one('countdown.json');
  assert.ok(countdown.eta !== null && countdown.eta > Date.parse('2026-01-01'));
  const chain = one('chain.json');
  assert.equal(chain.embed.chain?.length, 2);
  const link = one('link.json');
  assert.equal((link.embed.callbacks?.[0] as { task: string }).task, 'celery_app.tasks.mul');
});

test('ISO times keep microseconds and offsets', () => {
  assert.equal(parseIsoTime('2026-11-24T21:55:25.758499+00:00'), Date.UTC(2026, 10, 24, 21, 55, 25) + 758.499);
  assert.equal(parseIsoTime('2026-11-24T23:55:25.5+02:00'), Date.UTC(2026, 10, 24, 21, 55, 25, 500));
  assert.equal(parseIsoTime('2026-11-24T21:55:25'), Date.UTC(2026, 10, 24, 21, 55, 25));
  assert.equal(parseIsoTime('yesterday'), null);
  assert.equal(formatIsoTime(Date.UTC(2026, 10, 24, 21, 55, 25, 758)), '2026-11-24T21:55:25.758000+00:00');
});

test('our encoding decodes to what was sent, in the list kombu would use', () => {
  const eta = Date.UTC(2030, 0, 1, 12, 0, 0, 250);
  const e = encode({ task: 'celery_app.tasks.add', args: [10, 2n ** 64n, 'é'], kwargs: { z: [1, { y: null }] }, queue: 'high', priority: 5, eta, expires: eta + 1000, timeLimit: [10, 5], headers: { 'x-custom': 'v' }, sentAt: 123 });
  assert.equal(e.list, 'high\x06\x163');
  const msg = decode(e.raw, LIMIT);
  assert.equal(msg.id, e.id);
  assert.equal(msg.task, 'celery_app.tasks.add');
  assert.deepEqual(msg.args, [10, 2n ** 64n, 'é']);
  assert.deepEqual(msg.kwargs, { z: [1, { y: null }] });
  assert.equal(msg.eta, eta);
  assert.equal(msg.expires, eta + 1000);
  assert.deepEqual(msg.timeLimit, [10, 5]);
  assert.equal(msg.priority, 5);
  assert.equal(msg.routingKey, 'high');
  assert.equal(msg.rootId, e.id);
  assert.equal(msg.sentAt, 123);
  assert.equal(msg.headers['x-custom'], 'v');
  assert.equal(msg.headers.argsrepr, "(10, 18446744073709551616, 'é')");
  const envelope = JSON.parse(e.raw) as Record<string, unknown>;
  assert.deepEqual(Object.keys(envelope), ['body', 'content-encoding', 'content-type', 'headers', 'properties']);
});

test('the envelope is the JSON Celery writes, whatever the task name, queue and extra headers hold', () => {
  const e = encode({
    task: 'odd "name" \\ ü',
    args: ['a\nb'],
    kwargs: { k: 1 },
    queue: 'q "1"',
    id: 'id "x"',
    parentId: 'p',
    group: 'g',
    retries: 2,
    ignoreResult: true,
    headers: { 'x-nested': { a: [1, null] }, 'x-gone': undefined, 'x-quote': 'say "hi"' },
    sentAt: 5,
  });
  const env = JSON.parse(e.raw) as Record<string, any>;
  assert.equal(typeof env.properties.delivery_tag, 'string');
  assert.equal(env.properties.reply_to.length, 36);
  delete env.properties.delivery_tag;
  delete env.properties.reply_to;
  assert.deepEqual(env, {
    body: Buffer.from(JSON.stringify([['a\nb'], { k: 1 }, { callbacks: null, errbacks: null, chain: null, chord: null }])).toString('base64'),
    'content-encoding': 'utf-8',
    'content-type': 'application/json',
    headers: {
      lang: 'js', task: 'odd "name" \\ ü', id: 'id "x"', shadow: null, eta: null, expires: null, group: 'g', group_index: null, retries: 2,
      timelimit: [null, null], root_id: 'id "x"', parent_id: 'p', argsrepr: "('a\nb',)", kwargsrepr: "{'k': 1}", origin: env.headers.origin,
      ignore_result: true, 'x-nested': { a: [1, null] }, 'x-quote': 'say "hi"', celeriac_sent: 5,
    },
    properties: { correlation_id: 'id "x"', delivery_mode: 2, delivery_info: { exchange: '', routing_key: 'q "1"' }, priority: 0, body_encoding: 'base64' },
  });
  assert.match(env.headers.origin, /^gen\d+@/);
});

test('extra headers may not repeat the protocol\'s own: the client refuses them by name', async () => {
  const { createClient } = await import('../src/index.js');
  const client = createClient({ brokerUrl: 'redis://127.0.0.1:1' });
  try {
    await assert.rejects(client.send('t.x', [], {}, { headers: { retries: 3, eta: 'x', ok: 1 } }), /headers: retries, eta: set by the protocol/);
  } finally {
    await client.close();
  }
});

function rejects(raw: string, code: string, reason: RegExp, id: string | null = null): void {
  assert.throws(
    () => decode(raw, { maxBytes: 4096 }),
    (err: unknown) => {
      assert.ok(err instanceof ProtocolError, `expected a ProtocolError, got ${String(err)}`);
      assert.equal(err.code, code);
      assert.match(err.message, reason);
      assert.equal(err.taskId, id);
      return true;
    },
  );
}

function envelopeWith(patch: (env: Record<string, any>) => void): string {
  const env = JSON.parse(encode({ task: 't.x', args: [1], kwargs: {}, queue: 'celery', id: 'id-1' }).raw) as Record<string, any>;
  patch(env);
  return JSON.stringify(env);
}

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');

test('malformed messages are refused with a reason, and the task id when it is readable', () => {
  rejects('{"body": ', 'E_PROTOCOL', /envelope is not JSON/);
  rejects('[1,2]', 'E_PROTOCOL', /not a JSON object/);
  rejects('x'.repeat(5000), 'E_TOO_LARGE', /exceeds the limit of 4096/);
  rejects(envelopeWith((e) => (e['content-type'] = 'application/x-python-serialize')), 'E_CONTENT_TYPE', /only application\/json/, 'id-1');
  rejects(envelopeWith((e) => (e['content-type'] = 'application/x-yaml')), 'E_CONTENT_TYPE', /x-yaml/, 'id-1');
  rejects(envelopeWith((e) => (e.body = 'not base64!')), 'E_PROTOCOL', /not valid base64/, 'id-1');
  rejects(envelopeWith((e) => (e.body = b64('[[1], {}'))), 'E_PROTOCOL', /body is not JSON/, 'id-1');
  rejects(envelopeWith((e) => (e.body = Buffer.from([0xff, 0xfe, 0x5b]).toString('base64'))), 'E_PROTOCOL', /not valid UTF-8/, 'id-1');
  rejects(envelopeWith((e) => (e.body = b64('{"a": 1}'))), 'E_PROTOCOL', /expected \[args, kwargs, embed\]/, 'id-1');
  rejects(envelopeWith((e) => (e.body = b64('[{}, {}, null]'))), 'E_PROTOCOL', /body.args: expected an array, got object/, 'id-1');
  rejects(envelopeWith((e) => (e.body = b64('[[], [], null]'))), 'E_PROTOCOL', /body.kwargs: expected an object, got array/, 'id-1');
  rejects(envelopeWith((e) => (e.headers.retries = 'two')), 'E_PROTOCOL', /headers.retries: expected a non-negative integer, got string/, 'id-1');
  rejects(envelopeWith((e) => (e.headers.eta = 'soon')), 'E_PROTOCOL', /headers.eta: expected an ISO 8601 time/, 'id-1');
  rejects(envelopeWith((e) => (e.headers.timelimit = [1])), 'E_PROTOCOL', /headers.timelimit/, 'id-1');
  rejects(envelopeWith((e) => (e.headers.id = 42)), 'E_PROTOCOL', /headers.id: expected a non-empty string, got number/, 'id-1');
  rejects(envelopeWith((e) => (e['content-encoding'] = 'latin-1')), 'E_PROTOCOL', /content encoding latin-1/, 'id-1');
  rejects(envelopeWith((e) => (e.properties.body_encoding = 'rot13')), 'E_PROTOCOL', /body encoding rot13/, 'id-1');
  rejects(envelopeWith((e) => delete e.headers.task), 'E_PROTOCOL', /neither a protocol v2 message/, 'id-1');
});

test('result metas have the shape Celery writes', () => {
  const ok = parseMeta(successMeta('abc', '{"x": [1, 2]}', Date.UTC(2026, 10, 24, 21, 55, 30, 385)));
  assert.deepEqual(ok, { status: 'SUCCESS', result: { x: [1, 2] }, traceback: null, children: [], date_done: '2026-11-24T21:55:30.385000', task_id: 'abc' });
  const fixture = JSON.parse(readFileSync(FIXTURES + 'result_failure.json', 'utf8')) as { decoded: Record<string, unknown> };
  const failed = parseMeta(exceptionMeta('FAILURE', 'abc', { excType: 'ValueError', excModule: 'builtins', excMessage: 'boom', traceback: 'stack' }));
  assert.deepEqual(Object.keys(failed).sort(), Object.keys(fixture.decoded).sort());
  assert.deepEqual(failed.result, { exc_type: 'ValueError', exc_message: ['boom'], exc_module: 'builtins' });
  assert.equal(failed.traceback, 'stack');
  const retry = parseMeta(exceptionMeta('RETRY', 'abc', { excType: 'KeyError', excModule: 'builtins', excMessage: 'x', traceback: null }));
  assert.equal(retry.date_done, null);
});
