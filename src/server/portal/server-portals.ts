import type { Authentication } from '../authentication.js'
import type { CommandRegistry } from '../command-registry.js'
import type { InstanceMonitor } from '../managers/instance-monitor.js'
import type { Connection } from '../connection.js'
import type { Logger } from '../logger.js'
import type { MessageRouter } from '../message-router.js'
import type { SocketLifecycle } from '../socket-lifecycle.js'
import type { Keys } from '../store/keys.js'
import { redisCall, type RedisConnection } from '../store/redis-client.js'
import type { MeshBus } from '../store/types.js'
import { CommandForwarder } from './command-forwarder.js'
import { EventWriter } from './event-writer.js'
import type { PortalGroupView } from '../cluster-view.js'
import { PortalBacklog } from './portal-backlog.js'
import { PortalRegistryView } from './portal-registry-view.js'
import type { ResolvedServerPortalOptions } from './server-portal-options.js'

/** What the portal side of a server needs from it. */
export interface ServerPortalParts {
  redis: RedisConnection
  bus: MeshBus
  keys: Keys
  instanceId: string
  logger: Logger
}

/** The server's hooks the portal side attaches to. */
export interface PortalHooks {
  sockets: SocketLifecycle
  messages: MessageRouter
  authentication: Authentication
  registry: CommandRegistry
  monitor: InstanceMonitor
}

/**
 * Everything a server does for portals, built only when `portal.enabled`: writes the
 * portal config, appends its connections' events to the event streams, forwards
 * commands no local handler owns, and reads the registry of live portals to know
 * where. A server without portals builds none of it and pays nothing.
 */
export class ServerPortals {
  private readonly writer: EventWriter
  private readonly view: PortalRegistryView
  private readonly forwarder: CommandForwarder
  private readonly backlogReader: PortalBacklog
  private readonly replyTopic: string
  private configWritten = false
  private configWrite: Promise<void> | undefined

  constructor(
    private readonly parts: ServerPortalParts,
    private readonly options: ResolvedServerPortalOptions,
  ) {
    const { redis, keys, instanceId, logger } = parts
    this.writer = new EventWriter(redis, keys, instanceId, options, logger)
    this.view = new PortalRegistryView(redis, keys, logger, () => this.refreshed())
    this.forwarder = new CommandForwarder(redis, keys, instanceId, this.view, options.commandTimeout, logger)
    this.replyTopic = keys.portalReplies(instanceId)
    this.backlogReader = new PortalBacklog(redis, keys, options.partitions)
  }

  /** Events lost before any portal group read them (backlog full, Redis away); see `server.stats`. */
  get eventsDropped(): number {
    return this.writer.dropped
  }

  /**
   * Events of the event streams not yet delivered to each portal group, summed over
   * the partitions (capped at what the streams still hold): the one definition that
   * both the `portal_backlog` metric and `inspect()` report.
   */
  backlog(): Promise<Map<string, number>> {
    return this.backlogReader.byGroup()
  }

  /** Hooks into the server: connections, disconnections, authentications, messages, unknown commands. */
  attach(hooks: PortalHooks): void {
    hooks.sockets.onConnection((connection) => this.writer.connected(connection))
    hooks.sockets.onDisconnection((connection) => this.disconnected(connection))
    hooks.messages.forwarder = (ctx) => this.writer.message(ctx.connection, ctx.type, ctx.data)
    hooks.authentication.authenticated = (connection) => this.writer.authenticated(connection)
    hooks.registry.remote = this.forwarder
    hooks.monitor.onInstanceCleaned((instanceId, connectionIds) => this.writer.instanceDied(instanceId, connectionIds))
  }

  /**
   * Listens for replies, writes the config and reads the registry once. Rejects
   * only if the reply topic could not be subscribed (Redis away: the bus subscribes
   * it when Redis is back); the config and the registry are retried every second.
   */
  async start(): Promise<void> {
    const listening = Promise.all([
      this.parts.bus.subscribe(this.replyTopic, this.forwarder.onReply),
      this.parts.bus.subscribe(this.parts.keys.portalRegistryChanges, this.view.onChange),
    ])
    await this.view.start()
    await Promise.all([listening, this.configWrite])
  }

  /** After the sockets closed (their disconnections written): stops reading, fails waiting calls, lets the appends finish. */
  async close(): Promise<void> {
    await this.view.stop()
    this.forwarder.close()
    await Promise.allSettled([
      this.parts.bus.unsubscribe(this.replyTopic, this.forwarder.onReply),
      this.parts.bus.unsubscribe(this.parts.keys.portalRegistryChanges, this.view.onChange),
      this.writer.settled(),
    ])
  }

  /**
   * The portal groups for `server.inspect()`: those with a live portal (the registry,
   * read afresh) or a consumer group on the event streams (a group whose portals all
   * died still has events waiting), with their backlogs. Rejects with `UNAVAILABLE`
   * when Redis is away.
   */
  async groups(): Promise<PortalGroupView[]> {
    const [backlog] = await Promise.all([this.backlog(), this.view.refresh()])
    const live = this.view.liveGroups
    const names = [...new Set([...live.keys(), ...backlog.keys()])].sort()
    return names.map((group) => ({ group, portals: live.get(group) ?? 0, backlog: backlog.get(group) ?? 0 }))
  }

  private disconnected(connection: Connection): void {
    this.forwarder.dropConnection(connection)
    this.writer.disconnected(connection)
  }

  private refreshed(): void {
    this.forwarder.recheck()
    if (!this.configWritten) this.configWrite ??= this.writeConfig().finally(() => (this.configWrite = undefined))
  }

  /**
   * What every portal reads at start and on every heartbeat. Servers of a namespace
   * should agree; one that does not warns, and the last to start wins.
   */
  private async writeConfig(): Promise<void> {
    this.configWritten = true
    const { redis, keys, logger } = this.parts
    const wanted = { partitions: String(this.options.partitions), distributeLoad: this.options.distributeLoad ? '1' : '0' }
    try {
      const found = await redisCall(() => redis.hgetall(keys.portalConfig))
      const differs = Object.keys(found).length > 0 && (found.partitions !== wanted.partitions || found.distributeLoad !== wanted.distributeLoad)
      if (differs) logger.warn?.('the portal config in Redis differs from this server\'s portal options; overwriting it', { found, options: wanted })
      await redisCall(() => redis.hset(keys.portalConfig, wanted))
    } catch (error) {
      this.configWritten = false
      logger.debug?.('could not write the portal config; retrying after the next registry read', { error })
    }
  }
}
