// The chaos run in small (`npm run chaos -- --quick`): workers SIGKILLed at random and Redis SIGKILLed
// and restarted while tasks flow; nothing is lost, and a task runs twice only if a killed worker held it.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runToCompletion } from './helpers/process.js';

const CHAOS = fileURLToPath(new URL('../bench/chaos.js', import.meta.url));

test('3 worker kills and a Redis restart while 2,000 tasks flow: none lost, none run twice without cause', async () => {
  const out = join(mkdtempSync(join(tmpdir(), 'chaos-')), 'chaos.json');
  const r = await runToCompletion(process.execPath, [CHAOS, '--quick', '--json', out], {}, 150_000);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const result = JSON.parse(readFileSync(out, 'utf8')) as Record<string, number>;
  assert.equal(result.sent, 2000);
  assert.equal(result.lost, 0);
  assert.equal(result.completed, 2000);
  assert.equal(result.worker_kills, 3);
  assert.equal(result.redis_restarts, 1);
  assert.equal(result.run_twice_not_held_by_a_killed_worker, 0);
  assert.equal(r.stderr, '', 'nothing printed to stderr');
});
