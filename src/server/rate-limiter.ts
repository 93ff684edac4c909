import { mergeOptions, requireKnownKeys, requireNonNegative, requirePositive, type OptionKeys } from '../shared/options.js'

/** The `rateLimit` server option: how many frames one connection may send. */
export interface RateLimitOptions {
  /** Frames a connection may send per `duration`; also the burst a full bucket allows (1 or more). */
  points: number
  /** Milliseconds in which `points` frames are refilled, continuously (not in steps). */
  duration: number
  /**
   * Frames over the limit a connection may send, on top of the refill, before it is
   * closed with 4029. They are counted in a second bucket of this size refilled at
   * the same rate, so a client that backs off after `TOO_MANY_REQUESTS` is never
   * closed, and one that keeps sending at more than twice the limit soon is. @default 100
   */
  closeAfter?: number
}

export const rateLimitDefaults = {
  closeAfter: 100,
} satisfies Partial<RateLimitOptions>

export type ResolvedRateLimitOptions = typeof rateLimitDefaults & RateLimitOptions

const rateLimitOptionKeys: OptionKeys<RateLimitOptions> = { points: true, duration: true, closeAfter: true }

/** Bad configuration throws at construction, naming the field. */
export function resolveRateLimit(options: RateLimitOptions): ResolvedRateLimitOptions {
  requireKnownKeys(options, rateLimitOptionKeys, 'rateLimit.')
  const resolved = mergeOptions(rateLimitDefaults, options)
  // A bucket that cannot hold one whole token would refuse every frame.
  if (!(typeof resolved.points === 'number' && Number.isFinite(resolved.points) && resolved.points >= 1)) {
    throw new RangeError(`rateLimit.points must be a number, 1 or more, got ${String(resolved.points)}`)
  }
  requirePositive('rateLimit.duration', resolved.duration)
  if (!Number.isFinite(resolved.duration)) throw new RangeError('rateLimit.duration must be finite')
  requireNonNegative('rateLimit.closeAfter', resolved.closeAfter)
  return resolved
}

/** What to do with a frame. */
export const RateVerdict = {
  /** Within the limit: handle it. */
  PASS: 0,
  /** Over the limit: a request gets `TOO_MANY_REQUESTS` and runs nothing. */
  REFUSE: 1,
  /** Over the limit and past `closeAfter`: close the connection with 4029. */
  CLOSE: 2,
} as const

export type RateVerdict = (typeof RateVerdict)[keyof typeof RateVerdict]

/** One connection's state: a few numbers, refilled lazily when a frame arrives. */
export interface RateBucket {
  tokens: number
  /** What is left of the `closeAfter` allowance for frames over the limit. */
  excess: number
  /** When the bucket was last refilled, in `performance.now()` milliseconds. */
  at: number
}

/**
 * Per-connection token buckets over the frames clients send. No timer per
 * connection: each frame refills its bucket from the time elapsed since the last
 * one, so an idle connection costs nothing and a busy one a subtraction.
 */
export class RateLimiter {
  private readonly points: number
  private readonly closeAfter: number
  /** Tokens refilled per millisecond. */
  private readonly rate: number

  constructor(
    options: ResolvedRateLimitOptions,
    /** Milliseconds from a monotonic clock; injectable so the arithmetic can be tested without waiting. */
    private readonly now: () => number = () => performance.now(),
  ) {
    this.points = options.points
    this.closeAfter = options.closeAfter
    this.rate = options.points / options.duration
  }

  /** A full bucket for a new connection. */
  bucket(): RateBucket {
    return { tokens: this.points, excess: this.closeAfter, at: this.now() }
  }

  /** Spends one token for a frame, and says what to do with that frame. */
  take(bucket: RateBucket): RateVerdict {
    const now = this.now()
    const refill = (now - bucket.at) * this.rate
    bucket.at = now
    if (refill > 0) {
      bucket.tokens = Math.min(this.points, bucket.tokens + refill)
      bucket.excess = Math.min(this.closeAfter, bucket.excess + refill)
    }
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1
      return RateVerdict.PASS
    }
    if (bucket.excess >= 1) {
      bucket.excess -= 1
      return RateVerdict.REFUSE
    }
    return RateVerdict.CLOSE
  }
}
