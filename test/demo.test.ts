// `npm run demo` and the prerequisite check that guards `npm test` and the demo.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startRedis, freePort } from './helpers/redis-server.js';

const DEMO = fileURLToPath(new URL('../examples/demo.js', import.meta.url));
const PREREQS = fileURLToPath(new URL('../src/prereqs.js', import.meta.url));

function run(file: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [file, ...args], { env: { ...process.env, ...env }, timeout: 60_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

test('the demo prints add(10, 20) = 30 and stops its worker cleanly', async () => {
  const redis = await startRedis();
  try {
    const r = await run(DEMO, [], { CELERIAC_BROKER_URL: redis.url });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^add\(10, 20\) = 30$/m);
    assert.match(r.stdout, /worker stopped \(exit code 0\)/);
    assert.doesNotMatch(r.stdout, /private redis-server/);
  } finally {
    await redis.stop();
  }
});

test('with no Redis at the URL, the demo starts its own and says so', async () => {
  const r = await run(DEMO, [], { CELERIAC_BROKER_URL: `redis://127.0.0.1:${await freePort()}/0` });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /no Redis answers at redis:\/\/127\.0\.0\.1:\d+\/0; started a private redis-server/);
  assert.match(r.stdout, /^add\(10, 20\) = 30$/m);
});

test('a missing prerequisite is named with the exact install command, exit code 1', async () => {
  const r = await run(PREREQS, ['test'], { PATH: '/nonexistent' });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^missing: redis-server$/m);
  assert.match(r.stderr, /^install with: sudo apt-get update && sudo apt-get install -y redis-server redis-tools prometheus$/m);
  const ok = await run(PREREQS, ['test'], {});
  assert.deepEqual([ok.code, ok.stderr], [0, '']);
});
