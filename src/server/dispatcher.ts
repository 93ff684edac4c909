import { nanoid } from 'nanoid'
import { requireKnownKeys, requirePositive, type OptionKeys } from '../shared/options.js'
import { connectionIdList, requireEventName, requireRoomName, userIdList } from './call-arguments.js'
import { channelMessage } from './channel-message.js'
import type { Logger } from './logger.js'
import { guardLogger } from './logger.js'
import { Cluster } from './managers/cluster.js'
import { ServerHooks } from './server-hooks.js'
import { Delivery } from './managers/delivery.js'
import { LocalIndex } from './managers/local-index.js'
import { Redelivery, resolveSyncOptions, type SyncOptions } from './managers/redelivery.js'
import { Keys } from './store/keys.js'
import { ClusterBus } from './store/cluster-bus.js'
import { RedisBus } from './store/redis-bus.js'
import { createRedisClient, isCluster, requireRedisConfig, watchConnection, whenReady, type RedisConfig } from './store/redis-client.js'
import type { MeshBus } from './store/types.js'
import { RedisStore } from './store/redis-store.js'
import type { ApiShape, ChannelMessage, ChannelName, EventArgs, EventName, EventPayload, UntypedApi } from '../shared/api.js'
import type { RoomDispatchArgs } from './typed-api.js'

export interface DispatcherOptions {
  /** The servers' namespace. @default 'meshkit' */
  namespace?: string
  /** Keep messages for users with no connection (the servers' `sync`, which redelivers them). */
  sync?: SyncOptions
  /** Milliseconds a Redis command may take before it fails with `UNAVAILABLE`. @default 5000 */
  redisTimeout?: number
  logger?: Logger
}

/** Every Dispatcher option, so that a misspelt one throws. */
const dispatcherOptionKeys: OptionKeys<DispatcherOptions> = { namespace: true, sync: true, redisTimeout: true, logger: true }

const noLocalConnections = new Map<string, never>()

/**
 * Sends from any process (a worker, an API server) to connections on any instance:
 * user-addressed messages with the same recipients as `server.send`, room broadcasts,
 * sends to connection ids and channel writes. It holds no connections and no routing state: each
 * call publishes to the topics the instances listen on. Messages from one dispatcher
 * arrive in the order sent. `Api` types its events and channels as the servers' do
 * (`new Dispatcher<ChatApi>(redis)`). `redis` takes what the servers' option takes,
 * Redis Cluster startup nodes included (it then publishes with `SPUBLISH`).
 */
export class Dispatcher<Api extends ApiShape = UntypedApi> {
  private readonly redis
  private readonly store: RedisStore
  private readonly bus: MeshBus
  private readonly delivery: Delivery
  private readonly timeout: number
  private closing: Promise<void> | undefined

  constructor(redis: RedisConfig, options: DispatcherOptions = {}) {
    requireKnownKeys(options, dispatcherOptionKeys)
    requireRedisConfig('redis', redis)
    const timeout = options.redisTimeout ?? 5_000
    requirePositive('redisTimeout', timeout)
    this.timeout = timeout
    const sync = resolveSyncOptions(options.sync)
    const logger = guardLogger(options.logger)
    const keys = new Keys(options.namespace ?? 'meshkit')
    this.redis = createRedisClient(redis, { commandTimeout: timeout })
    watchConnection(this.redis, 'dispatcher', logger)
    this.store = new RedisStore(this.redis, keys)
    // Publishing only: the dispatcher never subscribes, so one connection serves both roles
    // (on a cluster: SPUBLISH on the command client, and no shard subscriber is ever opened).
    this.bus = isCluster(this.redis) ? new ClusterBus(this.redis, { readyTimeout: timeout, commandTimeout: timeout, logger }) : new RedisBus(this.redis, this.redis, timeout)
    const id = `dispatcher-${nanoid()}`
    const ignore = (): void => {}
    const cluster = new Cluster(this.bus, keys, id, { deliver: ignore, deliverAll: ignore, deliverUsers: ignore, deliverRoom: ignore, deliverUser: ignore, notice: ignore, inspect: ignore, inspected: ignore }, logger)
    const redelivery = new Redelivery(this.store, sync, logger)
    // No connections here, so the indexes stay empty and subscribe nothing: deliveries only publish.
    const noMembers = new LocalIndex(undefined, logger)
    this.delivery = new Delivery(id, noLocalConnections, cluster, true, noMembers, { required: false, redelivery, index: noMembers }, new ServerHooks(logger))
  }

  /**
   * Sends to the members of a room on every instance, except the excluded connection
   * ids: one publish to the room's topic, no read. Resolves once Redis took it.
   */
  broadcastRoom<E extends EventName<Api>>(room: string, event: E, ...args: RoomDispatchArgs<Api, E>): Promise<void>
  async broadcastRoom(room: string, event: string, payload?: unknown, exclude: readonly string[] = []): Promise<void> {
    requireRoomName(room)
    requireEventName(event)
    const excluded = connectionIdList(exclude, 'exclude')
    await whenReady(this.redis, this.timeout)
    await this.delivery.broadcastRoom(room, event, payload, excluded)
  }

  /**
   * Sends to connections by id, wherever they are: one publish per owning instance
   * (the ids name it), no read. Unknown ids are skipped by their would-be owner.
   */
  sendTo<E extends EventName<Api>>(connectionIds: readonly string[], event: E, ...payload: EventArgs<Api, E>): Promise<void>
  async sendTo(connectionIds: readonly string[], event: string, payload?: unknown): Promise<void> {
    const ids = connectionIdList(connectionIds, 'connectionIds')
    requireEventName(event)
    await whenReady(this.redis, this.timeout)
    await this.delivery.sendTo(ids, event, payload)
  }

  /**
   * Sends to every connection of these users (`['*']`: everyone the servers count as
   * reachable), except the excluded users. Resolves once the message is handed to Redis.
   */
  dispatch<E extends EventName<Api>>(event: E, payload: EventPayload<Api, E>, userIds: readonly (string | number)[], exclude?: readonly (string | number)[]): Promise<void>
  async dispatch(event: string, payload: unknown, userIds: readonly (string | number)[], exclude: readonly (string | number)[] = []): Promise<void> {
    // Checked before waiting for Redis: a wrong call fails the same way whether Redis is up or not.
    const users = userIdList(userIds, 'userIds')
    const excluded = userIdList(exclude, 'exclude')
    requireEventName(event)
    // Waits (bounded) for Redis while it connects or reconnects, instead of failing at once.
    await whenReady(this.redis, this.timeout)
    await this.delivery.sendToUsers(event, payload, users, excluded)
  }

  /**
   * Publishes a message to a channel's subscribers on every instance and keeps the
   * newest `historyLimit` in history (0: none), exactly as `server.writeChannel`:
   * the same atomic store step, so offsets stay contiguous across every writer and
   * resuming clients get these messages from history. Resolves with the offset.
   */
  writeChannel<C extends ChannelName<Api>>(channel: C, message: ChannelMessage<Api, C>, historyLimit?: number): Promise<number>
  async writeChannel(channel: string, message: unknown, historyLimit = 0): Promise<number> {
    const bytes = channelMessage(channel, message, historyLimit)
    await whenReady(this.redis, this.timeout)
    return this.store.writeChannel(channel, bytes, historyLimit)
  }

  /** Closes the Redis connection, so the process can exit. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.store.close()
    return this.closing
  }
}
