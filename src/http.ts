// The worker's HTTP endpoints for Prometheus and orchestrators:
//   /metrics  the Prometheus text format (metrics.ts);
//   /healthz  200 while the process runs and its event loop keeps up (a blocked loop cannot answer at
//             all; one that lagged more than LAG_LIMIT_MS between timer ticks in the last LAG_WINDOW_MS
//             answers 503, so a probe every few seconds sees a stall that ended since its last visit);
//   /readyz   200 when Redis answers, the pool is up and the worker is not shutting down; 503 otherwise,
//             with the failing checks in the JSON body.

import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Redis } from 'ioredis';
import type { WorkerMetrics } from './metrics.js';
import type { Chunk } from './task-metrics.js';

const LAG_LIMIT_MS = 5000;
const LAG_WINDOW_MS = 10_000;
const TICK_MS = 500;
const PING_TIMEOUT_MS = 1000;

export interface Readiness {
  redis: Redis;
  /** True once the pool and consumer run, false again when shutdown begins. */
  consuming: () => boolean;
}

async function redisAnswers(redis: Redis): Promise<boolean> {
  // While disconnected a PING would wait in ioredis' offline queue; the status says enough.
  if (redis.status !== 'ready') return false;
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      redis.ping().then((r) => r === 'PONG'),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), PING_TIMEOUT_MS);
      }),
    ]);
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Writes the chunks as they come, each released once the socket took it, pausing while the socket
 * is full; stops early when the client goes away.
 */
async function writeChunks(res: ServerResponse, chunks: Iterable<Chunk>): Promise<void> {
  let gone = false;
  res.once('close', () => (gone = true));
  for (const chunk of chunks) {
    if (gone) break;
    if (!res.write(chunk.bytes, () => chunk.release())) await new Promise<void>((resolve) => {
      const go = (): void => {
        res.off('drain', go);
        res.off('close', go);
        resolve();
      };
      res.on('drain', go);
      res.on('close', go);
    });
  }
  res.end();
}

export class HttpEndpoints {
  readonly #server: Server;
  readonly #ticker: NodeJS.Timeout;
  #lastTick = performance.now();
  /** The largest lag seen within the window, and when it ended. */
  #maxLag = 0;
  #maxLagAt = 0;

  constructor(metrics: WorkerMetrics, readiness: Readiness) {
    this.#ticker = setInterval(() => {
      const now = performance.now();
      const lag = Math.max(0, now - this.#lastTick - TICK_MS);
      if (lag >= this.#maxLag || now - this.#maxLagAt > LAG_WINDOW_MS) {
        this.#maxLag = lag;
        this.#maxLagAt = now;
      }
      this.#lastTick = now;
    }, TICK_MS);
    this.#ticker.unref();
    this.#server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      const reply = (status: number, type: string, body: string): void => {
        res.writeHead(status, { 'content-type': type });
        res.end(body);
      };
      if (req.method !== 'GET' && req.method !== 'HEAD') return reply(405, 'text/plain', 'method not allowed\n');
      if (path === '/metrics') {
        metrics.metrics().then(
          (chunks) => {
            res.writeHead(200, { 'content-type': metrics.contentType });
            void writeChunks(res, chunks);
          },
          (err: unknown) => reply(500, 'text/plain', `metrics failed: ${String(err)}\n`),
        );
        return;
      }
      if (path === '/healthz') {
        const lag = Math.max(this.#maxLag, performance.now() - this.#lastTick - TICK_MS);
        const ok = lag < LAG_LIMIT_MS;
        return reply(ok ? 200 : 503, 'application/json', `${JSON.stringify({ status: ok ? 'ok' : 'event loop stalled', event_loop_lag_ms: Math.round(lag) })}\n`);
      }
      if (path === '/readyz') {
        void redisAnswers(readiness.redis).then((redis) => {
          const consuming = readiness.consuming();
          const ok = redis && consuming;
          reply(ok ? 200 : 503, 'application/json', `${JSON.stringify({ status: ok ? 'ready' : 'not ready', redis, consuming })}\n`);
        });
        return;
      }
      reply(404, 'text/plain', 'not found: try /metrics, /healthz or /readyz\n');
    });
  }

  /** Listens; resolves with the bound port (useful with port 0). */
  listen(port: number, host: string): Promise<number> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(port, host, () => {
        this.#server.off('error', reject);
        resolve((this.#server.address() as AddressInfo).port);
      });
    });
  }

  close(): Promise<void> {
    clearInterval(this.#ticker);
    return new Promise((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
  }
}
