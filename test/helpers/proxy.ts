// A TCP proxy in front of a Redis that makes chosen connections slow: what their client sends reaches
// Redis `holdBackMs` late (in order). Which ones: those whose first bytes (ioredis sends CLIENT SETNAME
// first) contain `match`, except the first `spare` of them. For races that need one connection of a
// process to lag behind its others.

import { createConnection, createServer, type Server, type Socket } from 'node:net';

export interface SlowProxy {
  url: string;
  /** Connections made slow so far. */
  readonly slowed: number;
  close(): Promise<void>;
}

export async function startSlowProxy(redisPort: number, o: { match: string; spare: number; holdBackMs: number }): Promise<SlowProxy> {
  let matched = 0;
  let slowed = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = createConnection(redisPort, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => sockets.delete(s));
    }
    upstream.pipe(client);
    let slow: boolean | null = null;
    client.on('data', (chunk: Buffer) => {
      if (slow === null) {
        slow = chunk.includes(o.match) && ++matched > o.spare;
        if (slow) slowed += 1;
      }
      if (slow) setTimeout(() => upstream.write(chunk), o.holdBackMs);
      else upstream.write(chunk);
    });
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `redis://127.0.0.1:${port}/0`,
    get slowed() {
      return slowed;
    },
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
