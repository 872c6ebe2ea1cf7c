// The README documents what the code has: every error code and every worker setting (flag and variable).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ERROR_CODES } from '../src/errors.js';
import { WORKER_SETTINGS } from '../src/config.js';

const README = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

test('every error code is in the README table', () => {
  for (const code of ERROR_CODES) assert.match(README, new RegExp(`^\\| \`${code}\` \\|`, 'm'), code);
});

test('every worker setting is in the configuration table with its flag and variable', () => {
  for (const s of WORKER_SETTINGS) {
    const row = README.split('\n').find((line) => line.includes(`\`--${s.flag}\``) && line.startsWith('|'));
    assert.ok(row, `--${s.flag} has a row`);
    assert.ok(row.includes(`\`${s.env}\``), `${s.env} is in the row of --${s.flag}`);
  }
});
