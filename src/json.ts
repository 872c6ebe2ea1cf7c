// JSON that keeps Python's big integers exact. Python writes 2**70 as a bare number; JSON.parse would
// round it. `parseJson` returns such integers as `bigint` and `stringifyJson` writes a `bigint` as bare
// digits, so values round-trip between Celery and our tasks. Both take the native fast path unless the
// text (or value) actually holds such a number, which is the hot path's common case.

export const MAX_JSON_DEPTH = 512;

export function parseJson(text: string): unknown {
  const value: unknown = JSON.parse(text);
  return mayHaveLostDigits(value) ? new LosslessParser(text).parseDocument() : value;
}

const hasOwn = Object.prototype.hasOwnProperty;
const beyondSafe = (n: number): boolean => n > Number.MAX_SAFE_INTEGER || n < -Number.MAX_SAFE_INTEGER;

/**
 * True when JSON.parse gave a number beyond ±2^53: only then can a literal have lost digits (a float
 * written that large, 1e300, is parsed again for nothing, and comes back the same). Walking the parsed
 * value costs 0.1-0.4 µs for an 840-byte message, where testing its text for a run of 16 digits cost 1.4.
 */
function mayHaveLostDigits(root: unknown): boolean {
  if (typeof root !== 'object' || root === null) return typeof root === 'number' && beyondSafe(root);
  // One stack for every walk, emptied before each returns: the hot path walks every message it
  // receives, and a stack and closure of its own per walk were 340 bytes of garbage per message.
  const stack = walkStack;
  stack.push(root);
  for (let o = stack.pop(); o !== undefined; o = stack.pop()) {
    if (Array.isArray(o)) {
      for (let i = 0; i < o.length; i++) if (lostIn(o[i], stack)) return true;
    } else {
      // Own keys only: what someone made enumerable on Object.prototype is inherited by every object,
      // itself included, so the walk would never end. for-in with the check builds no array per
      // object, as Object.values did.
      for (const key in o) if (hasOwn.call(o, key) && lostIn((o as Record<string, unknown>)[key], stack)) return true;
    }
  }
  return false;
}

const walkStack: object[] = [];

/** True for a number beyond ±2^53 (and the stack is emptied); keeps an object or array to visit. */
function lostIn(v: unknown, stack: object[]): boolean {
  if (typeof v === 'object' && v !== null) stack.push(v);
  else if (typeof v === 'number' && beyondSafe(v)) {
    stack.length = 0;
    return true;
  }
  return false;
}

class LosslessParser {
  #i = 0;
  constructor(readonly text: string) {}

  parseDocument(): unknown {
    this.#ws();
    const value = this.#value(0);
    this.#ws();
    if (this.#i < this.text.length) this.#fail('Unexpected non-whitespace character after JSON');
    return value;
  }

  #fail(message: string): never {
    throw new SyntaxError(`${message} at position ${this.#i}`);
  }

  #ws(): void {
    const t = this.text;
    while (this.#i < t.length) {
      const c = t.charCodeAt(this.#i);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) this.#i += 1;
      else break;
    }
  }

  #value(depth: number): unknown {
    if (depth > MAX_JSON_DEPTH) this.#fail(`JSON nested deeper than ${MAX_JSON_DEPTH} levels`);
    const c = this.text[this.#i];
    switch (c) {
      case '{':
        return this.#object(depth);
      case '[':
        return this.#array(depth);
      case '"':
        return this.#string();
      case 't':
        return this.#literal('true', true);
      case 'f':
        return this.#literal('false', false);
      case 'n':
        return this.#literal('null', null);
      default:
        if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) return this.#number();
        return this.#fail(c === undefined ? 'Unexpected end of JSON input' : `Unexpected token ${c}`);
    }
  }

  #literal<T>(word: string, value: T): T {
    if (!this.text.startsWith(word, this.#i)) this.#fail(`Unexpected token ${this.text[this.#i]}`);
    this.#i += word.length;
    return value;
  }

  #number(): number | bigint {
    const re = /-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/y;
    re.lastIndex = this.#i;
    const m = re.exec(this.text);
    if (!m) this.#fail('Invalid number');
    this.#i += m[0].length;
    const n = Number(m[0]);
    if (m[2] === undefined && m[3] === undefined && !Number.isSafeInteger(n)) return BigInt(m[0]);
    return n;
  }

  #string(): string {
    const t = this.text;
    const start = ++this.#i;
    // Fast scan for strings without escapes.
    let j = start;
    for (; j < t.length; j++) {
      const c = t.charCodeAt(j);
      if (c === 0x22 || c === 0x5c || c < 0x20) break;
    }
    if (t.charCodeAt(j) === 0x22) {
      this.#i = j + 1;
      return t.slice(start, j);
    }
    // Let JSON.parse handle escapes exactly: find the closing quote, then parse that slice alone.
    for (; j < t.length; j++) {
      const c = t.charCodeAt(j);
      if (c === 0x5c) j += 1;
      else if (c === 0x22) break;
      else if (c < 0x20) {
        this.#i = j;
        this.#fail('Bad control character in string literal');
      }
    }
    if (j >= t.length) {
      this.#i = t.length;
      this.#fail('Unterminated string in JSON');
    }
    this.#i = j + 1;
    return JSON.parse(t.slice(start - 1, j + 1)) as string;
  }

  #array(depth: number): unknown[] {
    this.#i += 1;
    const out: unknown[] = [];
    this.#ws();
    if (this.text[this.#i] === ']') {
      this.#i += 1;
      return out;
    }
    for (;;) {
      this.#ws();
      out.push(this.#value(depth + 1));
      this.#ws();
      const c = this.text[this.#i++];
      if (c === ']') return out;
      if (c !== ',') this.#fail(c === undefined ? 'Unexpected end of JSON input' : `Expected ',' or ']' after array element`);
    }
  }

  #object(depth: number): Record<string, unknown> {
    this.#i += 1;
    const out: Record<string, unknown> = {};
    this.#ws();
    if (this.text[this.#i] === '}') {
      this.#i += 1;
      return out;
    }
    for (;;) {
      this.#ws();
      if (this.text[this.#i] !== '"') this.#fail('Expected double-quoted property name');
      const key = this.#string();
      this.#ws();
      if (this.text[this.#i++] !== ':') this.#fail("Expected ':' after property name");
      this.#ws();
      // defineProperty, as JSON.parse does: a "__proto__" key is data, never the prototype.
      Object.defineProperty(out, key, { value: this.#value(depth + 1), enumerable: true, writable: true, configurable: true });
      this.#ws();
      const c = this.text[this.#i++];
      if (c === '}') return out;
      if (c !== ',') this.#fail(c === undefined ? 'Unexpected end of JSON input' : `Expected ',' or '}' after property value`);
    }
  }
}

/**
 * JSON.stringify, except that a `bigint` is written as its bare digits (what Python reads back as an
 * int). Returns undefined where JSON.stringify does (a top-level function or undefined): callers check.
 */
export function stringifyJson(value: unknown): string {
  try {
    return JSON.stringify(value);
  } catch (err) {
    // JSON.stringify refuses a bigint with a TypeError; anything else (a cycle) is the caller's error.
    if (!(err instanceof TypeError) || !/BigInt/.test(err.message)) throw err;
  }
  let sawBigint = false;
  const marker = `\u0000bigint:${Math.random().toString(36).slice(2)}:`;
  const out = JSON.stringify(value, (_key, v: unknown) => {
    if (typeof v !== 'bigint') return v;
    sawBigint = true;
    return `${marker}${v.toString()}`;
  }) as string | undefined;
  if (!sawBigint || out === undefined) return out as string;
  const quoted = JSON.stringify(marker).slice(0, -1);
  return out.replace(new RegExp(`${escapeRegExp(quoted)}(-?\\d+)"`, 'g'), '$1');
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
