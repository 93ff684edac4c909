import type { Redis } from 'ioredis'
import type { Logger } from '../logger.js'
import type { ResolvedServerOptions } from '../options.js'
import { Keys } from './keys.js'
import { MemoryBus } from './memory-bus.js'
import { MemoryStore } from './memory-store.js'
import { ClusterBus } from './cluster-bus.js'
import { RedisBus } from './redis-bus.js'
import { createRedisClient, isCluster, timeCommands, watchConnection, whenReady, type RedisConnection } from './redis-client.js'
import { RedisStore } from './redis-store.js'
import type { MeshBus, MeshStore } from './types.js'
import { noInstruments, type Instruments } from '../instruments.js'

/** The store and bus a server runs on, chosen from its options. */
export interface Backend {
  readonly keys: Keys
  readonly store: MeshStore
  readonly bus: MeshBus
  /** Whether other instances can share this state; an in-process bus has no one else to tell. */
  readonly shared: boolean
  /** The Redis command connection (one Redis or a Cluster), when there is one (portals append and read on it). */
  readonly redis?: RedisConnection
  /** Resolves once the store can be used; rejects with `UNAVAILABLE` if Redis is not reachable in time. */
  connected(): Promise<void>
  /** Whether the store's connections are ready now (readiness asks on every probe); the memory store always is. */
  reachable(): boolean
}

/** Redis when a `redis` option is given (one connection for commands, one for pub/sub), memory otherwise. */
export function createBackend(options: ResolvedServerOptions, logger: Logger, instruments: Instruments = noInstruments): Backend {
  const keys = new Keys(options.namespace)
  const redisConfig = options.redis ?? options.redisOptions
  if (redisConfig === undefined) {
    const bus = options.bus ?? new MemoryBus()
    return {
      keys,
      store: options.store ?? new MemoryStore({ bus, keys }),
      bus,
      shared: options.bus !== undefined,
      connected: async () => {},
      reachable: () => true,
    }
  }
  const settings = { commandTimeout: options.redisTimeout }
  const commands = createRedisClient(redisConfig, settings)
  // Connection errors are retried by ioredis and surface as UNAVAILABLE on the calls that need Redis.
  watchConnection(commands, 'commands', logger, instruments)
  // The subscriber's commands are SUBSCRIBEs: the store's latency is the command connection's.
  if (instruments !== noInstruments) timeCommands(commands, instruments)
  const store = options.store ?? new RedisStore(commands, keys)
  if (isCluster(commands)) {
    const bus = new ClusterBus(commands, { readyTimeout: options.redisTimeout, commandTimeout: options.redisTimeout, logger, instruments })
    return {
      keys,
      store,
      bus: options.bus ?? bus,
      shared: true,
      redis: commands,
      // The shard subscribers open as topics are subscribed (each waits for its own).
      connected: () => whenReady(commands, options.redisTimeout),
      reachable: () => commands.status === 'ready' && bus.ready(),
    }
  }
  const subscriber = createRedisClient(redisConfig, settings) as Redis
  watchConnection(subscriber, 'pub/sub', logger, instruments)
  return {
    keys,
    store,
    bus: options.bus ?? new RedisBus(commands, subscriber, options.redisTimeout, instruments),
    shared: true,
    redis: commands,
    connected: async () => {
      await Promise.all([whenReady(commands, options.redisTimeout), whenReady(subscriber, options.redisTimeout)])
    },
    // Both: without the subscriber this instance would miss every delivery from the others.
    reachable: () => commands.status === 'ready' && subscriber.status === 'ready',
  }
}
