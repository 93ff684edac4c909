import { createServer, type Server as HttpServer } from 'node:http'
import type { Server as HttpsServer } from 'node:https'
import { CommandRegistry } from './command-registry.js'
import type { Connection } from './connection.js'
import { ConnectionLimits } from './connection-limits.js'
import { MessageRouter } from './message-router.js'
import { Heartbeat } from './heartbeat.js'
import { listening } from './http-endpoint.js'
import { HttpRoutes } from './http-routes.js'
import { Drain } from './drain.js'
import { Readiness } from './readiness.js'
import { noInstruments } from './instruments.js'
import { PrometheusMetrics } from './prometheus-metrics.js'
import { guardLogger, type Logger } from './logger.js'
import { mergeOptions } from '../shared/options.js'
import { Authentication, authenticationDefaults } from './authentication.js'
import { registerBuiltinCommands } from './builtin-commands.js'
import { Exposure } from './exposure.js'
import { ChannelManager } from './managers/channel-manager.js'
import { ClusterInspector } from './managers/cluster-inspector.js'
import { Cluster } from './managers/cluster.js'
import { ConnectionManager } from './managers/connection-manager.js'
import { Delivery } from './managers/delivery.js'
import { InstanceMonitor } from './managers/instance-monitor.js'
import { LocalIndex } from './managers/local-index.js'
import { Redelivery } from './managers/redelivery.js'
import { Ownership } from './managers/ownership.js'
import { RoomManager } from './managers/room-manager.js'
import { PresenceManager } from './managers/presence-manager.js'
import type { MeshServer } from './mesh-server.js'
import type { ResolvedServerOptions } from './options.js'
import { OriginPolicy } from './origin-policy.js'
import { SocketLifecycle } from './socket-lifecycle.js'
import { ServerPortals } from './portal/server-portals.js'
import { ServerHooks } from './server-hooks.js'
import { createBackend } from './store/backend.js'
import type { MeshBus, MeshStore } from './store/types.js'

/**
 * The internal parts of a `MeshServer`, wired to each other, started and stopped
 * together. Apart from the server's file so that file holds the public API; the server
 * keeps them in one private field, so none of their types reach its declaration.
 */
export class ServerParts {
  readonly store: MeshStore
  readonly bus: MeshBus
  readonly connectionManager: ConnectionManager
  readonly logger: Logger
  readonly http: HttpServer | HttpsServer
  /** The plain-HTTP paths meshkit answers (`/metrics`): on its own HTTP server, or mounted through `httpHandler()`. */
  readonly routes: HttpRoutes
  private readonly ownsHttp: boolean
  readonly sockets: SocketLifecycle
  readonly registry: CommandRegistry
  readonly messages: MessageRouter
  private readonly heartbeat: Heartbeat
  private readonly cluster: Cluster
  readonly delivery: Delivery
  readonly rooms: RoomManager
  readonly channels: ChannelManager
  readonly presence: PresenceManager
  readonly roomExposure = new Exposure('room')
  readonly authentication: Authentication
  private readonly monitor: InstanceMonitor
  readonly hooks: ServerHooks
  /** Only with `metrics` on. */
  readonly metrics: PrometheusMetrics | undefined
  readonly inspector: ClusterInspector
  /** Only with `portal.enabled`. */
  readonly portals: ServerPortals | undefined
  /** Connections that received their hello: the ones events, pings and lookups reach. Only `sockets` writes it. */
  readonly live = new Map<string, Connection>()
  /** Settles once the HTTP server listens and the store is joined; rejects with the first failure. */
  readonly started: Promise<unknown>
  readonly health: Readiness

  /** `server` is what command and message contexts hold; `instanceId` is the server's. */
  constructor(options: ResolvedServerOptions, private readonly instanceId: string, server: MeshServer) {
    // Validated before anything below opens a connection (Redis) that a throw would leak.
    const origins = new OriginPolicy(options.allowedOrigins)
    this.logger = guardLogger(options.logger)
    this.hooks = new ServerHooks(this.logger)
    // Before the backend too: a missing prom-client or a taken registry throws before Redis is dialled.
    this.metrics = options.metrics === false ? undefined : new PrometheusMetrics(options.metrics, this.logger)
    const instruments = this.metrics ?? noInstruments
    const backend = createBackend(options, this.logger, instruments)
    this.store = backend.store
    this.bus = backend.bus
    this.cluster = new Cluster(this.bus, backend.keys, this.instanceId, {
      deliver: (ids, frame) => this.delivery.deliverLocal(ids, frame),
      deliverAll: (excluded, frame) => this.delivery.deliverAllLocal(excluded, frame),
      deliverUsers: (excludedUsers, frame) => this.delivery.deliverUsersFromBus(excludedUsers, frame),
      deliverRoom: (room, excluded, frame) => this.delivery.deliverRoomFromBus(room, excluded, frame),
      deliverUser: (userId, frame) => this.delivery.deliverUserFromBus(userId, frame),
      notice: (notice) => ownership.apply(notice),
      inspect: (limit) => this.inspector.describe(limit),
      inspected: (origin, requestId, part) => this.inspector.receive(origin, requestId, part),
    }, this.logger, options.redisTimeout)
    const { keys, shared } = backend
    const handler = this.cluster.onMessage
    // One instance alone (memory store) has nobody to hear a topic. User topics are heard
    // with sync too: this server's own named sends then route through the keep step's
    // read, but a Dispatcher without sync publishes to them.
    const roomIndex = new LocalIndex(shared ? { bus: this.bus, topicOf: (room) => keys.roomTopic(room), handler } : undefined, this.logger)
    const userIndex = new LocalIndex(shared ? { bus: this.bus, topicOf: (user) => keys.userTopic(user), handler } : undefined, this.logger)
    // Only a networked bus can have messages on their way here (the memory bus has no flush).
    const flushBus = this.bus.flush ? () => this.bus.flush!() : undefined
    const ownership = new Ownership(this.instanceId, this.live, this.store, this.cluster, (connection) => this.monitor.registerNow(connection), roomIndex, flushBus)
    const redelivery = new Redelivery(this.store, options.sync, this.logger)
    const authOptions = mergeOptions(authenticationDefaults, options.authentication ?? {})
    this.authentication = new Authentication(authOptions, options.authenticate, this.store, redelivery, this.logger, options.exposeErrors, userIndex)
    this.delivery = new Delivery(this.instanceId, this.live, this.cluster, shared, roomIndex, { required: authOptions.required, redelivery, index: userIndex }, this.hooks)
    this.rooms = new RoomManager(this.store, ownership)
    this.connectionManager = new ConnectionManager(this.store, ownership)
    this.monitor = new InstanceMonitor(this.instanceId, this.live, this.store, options.instanceTtl, authOptions.storeConnectedUsers, redelivery, this.logger, (connection) =>
      ownership.reloadRooms(connection),
    )
    this.presence = new PresenceManager(this.store, options.maxPresenceBytes, options.presenceLeaveDelay, (room, event) => this.delivery.broadcastRoom(room, 'presence', event), this.logger)
    this.monitor.onInstanceCleaned((_instanceId, connectionIds) => void this.presence.instanceCleaned(connectionIds))
    this.channels = new ChannelManager(this.store, this.bus, backend.keys, this.logger, options)
    this.channels.instruments = instruments
    this.bus.onReconnect?.(() => {
      this.monitor.busReconnected()
      void this.channels.catchUp()
    })
    this.registry = new CommandRegistry(server, options.maxPendingRequests, (connection, name) => this.authentication.gate(connection, name), {
      exposeErrors: options.exposeErrors,
      logger: this.logger,
      onFault: (error, connection, command) => this.hooks.error(error, { command, connection }),
    }, options.schemas)
    this.registry.instruments = instruments
    registerBuiltinCommands(this.registry, { channels: this.channels, rooms: this.rooms, roomExposure: this.roomExposure, authentication: this.authentication, redelivery, limits: new ConnectionLimits(options), presence: this.presence })
    this.messages = new MessageRouter({
      server,
      middleware: () => this.registry.globalMiddleware,
      mayRun: (connection) => !this.authentication.required || connection.isAuthenticated,
      logger: this.logger,
      onFault: (error, connection, messageType) => this.hooks.error(error, { messageType, connection }),
      maxWaiting: options.maxPendingRequests,
      schemas: options.schemas,
      exposeErrors: options.exposeErrors,
    })
    this.messages.instruments = instruments
    this.heartbeat = new Heartbeat(this.live, options)
    this.ownsHttp = !options.server
    this.routes = new HttpRoutes(this.logger)
    this.http = options.server ?? createServer(this.routes.listener)
    this.health = new Readiness({ listening: () => this.http.listening, storeReachable: backend.reachable })
    if (options.healthChecks) this.health.addRoutes(this.routes)
    this.sockets = new SocketLifecycle(options, {
      instanceId: this.instanceId,
      live: this.live,
      roomIndex,
      userIndex,
      monitor: this.monitor,
      authentication: this.authentication,
      channels: this.channels,
      registry: this.registry,
      messages: this.messages,
      heartbeat: this.heartbeat,
      hooks: this.hooks,
      logger: this.logger,
      ownsHttp: this.ownsHttp,
      http: this.http,
      origins,
      attachTimeout: authOptions.timeout,
      instruments,
    })
    // Checked at construction: portals need `redis`, so the backend has a Redis connection.
    if (options.portal && backend.redis) {
      this.portals = new ServerPortals({ redis: backend.redis, bus: this.bus, keys, instanceId: this.instanceId, logger: this.logger }, options.portal)
      this.portals.attach({ sockets: this.sockets, messages: this.messages, authentication: this.authentication, registry: this.registry, monitor: this.monitor })
    }
    if (this.metrics) {
      this.metrics.read({
        connections: () => this.live.size,
        redeliveryQueue: () => redelivery.heldEvents,
        portalBacklog: () => this.portals?.backlog(),
        knowsCommand: (name) => this.registry.knows(name),
      })
      this.routes.add('/metrics', this.metrics.serve)
    }
    const portals = this.portals
    this.inspector = new ClusterInspector({
      instanceId: this.instanceId,
      store: this.store,
      cluster: shared ? this.cluster : undefined,
      local: () => ({ connections: this.live.size, rooms: roomIndex.counts(), channels: this.channels.subscriberCounts() }),
      tracksUsers: authOptions.storeConnectedUsers,
      portalGroups: portals && (() => portals.groups()),
      timeout: options.redisTimeout,
      logger: this.logger,
    })
    this.sockets.onDisconnection((connection) => this.presence.closed(connection))
    // After the portal side: both take the authentication seam, and the hooks chain onto it.
    this.hooks.attach(this.sockets, this.authentication)
    // A listening server can still fail (accept errors); without a listener that would crash the process.
    if (this.ownsHttp) this.http.on('error', (error) => this.logger.error?.('http server error', { error }))
    this.http.on('upgrade', this.sockets.onUpgrade)
    const listened = listening(this.http, this.ownsHttp ? () => this.http.listen(options.port, options.host) : undefined)
    // Joining starts even when Redis is unreachable: the monitor's timers and the bus's
    // replayed subscriptions then finish the job once it is back.
    const join = (): Promise<unknown> => Promise.all([this.monitor.start(), this.cluster.start(), this.portals?.start()])
    const joined = backend.connected().then(join, (error: unknown) => {
      join().catch(() => {})
      throw error
    })
    this.started = Promise.all([listened, joined])
    const settled = (): void => this.health.joined()
    joined.then(settled, settled)
    // ready() reports failures; without a caller they must not become unhandled rejections.
    this.started.catch((error: unknown) => this.logger.error?.('meshkit server failed to start', { error }))
    this.heartbeat.start()
  }

  /** Drains for `drain` milliseconds when above 0, then stops every part; called once. */
  async close(drain: number): Promise<void> {
    if (drain > 0) {
      this.health.draining()
      await new Drain(this.sockets, this.logger).run(drain)
    }
    this.health.closed()
    this.heartbeat.stop()
    // The upgrade listener stays until the end, refusing with 503: on a server of the
    // user's, an upgrade nobody listens for would reach its request handler (a page's 200).
    await this.sockets.close()
    if (this.ownsHttp && this.http.listening) {
      await new Promise<void>((resolve) => {
        this.http.close(() => resolve())
        this.http.closeAllConnections()
      })
    }
    await this.started.catch(() => {})
    // After the sockets: their disconnections are written before the portal side stops,
    // and their presence leaves (delayed ones too) before the store closes.
    await this.presence.close()
    await this.portals?.close()
    await this.cluster.stop()
    await this.monitor.stop()
    await Promise.allSettled([this.bus.close(), this.store.close()])
    this.http.off('upgrade', this.sockets.onUpgrade)
    // Last: the final scrape may still read this server; afterwards a new server may register in the same registry.
    this.metrics?.unregister()
  }
}
