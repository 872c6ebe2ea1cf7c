// The tasks of the bench's floor worker (floor-worker.ts). The default returns `ms`, after waiting
// that long when it is above 0 (a round trip's hop waits for nothing); `batch`, a drain's, answers
// each body of a batch with the same result without reading it.
export default function hold(ms: number): number | Promise<number> {
  return ms > 0 ? new Promise((resolve) => setTimeout(() => resolve(ms), ms)) : ms;
}

export function batch(bodies: readonly string[]): string[] {
  return bodies.map(() => '2');
}
