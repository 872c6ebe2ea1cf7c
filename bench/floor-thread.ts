// The task of the bench's floor worker (floor-worker.ts): returns `ms`, after waiting that long when
// it is above 0 (a round trip's hop waits for nothing).
export default function hold(ms: number): number | Promise<number> {
  return ms > 0 ? new Promise((resolve) => setTimeout(() => resolve(ms), ms)) : ms;
}
