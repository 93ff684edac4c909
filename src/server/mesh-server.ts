import { createServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http'
import type { Server as HttpsServer } from 'node:https'
import { nanoid } from 'nanoid'
import { CommandRegistry } from './command-registry.js'
import type { Connection } from './connection.js'
import { ConnectionLimits } from './connection-limits.js'
import type { CommandHandler, MeshContext, MessageContext, MessageHandler, Middleware } from './context.js'
import type { ApiShape, ChannelMessage, ChannelName, CommandName, EventArgs, EventName, EventPayload, IfUntyped, MessageType, UntypedApi } from '../shared/api.js'
import type { FieldsOf, MiddlewareList, NoFields, TypedCommandHandler, TypedMessageHandler } from './typed-api.js'
import { MessageRouter, type MessageStats } from './message-router.js'
import { Heartbeat } from './heartbeat.js'
import { userIdList } from './call-arguments.js'
import { listening } from './http-endpoint.js'
import { HttpRoutes } from './http-routes.js'
import { Drain, resolveCloseOptions, type CloseOptions } from './drain.js'
import { Readiness, type ReadinessState } from './readiness.js'
import { noInstruments } from './instruments.js'
import { PrometheusMetrics, type MetricsRegistry } from './prometheus-metrics.js'
import { guardLogger, type Logger } from './logger.js'
import { mergeOptions } from '../shared/options.js'
import { Authentication, authenticationDefaults, type AuthenticateHandler } from './authentication.js'
import { registerBuiltinCommands } from './builtin-commands.js'
import { Exposure, type Guard } from './exposure.js'
import { ChannelManager } from './managers/channel-manager.js'
import { ClusterInspector } from './managers/cluster-inspector.js'
import type { ClusterView, InspectOptions } from './cluster-view.js'
import { createAdminHandler, type AdminHandler, type AdminHandlerOptions } from './admin-page.js'
import { Cluster } from './managers/cluster.js'
import { ConnectionManager } from './managers/connection-manager.js'
import { Delivery } from './managers/delivery.js'
import { InstanceMonitor } from './managers/instance-monitor.js'
import { LocalIndex } from './managers/local-index.js'
import { Redelivery } from './managers/redelivery.js'
import { Ownership, idsOf, type ConnectionRef } from './managers/ownership.js'
import { RoomManager } from './managers/room-manager.js'
import { PresenceManager, type PresenceMember } from './managers/presence-manager.js'
import { resolveServerOptions, type MeshServerOptions, type ResolvedServerOptions } from './options.js'
import { OriginPolicy } from './origin-policy.js'
import { SocketLifecycle, type ConnectionListener } from './socket-lifecycle.js'
import { ServerPortals } from './portal/server-portals.js'
import { ServerHooks, type MeshHooks } from './server-hooks.js'
import { createBackend } from './store/backend.js'
import type { MeshBus, MeshStore } from './store/types.js'

export type { ConnectionListener } from './socket-lifecycle.js'

/** Options of `server.exposeRoom`. */
export interface ExposeRoomOptions {
  /** Members may hold a presence state, announced by `presence` events. @default false */
  presence?: boolean
}

/** `server.stats`. */
export interface ServerStats extends MessageStats {
  /** Portal events lost: pushed out of a full backlog before some portal group read them, or not written (Redis away). */
  portalEventsDropped: number
}

/**
 * A meshkit server: accepts WebSocket connections, answers their commands through
 * middleware and handlers, and delivers events to connections on any instance
 * sharing its store.
 *
 * `Api` types its commands, events, client messages and channels (`new MeshServer<ChatApi>()`,
 * or inferred from `options.api`); `Fields` are the context fields its global middleware
 * adds (see `addMiddleware`). Without them everything is untyped, as `unknown`.
 */
export class MeshServer<Api extends ApiShape = UntypedApi, Fields extends object = NoFields> {
  /**
   * This instance's id, unique among the instances sharing a store; it prefixes its
   * connections' ids (`<instanceId>.<random>`), so deliveries route them without asking
   * the store. 72 random bits: a million instances ever sharing a namespace collide
   * with odds of about one in ten billion.
   */
  readonly instanceId = nanoid(12)
  readonly store: MeshStore
  readonly bus: MeshBus
  /** Metadata of connections on any instance. */
  readonly connectionManager: ConnectionManager
  private readonly options: ResolvedServerOptions
  private readonly logger: Logger
  private readonly http: HttpServer | HttpsServer
  /** The plain-HTTP paths meshkit answers (`/metrics`): on its own HTTP server, or mounted through `httpHandler()`. */
  private readonly routes: HttpRoutes
  private readonly ownsHttp: boolean
  private readonly sockets: SocketLifecycle
  private readonly registry: CommandRegistry
  private readonly messages: MessageRouter
  private readonly heartbeat: Heartbeat
  private readonly cluster: Cluster
  private readonly delivery: Delivery
  private readonly rooms: RoomManager
  private readonly channels: ChannelManager
  private readonly presence: PresenceManager
  private readonly roomExposure = new Exposure('room')
  private readonly authentication: Authentication
  private readonly monitor: InstanceMonitor
  private readonly hooks: ServerHooks
  /** Only with `metrics` on. */
  private readonly metrics: PrometheusMetrics | undefined
  private readonly inspector: ClusterInspector
  /** Only with `portal.enabled`. */
  private readonly portals: ServerPortals | undefined
  /** Connections that received their hello: the ones events, pings and lookups reach. Only `sockets` writes it. */
  private readonly live = new Map<string, Connection>()
  private readonly started: Promise<unknown>
  private readonly health: Readiness
  private closing: Promise<void> | undefined

  constructor(options: MeshServerOptions<Api> = {}) {
    this.options = resolveServerOptions(options)
    // Validated before anything below opens a connection (Redis) that a throw would leak.
    const origins = new OriginPolicy(this.options.allowedOrigins)
    this.logger = guardLogger(this.options.logger)
    this.hooks = new ServerHooks(this.logger)
    // Before the backend too: a missing prom-client or a taken registry throws before Redis is dialled.
    this.metrics = this.options.metrics === false ? undefined : new PrometheusMetrics(this.options.metrics, this.logger)
    const instruments = this.metrics ?? noInstruments
    const backend = createBackend(this.options, this.logger, instruments)
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
    }, this.logger, this.options.redisTimeout)
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
    const redelivery = new Redelivery(this.store, this.options.sync, this.logger)
    const authOptions = mergeOptions(authenticationDefaults, this.options.authentication ?? {})
    this.authentication = new Authentication(authOptions, this.options.authenticate, this.store, redelivery, this.logger, this.options.exposeErrors, userIndex)
    this.delivery = new Delivery(this.instanceId, this.live, this.cluster, shared, roomIndex, { required: authOptions.required, redelivery, index: userIndex }, this.hooks)
    this.rooms = new RoomManager(this.store, ownership)
    this.connectionManager = new ConnectionManager(this.store, ownership)
    this.monitor = new InstanceMonitor(this.instanceId, this.live, this.store, this.options.instanceTtl, authOptions.storeConnectedUsers, redelivery, this.logger, (connection) =>
      ownership.reloadRooms(connection),
    )
    this.bus.onReconnect?.(() => this.monitor.busReconnected())
    this.presence = new PresenceManager(this.store, this.options.maxPresenceBytes, this.options.presenceLeaveDelay, (room, event) => this.delivery.broadcastRoom(room, 'presence', event), this.logger)
    this.monitor.onInstanceCleaned((_instanceId, connectionIds) => void this.presence.instanceCleaned(connectionIds))
    this.channels = new ChannelManager(this.store, this.bus, backend.keys, this.logger, this.options)
    this.channels.instruments = instruments
    // Contexts hold the server as their handlers' signatures typed it; the registry and router serve every API alike.
    const untyped = this as unknown as MeshServer
    this.registry = new CommandRegistry(untyped, this.options.maxPendingRequests, (connection, name) => this.authentication.gate(connection, name), {
      exposeErrors: this.options.exposeErrors,
      logger: this.logger,
      onFault: (error, connection, command) => this.hooks.error(error, { command, connection }),
    }, this.options.schemas)
    this.registry.instruments = instruments
    registerBuiltinCommands(this.registry, { channels: this.channels, rooms: this.rooms, roomExposure: this.roomExposure, authentication: this.authentication, redelivery, limits: new ConnectionLimits(this.options), presence: this.presence })
    this.messages = new MessageRouter({
      server: untyped,
      middleware: () => this.registry.globalMiddleware,
      mayRun: (connection) => !this.authentication.required || connection.isAuthenticated,
      logger: this.logger,
      onFault: (error, connection, messageType) => this.hooks.error(error, { messageType, connection }),
      maxWaiting: this.options.maxPendingRequests,
      schemas: this.options.schemas,
      exposeErrors: this.options.exposeErrors,
    })
    this.messages.instruments = instruments
    this.heartbeat = new Heartbeat(this.live, this.options)
    this.ownsHttp = !this.options.server
    this.routes = new HttpRoutes(this.logger)
    this.http = this.options.server ?? createServer(this.routes.listener)
    this.health = new Readiness({ listening: () => this.http.listening, storeReachable: backend.reachable })
    if (this.options.healthChecks) this.health.addRoutes(this.routes)
    this.sockets = new SocketLifecycle(this.options, {
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
    if (this.options.portal && backend.redis) {
      this.portals = new ServerPortals({ redis: backend.redis, bus: this.bus, keys, instanceId: this.instanceId, logger: this.logger }, this.options.portal)
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
      timeout: this.options.redisTimeout,
      logger: this.logger,
    })
    this.sockets.onDisconnection((connection) => this.presence.closed(connection))
    // After the portal side: both take the authentication seam, and the hooks chain onto it.
    this.hooks.attach(this.sockets, this.authentication)
    // A listening server can still fail (accept errors); without a listener that would crash the process.
    if (this.ownsHttp) this.http.on('error', (error) => this.logger.error?.('http server error', { error }))
    this.http.on('upgrade', this.sockets.onUpgrade)
    const listened = listening(this.http, this.ownsHttp ? () => this.http.listen(this.options.port, this.options.host) : undefined)
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

  /**
   * Resolves once the server accepts connections and has joined its store. Rejects
   * with the listen error, or `UNAVAILABLE` if Redis is unreachable (the server then
   * keeps serving locally and joins when Redis is back).
   */
  async ready(): Promise<void> {
    await this.started
  }

  /**
   * The port the server listens on (the real one when created with port 0); `0`
   * while it does not listen (not yet, no more, or listening failed: a taken port),
   * so that it never names a port nothing answers on. `0` rather than `undefined`
   * keeps the type a plain number for the many callers that build URLs from it.
   */
  get port(): number {
    const address = this.http.address()
    return typeof address === 'object' && address ? address.port : 0
  }

  /**
   * Whether a load balancer should send this instance new clients, and if not why
   * (`starting`, `store-unreachable`, `draining`, `closed`); what `GET /readyz` answers.
   * Computed when read.
   */
  get readiness(): ReadinessState {
    return this.health.state
  }

  /** Connections held by this instance, by id. */
  get connections(): ReadonlyMap<string, Connection<Api>> {
    return this.live
  }

  /**
   * Answers command `name` with `handler`, after the global middleware and then this
   * command's own `middleware`. With a typed API, `ctx.payload` is the command's payload
   * (a schema's output) and the handler must return its result; the fields that the
   * middleware add (`Middleware<{ user: User }>`) are typed in `ctx`. The first
   * signature keeps `registerCommand<P, R>` for servers whose commands are untyped.
   */
  registerCommand<P = unknown, R = unknown, const M extends MiddlewareList<Fields> = MiddlewareList<Fields>>(
    this: IfUntyped<Api, 'commands'>,
    name: string,
    handler: (ctx: MeshContext<P, Api> & Fields & FieldsOf<M>) => R | Promise<R>,
    middleware?: M,
  ): void
  registerCommand<K extends CommandName<Api>, const M extends MiddlewareList<Fields> = MiddlewareList<Fields>>(name: K, handler: TypedCommandHandler<Api, K, Fields & FieldsOf<M>>, middleware?: M): void
  registerCommand(name: string, handler: (ctx: never) => unknown, middleware: readonly Middleware<never>[] = []): void {
    // The signatures above typed the handler and middleware for this server's contexts.
    this.registry.register(name, handler as CommandHandler, middleware as readonly Middleware[])
  }

  /**
   * Handles client messages (`client.send(type, data)`) of this type, or of every
   * type with `'*'`; returns the function that removes the handler. Global
   * middleware runs first (with `ctx.message` set, `ctx.command` undefined); what the
   * handler returns is ignored, and a throw or rejection is logged, never sent back.
   */
  onMessage<D = unknown>(this: IfUntyped<Api, 'messages'>, type: string, handler: (ctx: MessageContext<D, Api> & Fields) => unknown): () => void
  onMessage<T extends MessageType<Api> | '*'>(type: T, handler: TypedMessageHandler<Api, T, Fields>): () => void
  onMessage(type: string, handler: (ctx: never) => unknown): () => void {
    return this.messages.on(type, handler as MessageHandler)
  }

  /**
   * Counters of client messages no handler took (`unhandledMessages`) or that were
   * dropped, and why; `portalEventsDropped`: portal events lost (backlog full before a
   * portal group read them, or Redis away). A snapshot: read it again for new values.
   */
  get stats(): Readonly<ServerStats> {
    return { ...this.messages.stats, portalEventsDropped: this.portals?.eventsDropped ?? 0 }
  }

  /**
   * meshkit's plain-HTTP routes (`/healthz` and `/readyz` unless `healthChecks` is
   * false, `/metrics` when metrics are on) for a server of your
   * own: call it from your request listener, or use it as Express/Connect middleware.
   * Returns true when it answered; otherwise calls `next` (when given) and returns
   * false. meshkit's own HTTP server answers these routes without it.
   */
  httpHandler(): (request: IncomingMessage, response: ServerResponse, next?: () => void) => boolean {
    return (request, response, next) => {
      if (this.routes.handle(request, response)) return true
      next?.()
      return false
    }
  }

  /**
   * The prom-client registry holding meshkit's metrics (the one given as
   * `metrics.register`, or the server's own); `undefined` with metrics off.
   */
  get metricsRegistry(): MetricsRegistry | undefined {
    return this.metrics?.register
  }

  /**
   * Middleware for every command and client message, run before the command's own.
   * Returns this server, typed with the fields the middleware add
   * (`const app = server.addMiddleware(auth)`: `app`'s handlers see `ctx.user`).
   */
  addMiddleware<const M extends MiddlewareList<Fields>>(...middleware: M): MeshServer<Api, Fields & FieldsOf<M>> {
    this.registry.addMiddleware(middleware)
    return this as unknown as MeshServer<Api, Fields & FieldsOf<M>>
  }

  /** Adds a set of hooks (Mesa's middleware; see `MeshHooks`); sets stack. Returns the function that removes it. */
  use(hooks: MeshHooks): () => void {
    return this.hooks.use(hooks)
  }

  /** Called once the client has received its hello. Returns a function that removes the listener. */
  onConnection(listener: ConnectionListener): () => void {
    return this.sockets.onConnection(listener)
  }

  /** Called when a connection that was announced by `onConnection` has closed and left its rooms. */
  onDisconnection(listener: ConnectionListener): () => void {
    return this.sockets.onDisconnection(listener)
  }

  /** Sends an event to every connection on every instance. */
  broadcast<E extends EventName<Api>>(event: E, ...payload: EventArgs<Api, E>): Promise<void>
  async broadcast(event: string, payload?: unknown): Promise<void> {
    await this.delivery.broadcast(event, payload)
  }

  /** Sends an event to every connection on every instance except the given ones. */
  broadcastExclude<E extends EventName<Api>>(event: E, payload: EventPayload<Api, E>, exclude: ConnectionRef | readonly ConnectionRef[]): Promise<void>
  async broadcastExclude(event: string, payload: unknown, exclude: ConnectionRef | readonly ConnectionRef[]): Promise<void> {
    await this.delivery.broadcast(event, payload, idsOf(exclude))
  }

  /** Sends an event to the members of a room, on every instance. */
  broadcastRoom<E extends EventName<Api>>(room: string, event: E, ...payload: EventArgs<Api, E>): Promise<void>
  async broadcastRoom(room: string, event: string, payload?: unknown): Promise<void> {
    await this.delivery.broadcastRoom(room, event, payload)
  }

  /** Sends an event to the members of a room, on every instance, except the given connections. */
  broadcastRoomExclude<E extends EventName<Api>>(room: string, event: E, payload: EventPayload<Api, E>, exclude: ConnectionRef | readonly ConnectionRef[]): Promise<void>
  async broadcastRoomExclude(room: string, event: string, payload: unknown, exclude: ConnectionRef | readonly ConnectionRef[]): Promise<void> {
    await this.delivery.broadcastRoom(room, event, payload, idsOf(exclude))
  }

  /** Sends an event to connections by id, on whichever instance holds them; unknown ids are skipped. */
  sendTo<E extends EventName<Api>>(connections: ConnectionRef | readonly ConnectionRef[], event: E, ...payload: EventArgs<Api, E>): Promise<void>
  async sendTo(connections: ConnectionRef | readonly ConnectionRef[], event: string, payload?: unknown): Promise<void> {
    await this.delivery.sendTo(idsOf(connections), event, payload)
  }

  addToRoom(room: string, connection: ConnectionRef): Promise<void> {
    return this.rooms.addToRoom(room, connection)
  }

  removeFromRoom(room: string, connection: ConnectionRef): Promise<void> {
    return this.rooms.removeFromRoom(room, connection)
  }

  /** Removes a connection from every room; resolves with the rooms it left. */
  removeFromAllRooms(connection: ConnectionRef): Promise<string[]> {
    return this.rooms.removeFromAllRooms(connection)
  }

  isInRoom(room: string, connection: ConnectionRef): Promise<boolean> {
    return this.rooms.isInRoom(room, connection)
  }

  /** Ids of a room's members on every instance. */
  getRoomMembers(room: string): Promise<string[]> {
    return this.rooms.getRoomMembers(room)
  }

  /**
   * Lets clients subscribe to channels with this exact name, or matching this
   * RegExp. A guard (sync or async) decides per connection and channel on every
   * subscribe; returning anything but `true`, or throwing, refuses.
   */
  exposeChannel(pattern: string | RegExp, guard?: Guard): void {
    this.channels.expose(pattern, guard)
  }

  /**
   * Publishes a message to a channel's subscribers on every instance, keeping the
   * newest `historyLimit` messages as history (0: keep none). Resolves with the
   * message's offset once it is stored and published.
   */
  writeChannel<C extends ChannelName<Api>>(channel: C, message: ChannelMessage<Api, C>, historyLimit?: number): Promise<number>
  writeChannel(channel: string, message: unknown, historyLimit = 0): Promise<number> {
    return this.channels.write(channel, message, historyLimit)
  }

  /**
   * Decides `client.authenticate(credentials)`: resolve `{ id, user }` to accept,
   * `null` or a throw to refuse (a thrown `MeshError` keeps its code).
   */
  onAuthenticate(handler: AuthenticateHandler): void {
    this.authentication.onAuthenticate(handler)
  }

  /**
   * Mesa's user-addressed send: every connection of these users on any instance.
   * `['*']` is every authenticated connection (every connection unless
   * authentication is required); `exclude` lists users who never receive it. With
   * `sync` enabled, users with no connection get it when they next authenticate.
   */
  send<E extends EventName<Api>>(event: E, payload: EventPayload<Api, E>, userIds: readonly (string | number)[], exclude?: readonly (string | number)[]): Promise<void>
  async send(event: string, payload: unknown, userIds: readonly (string | number)[], exclude: readonly (string | number)[] = []): Promise<void> {
    await this.delivery.sendToUsers(event, payload, userIdList(userIds, 'userIds'), userIdList(exclude, 'exclude'))
  }

  /** Users with a connection on any instance (`authentication.storeConnectedUsers`). */
  getConnectedUsers(): Promise<string[]> {
    return this.authentication.connectedUsers()
  }

  isUserOnline(userId: string | number): Promise<boolean> {
    return this.authentication.isOnline(String(userId))
  }

  /**
   * Lets clients join (and leave) rooms with this name or matching this RegExp, if the
   * guard allows. With `presence: true`, members may also hold a presence state there.
   */
  exposeRoom(pattern: string | RegExp, guard?: Guard, options: ExposeRoomOptions = {}): void {
    this.roomExposure.add(pattern, guard)
    if (options.presence === true) this.presence.enable(pattern)
  }

  /** The presence list of a room exposed with presence, from every instance. */
  getPresence(room: string): Promise<PresenceMember[]> {
    return this.presence.list(room)
  }

  /**
   * A snapshot of the cluster: instances with their connections and liveness, rooms
   * with member counts, channels with subscribers and last offset, online users,
   * portal groups and backlogs. Asks every live instance for its counts over the bus
   * and waits up to `redisTimeout` for them (`partial` when one did not answer); the
   * rest comes from the store. Costs what it lists, never a scan of keys. Rejects with
   * `UNAVAILABLE` when the store or the bus cannot be reached.
   */
  inspect(options: InspectOptions = {}): Promise<ClusterView> {
    return this.inspector.inspect(options)
  }

  /**
   * A small read-only HTML page rendering `inspect()`, for an HTTP server of yours
   * (plain Node or Express/Connect middleware). Refuses unless `authorize(request)`
   * returns true; the page has no script and loads nothing from elsewhere.
   */
  adminHandler(options: AdminHandlerOptions): AdminHandler {
    return createAdminHandler((inspectOptions) => this.inspect(inspectOptions), options, this.logger)
  }

  /**
   * Closes every socket (code 1001, so clients reconnect elsewhere), removes this
   * instance from the store, stops timers. With `drain`, first drains over that many
   * milliseconds (see `CloseOptions`; clients are closed with 1012 one by one). Idempotent:
   * a second call returns the first one's promise. Throws a `RangeError` for a bad `drain`.
   */
  close(options: CloseOptions = {}): Promise<void> {
    const { drain } = resolveCloseOptions(options)
    this.closing ??= this.shutdown(drain)
    return this.closing
  }

  private async shutdown(drain: number): Promise<void> {
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
