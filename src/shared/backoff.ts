/**
 * Delay before retry `attempt` (1-based: reconnects, resumes, redelivery): "full jitter", a uniform
 * random delay between 0 and an exponentially growing ceiling, so that clients
 * dropped together do not return together.
 */
export function backoffDelay(attempt: number, base: number, cap: number, random: () => number = Math.random): number {
  const ceiling = Math.min(cap, base * 2 ** Math.max(0, attempt - 1))
  return Math.floor(random() * ceiling)
}
