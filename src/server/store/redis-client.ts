import { Redis, type RedisOptions } from 'ioredis'
import { ErrorCode, MeshError } from '../../shared/errors.js'

/** How the `redis` option may be given: a URL, ioredis options, or an ioredis client to copy settings from. */
export type RedisConfig = string | RedisOptions | Redis

export interface RedisClientSettings {
  /** Milliseconds a command may take before it fails with `UNAVAILABLE`. */
  commandTimeout: number
}

/**
 * A connection of our own, whatever form the option took: a client the user passed
 * is duplicated, never used or closed directly. Commands fail at once while the
 * connection is down (no offline queue), so nothing waits forever for Redis.
 */
export function createRedisClient(config: RedisConfig, settings: RedisClientSettings): Redis {
  const overrides: RedisOptions = {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: settings.commandTimeout,
    autoResubscribe: false,
    // Reconnect quickly and keep trying: an instance must outlive a Redis restart.
    retryStrategy: (attempt) => Math.min(50 * 2 ** Math.min(attempt, 6), 2_000),
  }
  if (config instanceof Redis) return config.duplicate(overrides)
  if (typeof config === 'string') return new Redis(config, overrides)
  return new Redis({ ...config, ...overrides })
}

/** Resolves when the client is ready; rejects with `UNAVAILABLE` if it is not within `timeout` ms. */
export function whenReady(redis: Redis, timeout: number): Promise<void> {
  if (redis.status === 'ready') return Promise.resolve()
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      redis.off('ready', onReady)
      reject(new MeshError(ErrorCode.UNAVAILABLE, `Redis was not reachable within ${timeout} ms`))
    }, timeout)
    const onReady = (): void => {
      clearTimeout(timer)
      resolve()
    }
    redis.once('ready', onReady)
  })
}

/**
 * Runs a Redis call, turning connection trouble (down, timed out, closed) into
 * `UNAVAILABLE`. A reply error from Redis itself (wrong type, script error) is a
 * bug, reported as `INTERNAL_ERROR`.
 */
export async function redisCall<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call()
  } catch (error) {
    if (error instanceof MeshError) throw error
    const name = (error as Error | undefined)?.name
    const code = name === 'ReplyError' ? ErrorCode.INTERNAL_ERROR : ErrorCode.UNAVAILABLE
    throw new MeshError(code, `Redis: ${(error as Error | undefined)?.message ?? String(error)}`, { cause: error })
  }
}
