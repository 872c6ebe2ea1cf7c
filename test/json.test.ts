// parseJson / stringifyJson: JSON.parse and JSON.stringify, except that integers beyond 2^53 stay exact.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseJson, stringifyJson } from '../src/json.js';

const FIXTURE_BODY = '[["h\\u00e9llo \\u2713", [1, [2, {"k": null}]], 1180591620717411303424, 1.5, true, null], {"\\u043a\\u043b\\u044e\\u0447": "\\u503c", "nested": {"a": [1.25, false]}}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]';

test('big integers from Python become exact bigints; everything else is as JSON.parse gives it', () => {
  const v = parseJson(FIXTURE_BODY) as unknown[][];
  assert.equal(v[0]?.[2], 2n ** 70n);
  const expected = JSON.parse(FIXTURE_BODY) as unknown[][];
  (expected[0] as unknown[])[2] = 2n ** 70n;
  assert.deepEqual(v, expected);
  assert.equal(parseJson('-1180591620717411303424'), -(2n ** 70n));
  assert.equal(parseJson('9007199254740991'), 9007199254740991);
  assert.equal(parseJson('9007199254740993'), 9007199254740993n);
  assert.equal(parseJson('12345678901234567890.5'), 12345678901234567890.5);
  assert.equal(parseJson('1e400'), Infinity);
  assert.deepEqual(parseJson('{"s": "12345678901234567890"}'), { s: '12345678901234567890' });
  assert.deepEqual(parseJson('[12345678901234567890, "a\\"b\\\\c\\n\\ud83d\\ude00", {"__proto__": 1}]'), [12345678901234567890n, 'a"b\\c\n😀', JSON.parse('{"__proto__": 1}')]);
  assert.equal(Object.getPrototypeOf(parseJson('{"__proto__": {"x": 1}, "n": 12345678901234567890}')), Object.prototype);
  // Found at any depth, in arrays and objects; a large float stays a number.
  assert.deepEqual(parseJson('{"a": [1, {"b": [2, {"c": -1152921504606846976}]}], "d": 1e300}'), { a: [1, { b: [2, { c: -(2n ** 60n) }] }], d: 1e300 });
  assert.deepEqual(parseJson('[[[[1.5e20]]], "x"]'), [[[[1.5e20]]], 'x']);
});

test('what someone made enumerable on Object.prototype is not walked as if it were in the document', () => {
  // Walked, this number would send the document to the lossless parser, which refuses 600 levels.
  Object.defineProperty(Object.prototype, 'polluted', { value: 2 ** 60, enumerable: true, configurable: true });
  try {
    const deep = `${'['.repeat(600)}{"a": 1}${']'.repeat(600)}`;
    assert.deepEqual(parseJson(deep), JSON.parse(deep));
  } finally {
    delete (Object.prototype as Record<string, unknown>).polluted;
  }
});

test('invalid JSON is a SyntaxError on both paths', () => {
  const bad = ['', '[', '[1,]', '{"a" 1}', "{'a': 1}", 'NaN', '01', '[1] x', '"abc', '"a\u0001b"', '{"a":1,}', '-', '1.', '.5', 'tru', '[1 2]', '{"a":}', '"\\x"'];
  for (const text of bad) {
    assert.throws(() => parseJson(text), SyntaxError, `fast: ${JSON.stringify(text)}`);
    assert.throws(() => parseJson(`[12345678901234567890, ${text}]`), SyntaxError, `slow: ${JSON.stringify(text)}`);
  }
  assert.throws(() => parseJson(`${'['.repeat(100_000)}12345678901234567890`), SyntaxError);
});

test('bigints are written as bare digits; strings that look like the marker are left alone', () => {
  assert.equal(stringifyJson({ a: 2n ** 70n, b: [1n, -5n] }), '{"a":1180591620717411303424,"b":[1,-5]}');
  assert.equal(stringifyJson({ s: '\u0000bigint:abc:12', n: 1n }), '{"s":"\\u0000bigint:abc:12","n":1}');
  assert.equal(stringifyJson([1, 'x', null]), '[1,"x",null]');
  assert.throws(() => {
    const cyclic: Record<string, unknown> = { n: 1n };
    cyclic.self = cyclic;
    stringifyJson(cyclic);
  }, TypeError);
});

test('random values round-trip exactly', () => {
  let seed = 42;
  const rand = (): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const chars = ['a', 'é', '✓', '😀', '"', '\\', '\n', '0', ' '];
  const value = (depth: number): unknown => {
    const r = rand();
    if (depth > 4 || r < 0.3) {
      const k = Math.floor(rand() * 6);
      if (k === 0) return Math.floor(rand() * 1e6) - 5e5;
      if (k === 1) return BigInt(Math.floor(rand() * 1e6)) * 10n ** 18n + 1n;
      if (k === 2) return rand() * 100 - 50;
      if (k === 3) return Array.from({ length: Math.floor(rand() * 8) }, () => chars[Math.floor(rand() * chars.length)]).join('');
      return [true, false, null][Math.floor(rand() * 3)];
    }
    if (r < 0.65) return Array.from({ length: Math.floor(rand() * 5) }, () => value(depth + 1));
    return Object.fromEntries(Array.from({ length: Math.floor(rand() * 5) }, (_, i) => [`k${i}${chars[Math.floor(rand() * chars.length)]}`, value(depth + 1)]));
  };
  for (let i = 0; i < 2000; i++) {
    const v = value(0);
    assert.deepEqual(parseJson(stringifyJson(v)), v);
  }
});
