// The task of the bench's floor worker (floor-worker.ts): waits `ms` and returns it.
export default async function hold(ms: number): Promise<number> {
  await new Promise((resolve) => setTimeout(resolve, ms));
  return ms;
}
