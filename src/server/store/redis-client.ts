import { Cluster, Redis, type ClusterNode, type ClusterOptions, type Command, type RedisOptions } from 'ioredis'
import { ErrorCode, INTERNAL_ERROR_MESSAGE, MeshError } from '../../shared/errors.js'
import type { Logger } from '../logger.js'
import { noInstruments, type Instruments } from '../instruments.js'

/**
 * How the `redis` option may be given: a URL, ioredis options, or an ioredis client to
 * copy settings from; for Redis Cluster, a list of startup nodes or an ioredis `Cluster`
 * (copied the same way, never used or closed directly).
 */
export type RedisConfig = string | RedisOptions | Redis | Cluster | readonly ClusterNode[]

/** A connection of ours: one Redis, or a Redis Cluster (whose keys and topics must respect slots; see keys.ts). */
export type RedisConnection = Redis | Cluster

/** Whether the connection is a Redis Cluster: sharded pub/sub (`SPUBLISH`) instead of `PUBLISH`, per-node fan-outs. */
export function isCluster(redis: RedisConnection): redis is Cluster {
  return redis instanceof Cluster
}

/** The publish command for this connection, for scripts that publish (the topic must be in the script's slot). */
export function publishCommand(redis: RedisConnection): 'SPUBLISH' | 'PUBLISH' {
  return isCluster(redis) ? 'SPUBLISH' : 'PUBLISH'
}

/** Publishes on a topic: `SPUBLISH` in a cluster (only the shard owning the topic carries it), `PUBLISH` on one Redis. */
export function publishOn(redis: RedisConnection, topic: string, message: Buffer | string): Promise<number> {
  return isCluster(redis) ? (redis.spublish(topic, message) as Promise<number>) : redis.publish(topic, message)
}

/**
 * Bad `redis` configuration throws at construction, naming the option: a cluster's
 * startup nodes must be a non-empty list of `{ host?, port? }`, ports or `'host:port'`
 * strings. Everything inside ioredis options is ioredis's to check.
 */
export function requireRedisConfig(name: string, config: unknown): void {
  if (!Array.isArray(config)) {
    if (typeof config === 'string' || (typeof config === 'object' && config !== null)) return
    throw new TypeError(`${name} must be a URL, ioredis options, an ioredis client, a list of cluster nodes or an ioredis Cluster`)
  }
  if (config.length === 0) throw new TypeError(`${name}: a Redis Cluster needs at least one startup node`)
  for (const node of config) {
    const valid = typeof node === 'string' || (typeof node === 'number' && Number.isInteger(node)) || (typeof node === 'object' && node !== null && !Array.isArray(node))
    if (!valid) throw new TypeError(`${name}: each cluster startup node must be { host, port }, a port or 'host:port', got ${String(node)}`)
  }
}

export interface RedisClientSettings {
  /** Milliseconds a command may take before it fails with `UNAVAILABLE`. */
  commandTimeout: number
}

/** Reconnect quickly and keep trying: an instance must outlive a Redis restart or a whole cluster's. */
const backoff = (attempt: number): number => Math.min(50 * 2 ** Math.min(attempt, 6), 2_000)

/** What every connection of ours overrides in the user's settings (one Redis, or each node of a cluster). */
function connectionOverrides(settings: RedisClientSettings): RedisOptions {
  return {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: settings.commandTimeout,
    autoResubscribe: false,
    retryStrategy: backoff,
  }
}

/**
 * A connection of our own, whatever form the option took: a client the user passed
 * is duplicated, never used or closed directly. Commands fail at once while the
 * connection is down (no offline queue), so nothing waits forever for Redis.
 */
export function createRedisClient(config: string | RedisOptions | Redis, settings: RedisClientSettings): Redis
export function createRedisClient(config: RedisConfig, settings: RedisClientSettings): RedisConnection
export function createRedisClient(config: RedisConfig, settings: RedisClientSettings): RedisConnection {
  if (config instanceof Cluster || Array.isArray(config)) return createClusterClient(config as Cluster | readonly ClusterNode[], settings)
  const overrides = connectionOverrides(settings)
  if (config instanceof Redis) return config.duplicate(overrides)
  if (typeof config === 'string') return new Redis(config, overrides)
  return new Redis({ ...(config as RedisOptions), ...overrides })
}

/** How often a cluster client re-reads the slot map: the bound on noticing a migrated slot (see cluster-bus.ts). */
export const SLOTS_REFRESH_INTERVAL = 1_000

/**
 * A `Cluster` with the guarantees of one connection: no offline queue (a command while
 * the cluster is not ready fails at once), commands time out (`commandTimeout` of
 * every node), retry forever when every node is gone. The slot map is re-read every
 * second, and commands of several slots issued together go out as one pipeline per
 * node (`enableAutoPipelining`: the store's fan-out reads rely on it). The user's
 * `redisOptions` (password, TLS...) stay; a user's `Cluster` is duplicated, never closed.
 */
function createClusterClient(config: Cluster | readonly ClusterNode[], settings: RedisClientSettings): Cluster {
  const given: ClusterOptions = config instanceof Cluster ? config.options : {}
  const overrides: ClusterOptions = {
    enableOfflineQueue: false,
    enableAutoPipelining: true,
    slotsRefreshInterval: SLOTS_REFRESH_INTERVAL,
    clusterRetryStrategy: backoff,
    // Our sharded subscribers are connections of our own (cluster-bus.ts), never ioredis's.
    shardedSubscribers: false,
    // duplicate() replaces redisOptions as a whole: the user's are merged here, ours on top.
    redisOptions: { ...given.redisOptions, commandTimeout: settings.commandTimeout, autoResubscribe: false },
  }
  if (config instanceof Cluster) return config.duplicate(undefined, overrides)
  return new Cluster([...config], overrides)
}

/**
 * A subscriber connection to one node of the cluster (`host:port` as in its slot map),
 * with the cluster's `redisOptions` (password, TLS) and the guarantees of
 * `createRedisClient`: the sharded pub/sub bus keeps one per master.
 */
export function createNodeClient(cluster: Cluster, nodeKey: string, settings: RedisClientSettings): Redis {
  const colon = nodeKey.lastIndexOf(':')
  const host = nodeKey.slice(0, colon).replace(/^\[(.*)\]$/, '$1')
  const port = Number(nodeKey.slice(colon + 1))
  return new Redis({ ...cluster.options.redisOptions, host, port, ...connectionOverrides(settings) })
}

/**
 * Why Redis is unreachable, in `UNAVAILABLE` errors' `data.cause`: `AUTH` (wrong or
 * missing password), a system error code (`ECONNREFUSED`, `ENOTFOUND`, `ECONNRESET`,
 * `ETIMEDOUT`...), `TIMEOUT` (no answer in time, no error seen) or `DISCONNECTED` (a
 * call made while the connection is down; the connection's own cause was logged).
 */
export type RedisFailureCause = string

/** The last connection error of each client, until it is ready again: what `whenReady` blames. */
const lastErrors = new WeakMap<RedisConnection, Error>()

/** The cause an ioredis error points at, if it names one. */
export function causeOf(error: unknown): RedisFailureCause | undefined {
  if (!(error instanceof Error)) return undefined
  // A cluster that reached no node (ClusterAllFailedError) names the last node's error.
  const nodeError = (error as { lastNodeError?: unknown }).lastNodeError
  if (nodeError) return causeOf(nodeError)
  const code = (error as NodeJS.ErrnoException).code
  if (typeof code === 'string' && code.length > 0) return code
  if (/^(WRONGPASS|NOAUTH|NOPERM)\b/.test(error.message)) return 'AUTH'
  if (/timed out/i.test(error.message)) return 'TIMEOUT'
  // What a cluster reports when no node answers: ioredis keeps the socket's own error to itself.
  if (error.message.startsWith('Connection is closed')) return 'DISCONNECTED'
  return undefined
}

/**
 * Records a client's connection errors (for `whenReady`) and logs them: a warning
 * each time the cause changes (a wrong password and a refused port read differently
 * in the log), debug for the retries in between, so a long outage does not flood it.
 * A cluster reports its nodes' errors apart ('node error'): they count the same.
 */
export function watchConnection(redis: RedisConnection, role: string, logger: Logger, instruments: Instruments = noInstruments): void {
  let logged: RedisFailureCause | undefined
  const onError = (error: Error): void => {
    lastErrors.set(redis, error)
    instruments.redisError('connection')
    const cause = causeOf(error) ?? 'UNKNOWN'
    if (cause === logged) logger.debug?.(`redis ${role} connection error`, { cause, error })
    else logger.warn?.(`redis ${role} connection error`, { cause, error })
    logged = cause
  }
  redis.on('error', onError)
  if (isCluster(redis)) redis.on('node error', onError)
  redis.on('ready', () => {
    lastErrors.delete(redis)
    logged = undefined
  })
}

/**
 * Reports how long each command of this client takes, and each that fails, to the
 * metrics. ioredis has no per-command hook, so its `sendCommand` (every command and
 * pipeline goes through it) is wrapped on this client alone; only with metrics on.
 */
export function timeCommands(redis: RedisConnection, instruments: Instruments): void {
  const send = redis.sendCommand
  const failed = (): void => instruments.redisError('command')
  // A cluster's pipelines (auto-pipelining included) also send each command through it, once.
  redis.sendCommand = function timed(this: RedisConnection, command: Command, ...rest: unknown[]): unknown {
    const started = instruments.now()
    const done = (): void => instruments.redisCommand(instruments.now() - started)
    command.promise.then(done, () => {
      done()
      failed()
    })
    return (send as (...args: unknown[]) => unknown).call(this, command, ...rest)
  } as RedisConnection['sendCommand']
}

/**
 * Closes a connection of ours: `QUIT`, or a hard disconnect if that fails. A cluster is
 * closed only once a slot-map refresh in flight has ended: ioredis 5.11.1 schedules the
 * next periodic refresh whenever one ends, even after `quit()` (which cleared the timer
 * of the refresh already running), and that chain then repeats every second for good,
 * keeping the process alive. A portal closed right after a pause hit it about one run
 * in four, when the refresh due during the pause was still waiting for its reply.
 */
export async function closeConnection(redis: RedisConnection): Promise<void> {
  await redis.quit().catch(() => redis.disconnect())
  if (!isCluster(redis)) return
  const internals = redis as unknown as ClusterInternals
  if (internals.isRefreshing) await new Promise<void>((resolve) => redis.refreshSlotsCache(() => resolve()))
  // The refresh's own callback ran first (callbacks run in order): the timer it set is cleared here.
  internals.clearNodesRefreshInterval()
}

/** What closeConnection reaches inside an ioredis `Cluster` (5.x): not in its types. */
interface ClusterInternals {
  isRefreshing: boolean
  clearNodesRefreshInterval(): void
}

/** Resolves when the client is ready; rejects with `UNAVAILABLE` (and `data.cause`) if it is not within `timeout` ms. */
export function whenReady(redis: RedisConnection, timeout: number): Promise<void> {
  if (redis.status === 'ready') return Promise.resolve()
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      redis.off('ready', onReady)
      const last = lastErrors.get(redis)
      const cause = causeOf(last) ?? 'TIMEOUT'
      reject(new MeshError(ErrorCode.UNAVAILABLE, `Redis was not reachable within ${timeout} ms (${cause})`, { data: { cause }, cause: last }))
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
 * `UNAVAILABLE` with `data.cause`. A reply error from Redis itself (wrong type,
 * script error) is a bug, reported as `INTERNAL_ERROR`; one about authentication
 * (`NOAUTH`, `WRONGPASS`) is configuration, so `UNAVAILABLE` with cause `AUTH`.
 */
export async function redisCall<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call()
  } catch (error) {
    if (error instanceof MeshError) throw error
    const cause = causeOf(error)
    const name = (error as Error | undefined)?.name
    // The message and data reach clients when a handler lets the error through: Redis's own
    // text (addresses, key names, script source) stays in `cause`, on the server.
    if (name === 'ReplyError' && cause !== 'AUTH') throw new MeshError(ErrorCode.INTERNAL_ERROR, INTERNAL_ERROR_MESSAGE, { cause: error })
    throw new MeshError(ErrorCode.UNAVAILABLE, 'The store is unavailable', { data: { cause: cause ?? 'DISCONNECTED' }, cause: error })
  }
}
