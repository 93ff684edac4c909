import { ErrorCode, toMeshError, type MeshError } from '../shared/errors.js'
import { backoffDelay } from '../shared/backoff.js'

/**
 * Codes that say "not now" rather than "no": the server or its store is away or
 * busy, or the request's socket could not carry it. Anything else (a refusal, an
 * application's own code, `LIMIT_EXCEEDED`) is an answer and ends the retries.
 */
const TRANSIENT_CODES: ReadonlySet<string> = new Set([
  ErrorCode.UNAVAILABLE,
  ErrorCode.TIMEOUT,
  ErrorCode.TOO_MANY_REQUESTS,
  ErrorCode.INTERNAL_ERROR,
  ErrorCode.CONNECTION_CLOSED,
  ErrorCode.AUTH_IN_PROGRESS,
])

export function isTransient(error: MeshError): boolean {
  return TRANSIENT_CODES.has(error.code)
}

/** How a retried task ended: its value, a definitive error, or abandoned (scope ended, or no longer wanted). */
export type RetryOutcome<T> =
  | { status: 'done'; value: T }
  | { status: 'refused'; error: MeshError }
  | { status: 'abandoned' }

export interface RetryHooks {
  /** Checked before every attempt: false abandons the task (the application unsubscribed, say). */
  wanted?: () => boolean
  /** A transient failure; the task runs again after a backoff delay. `attempt` counts from 1. */
  onRetry?: (error: MeshError, attempt: number) => void
}

const ABANDONED = { status: 'abandoned' } as const

/**
 * The retries that belong to one socket: re-authentication, channel resumes and
 * room rejoins after a reconnect. Ending the scope (the socket closed, or
 * `close()`) stops all of them at once, sleeping or not; the next socket gets a
 * scope of its own and starts over, so retries never pile up across reconnects.
 */
export class RetryScope {
  private live = true
  private readonly sleepers = new Set<() => void>()

  /**
   * @param interval base delay of the full-jitter backoff, in milliseconds
   * @param maxInterval its ceiling
   */
  constructor(
    private readonly interval: number,
    private readonly maxInterval: number,
    private readonly random: () => number = Math.random,
  ) {}

  get active(): boolean {
    return this.live
  }

  end(): void {
    this.live = false
    for (const wake of [...this.sleepers]) wake()
  }

  /** Runs `task` until it succeeds, fails definitively, or the scope ends. Never rejects. */
  async retry<T>(task: () => Promise<T>, hooks: RetryHooks = {}): Promise<RetryOutcome<T>> {
    for (let attempt = 1; ; attempt++) {
      if (!this.live || hooks.wanted?.() === false) return ABANDONED
      try {
        return { status: 'done', value: await task() }
      } catch (thrown) {
        const error = toMeshError(thrown)
        // The socket went away under the request: the next socket's scope starts over.
        if (!this.live) return ABANDONED
        if (!isTransient(error)) return { status: 'refused', error }
        hooks.onRetry?.(error, attempt)
        if (!(await this.sleep(backoffDelay(attempt, this.interval, this.maxInterval, this.random)))) return ABANDONED
      }
    }
  }

  /** Resolves true after `ms`, or false as soon as the scope ends. */
  private sleep(ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const wake = (): void => {
        clearTimeout(timer)
        this.sleepers.delete(wake)
        resolve(this.live)
      }
      const timer = setTimeout(wake, ms)
      this.sleepers.add(wake)
    })
  }
}
