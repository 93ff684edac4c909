import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { ErrorCode, MeshError } from 'meshkit'
import { RetryScope, type RetryOutcome } from '../src/client/retry-scope.js'

const unavailable = (): MeshError => new MeshError(ErrorCode.UNAVAILABLE, 'store away')

/** A task failing with `error()` for its first `failures` calls, then resolving with 'ok'; records when it ran. */
function flaky(failures: number, error: () => MeshError = unavailable): { task: () => Promise<string>; calls: number[] } {
  const calls: number[] = []
  return {
    calls,
    task: async () => {
      calls.push(Date.now())
      if (calls.length <= failures) throw error()
      return 'ok'
    },
  }
}

describe('RetryScope', () => {
  beforeEach(() => {
    vi.useFakeTimers({ now: 0 })
  })
  afterEach(() => {
    vi.useRealTimers()
  })

  it('retries transient failures with full-jitter backoff, doubling up to the cap', async () => {
    // random() just below 1: each delay sits at the top of its window.
    const scope = new RetryScope(100, 500, () => 0.999)
    const { task, calls } = flaky(5)
    const retries: Array<[string, number]> = []
    const outcome = scope.retry(task, { onRetry: (error, attempt) => retries.push([error.code, attempt]) })
    await vi.runAllTimersAsync()
    expect(await outcome).toEqual({ status: 'done', value: 'ok' })
    const gaps = calls.slice(1).map((at, i) => at - calls[i]!)
    expect(gaps).toEqual([99, 199, 399, 499, 499])
    expect(retries).toEqual([1, 2, 3, 4, 5].map((attempt) => [ErrorCode.UNAVAILABLE, attempt]))
  })

  it('stops at a definitive answer: a refusal is not retried', async () => {
    const scope = new RetryScope(100, 500)
    const { task, calls } = flaky(1, () => new MeshError(ErrorCode.UNAUTHORIZED, 'no'))
    const outcome = await scope.retry(task)
    expect(outcome.status).toBe('refused')
    expect((outcome as Extract<RetryOutcome<string>, { status: 'refused' }>).error.code).toBe(ErrorCode.UNAUTHORIZED)
    expect(calls).toHaveLength(1)
  })

  it('ending the scope (socket gone, client closed) abandons a sleeping retry at once; nothing runs afterwards', async () => {
    const scope = new RetryScope(1_000, 30_000)
    const { task, calls } = flaky(Infinity)
    const outcome = scope.retry(task)
    await vi.advanceTimersByTimeAsync(10_000)
    const attempts = calls.length
    expect(attempts).toBeGreaterThan(1)
    scope.end()
    expect(await outcome).toEqual({ status: 'abandoned' })
    expect(vi.getTimerCount()).toBe(0)
    await vi.advanceTimersByTimeAsync(60_000)
    expect(calls).toHaveLength(attempts)
    // A scope that ended starts nothing new.
    expect(await scope.retry(task)).toEqual({ status: 'abandoned' })
    expect(calls).toHaveLength(attempts)
  })

  it('abandons a task the application no longer wants, before its next attempt', async () => {
    const scope = new RetryScope(100, 500)
    let wanted = true
    const { task, calls } = flaky(Infinity)
    const outcome = scope.retry(task, { wanted: () => wanted })
    await vi.advanceTimersByTimeAsync(1_000)
    wanted = false
    await vi.runAllTimersAsync()
    expect(await outcome).toEqual({ status: 'abandoned' })
    const attempts = calls.length
    await vi.advanceTimersByTimeAsync(5_000)
    expect(calls).toHaveLength(attempts)
  })
})
