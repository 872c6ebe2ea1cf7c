// Every Redis connection celeriac opens: the options they share, TLS for `rediss://` URLs, and closing.
// TLS material comes from files named by environment variables (read once, at the first TLS
// connection), so the worker, the CLI commands, beat and library producers all honour the same setup:
//   CELERIAC_TLS_CA_FILE    CA bundle that signed the server's certificate (else the system's CAs)
//   CELERIAC_TLS_CERT_FILE  client certificate, for servers with tls-auth-clients yes
//   CELERIAC_TLS_KEY_FILE   the client certificate's private key
// Passwords and ACL users come in the URL (redis://user:password@host:port/db); logs redact them.

import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import { Redis, type RedisOptions } from 'ioredis';
import { ConfigError } from './errors.js';

const TLS_FILES = { ca: 'CELERIAC_TLS_CA_FILE', cert: 'CELERIAC_TLS_CERT_FILE', key: 'CELERIAC_TLS_KEY_FILE' } as const;

let tlsCache: ConnectionOptions | null = null;

/** TLS options from the environment; a file that cannot be read is a ConfigError naming its variable. */
export function tlsFromEnv(env: NodeJS.ProcessEnv = process.env): ConnectionOptions {
  const out: ConnectionOptions = {};
  for (const [field, variable] of Object.entries(TLS_FILES) as [keyof typeof TLS_FILES, string][]) {
    const path = env[variable];
    if (path === undefined || path === '') continue;
    try {
      out[field] = readFileSync(path);
    } catch (err) {
      throw new ConfigError(variable, `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }
  return out;
}

/** Options shared by every connection; `rediss://` URLs get TLS with the configured files. */
export function redisOptions(url: string, extra: RedisOptions = {}): RedisOptions {
  const tls = url.startsWith('rediss://') ? (tlsCache ??= tlsFromEnv()) : undefined;
  return {
    // A worker outlives Redis restarts: commands wait for the reconnect instead of failing the loop.
    maxRetriesPerRequest: null,
    // Off: ioredis builds a Pipeline per tick for it, which cost the worker's command connection a
    // quarter of the supervisor's CPU in a no-op drain (44 → 33 µs per task, 13.7k → 16.5k tasks/s in
    // three interleaved pairs) and more with 5 ms tasks. What must travel together is sent as one
    // MULTI, script or explicit pipeline instead.
    enableAutoPipelining: false,
    retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 8), 2000),
    ...(tls ? { tls } : {}),
    ...extra,
  };
}

/**
 * ioredis takes options from a URL's query as well. A key prefix would put every key where Celery does
 * not look (kombu's transport and result backend use the names as they are), and the ack encoded by
 * resp.ts would not get it: refused rather than half honoured.
 */
export function checkUrlOptions(url: string, key: string): void {
  const q = url.indexOf('?');
  if (q !== -1 && new URLSearchParams(url.slice(q + 1).split('#')[0]).has('keyPrefix')) {
    throw new ConfigError(key, 'the keyPrefix option is not supported: Celery reads and writes its keys without a prefix');
  }
}

export function connect(url: string, extra: RedisOptions = {}): Redis {
  checkUrlOptions(url, 'brokerUrl');
  return new Redis(url, redisOptions(url, extra));
}

/** QUIT when connected (pending replies arrive first); otherwise drop the reconnect loop at once. */
export async function closeRedis(conn: Redis): Promise<void> {
  if (conn.status !== 'ready') {
    conn.disconnect();
    return;
  }
  await conn.quit().catch(() => conn.disconnect());
}
