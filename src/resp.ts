// One Redis command written as a single RESP buffer, for the ack: the hot path's largest write (each
// finished message travels back whole, for its LREM). ioredis frames every argument through strings
// and arrays of its own before copying them into the buffer it writes; here the frame is sized once
// and filled in place. Sent through ioredis (`sendCommand`), so its reply queue, offline queue and
// reconnects treat it as any other command.

import { Command } from 'ioredis';

/** `parts` (name first) as a RESP array of bulk strings; strings are written as UTF-8. */
export function encodeCommand(parts: readonly (string | Buffer)[]): Buffer {
  const lengths = new Array<number>(parts.length);
  const head = `*${parts.length}\r\n`;
  let size = head.length;
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i] as string | Buffer;
    const length = typeof part === 'string' ? Buffer.byteLength(part) : part.length;
    lengths[i] = length;
    // `$<length>\r\n<bytes>\r\n`
    size += 1 + decimalDigits(length) + 2 + length + 2;
  }
  const out = Buffer.allocUnsafe(size);
  let at = out.write(head, 0, 'latin1');
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i] as string | Buffer;
    const length = lengths[i] as number;
    // The length's digits go straight into the buffer: a string for each would be garbage per argument.
    out[at] = 0x24;
    const digits = decimalDigits(length);
    for (let x = length, d = at + digits; d > at; x = Math.floor(x / 10), d--) out[d] = 0x30 + (x % 10);
    at += 1 + digits;
    out[at++] = 0x0d;
    out[at++] = 0x0a;
    at += typeof part === 'string' ? out.write(part, at, 'utf8') : part.copy(out, at);
    out[at++] = 0x0d;
    out[at++] = 0x0a;
  }
  return out;
}

function decimalDigits(n: number): number {
  let digits = 1;
  for (let x = n; x >= 10; x = Math.floor(x / 10)) digits += 1;
  return digits;
}

/** A command whose bytes are already encoded (`encodeCommand`); `name` is what ioredis checks flags by. */
export class EncodedCommand extends Command {
  readonly #bytes: Buffer;

  constructor(name: string, bytes: Buffer) {
    super(name, []);
    this.#bytes = bytes;
  }

  override toWritable(): Buffer {
    return this.#bytes;
  }
}
