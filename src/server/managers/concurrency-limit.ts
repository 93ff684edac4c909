import { ErrorCode, MeshError } from '../../shared/errors.js'

interface Waiter {
  readonly since: number
  resolve(): void
  reject(error: MeshError): void
}

/**
 * Runs at most `max` tasks at once; later ones wait their turn, first come first
 * served. A task that waited longer than `maxWait` ms is failed with `UNAVAILABLE`
 * when its turn comes instead of being run: while the store is slow, a queue that
 * only grew would turn every later request into a timeout, and a failed request
 * is one the client knows to retry.
 */
export class ConcurrencyLimit {
  private running = 0
  private readonly waiting: Waiter[] = []

  constructor(
    private readonly max: number,
    private readonly maxWait: number,
  ) {}

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.running < this.max) this.running++
    else await new Promise<void>((resolve, reject) => this.waiting.push({ since: performance.now(), resolve, reject }))
    try {
      return await task()
    } finally {
      this.release()
    }
  }

  /** Hands the finished task's turn to the next waiter that has not waited too long. */
  private release(): void {
    const now = performance.now()
    for (let waiter = this.waiting.shift(); waiter; waiter = this.waiting.shift()) {
      if (now - waiter.since <= this.maxWait) return waiter.resolve()
      waiter.reject(new MeshError(ErrorCode.UNAVAILABLE, 'The store is busy; try again'))
    }
    this.running--
  }
}
