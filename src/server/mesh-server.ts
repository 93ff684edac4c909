import type { IncomingMessage, ServerResponse } from 'node:http'
import { nanoid } from 'nanoid'
import type { Connection } from './connection.js'
import type { CommandHandler, MeshContext, MessageContext, MessageHandler, Middleware } from './context.js'
import type { ApiShape, ChannelMessage, ChannelName, CommandName, EventArgs, EventName, EventPayload, IfUntyped, MessageType, UntypedApi } from '../shared/api.js'
import type { FieldsOf, MiddlewareList, NoFields, TypedCommandHandler, TypedMessageHandler } from './typed-api.js'
import type { MessageStats } from './message-router.js'
import { userIdList } from './call-arguments.js'
import { resolveCloseOptions, type CloseOptions } from './drain.js'
import type { ReadinessState } from './readiness.js'
import type { MetricsRegistry } from './prometheus-metrics.js'
import type { AuthenticateHandler } from './authentication.js'
import type { Guard } from './exposure.js'
import type { ClusterView, InspectOptions } from './cluster-view.js'
import { createAdminHandler, type AdminHandler, type AdminHandlerOptions } from './admin-page.js'
import type { ConnectionManager } from './managers/connection-manager.js'
import { idsOf, type ConnectionRef } from './managers/ownership.js'
import type { PresenceMember } from './managers/presence-manager.js'
import { resolveServerOptions, type MeshServerOptions } from './options.js'
import type { ConnectionListener } from './socket-lifecycle.js'
import type { MeshHooks } from './server-hooks.js'
import { ServerParts } from './server-parts.js'
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
  // One field for every internal part, so their types stay out of the published declaration.
  private readonly parts: ServerParts
  private closing: Promise<void> | undefined

  constructor(options: MeshServerOptions<Api> = {}) {
    // Contexts hold the server as their handlers' signatures typed it; the registry and router serve every API alike.
    this.parts = new ServerParts(resolveServerOptions(options), this.instanceId, this as unknown as MeshServer)
    this.store = this.parts.store
    this.bus = this.parts.bus
    this.connectionManager = this.parts.connectionManager
  }

  /**
   * Resolves once the server accepts connections and has joined its store. Rejects
   * with the listen error, or `UNAVAILABLE` if Redis is unreachable (the server then
   * keeps serving locally and joins when Redis is back).
   */
  async ready(): Promise<void> {
    await this.parts.started
  }

  /**
   * The port the server listens on (the real one when created with port 0); `0`
   * while it does not listen (not yet, no more, or listening failed: a taken port),
   * so that it never names a port nothing answers on. `0` rather than `undefined`
   * keeps the type a plain number for the many callers that build URLs from it.
   */
  get port(): number {
    const address = this.parts.http.address()
    return typeof address === 'object' && address ? address.port : 0
  }

  /**
   * Whether a load balancer should send this instance new clients, and if not why
   * (`starting`, `store-unreachable`, `draining`, `closed`); what `GET /readyz` answers.
   * Computed when read.
   */
  get readiness(): ReadinessState {
    return this.parts.health.state
  }

  /** Connections held by this instance, by id. */
  get connections(): ReadonlyMap<string, Connection<Api>> {
    return this.parts.live
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
    this.parts.registry.register(name, handler as CommandHandler, middleware as readonly Middleware[])
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
    return this.parts.messages.on(type, handler as MessageHandler)
  }

  /**
   * Counters of client messages no handler took (`unhandledMessages`) or that were
   * dropped, and why; `portalEventsDropped`: portal events lost (backlog full before a
   * portal group read them, or Redis away). A snapshot: read it again for new values.
   */
  get stats(): Readonly<ServerStats> {
    return { ...this.parts.messages.stats, portalEventsDropped: this.parts.portals?.eventsDropped ?? 0 }
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
      if (this.parts.routes.handle(request, response)) return true
      next?.()
      return false
    }
  }

  /**
   * The prom-client registry holding meshkit's metrics (the one given as
   * `metrics.register`, or the server's own); `undefined` with metrics off.
   */
  get metricsRegistry(): MetricsRegistry | undefined {
    return this.parts.metrics?.register
  }

  /**
   * Middleware for every command and client message, run before the command's own.
   * Returns this server, typed with the fields the middleware add
   * (`const app = server.addMiddleware(auth)`: `app`'s handlers see `ctx.user`).
   */
  addMiddleware<const M extends MiddlewareList<Fields>>(...middleware: M): MeshServer<Api, Fields & FieldsOf<M>> {
    this.parts.registry.addMiddleware(middleware)
    return this as unknown as MeshServer<Api, Fields & FieldsOf<M>>
  }

  /** Adds a set of hooks (Mesa's middleware; see `MeshHooks`); sets stack. Returns the function that removes it. */
  use(hooks: MeshHooks): () => void {
    return this.parts.hooks.use(hooks)
  }

  /** Called once the client has received its hello. Returns a function that removes the listener. */
  onConnection(listener: ConnectionListener): () => void {
    return this.parts.sockets.onConnection(listener)
  }

  /** Called when a connection that was announced by `onConnection` has closed and left its rooms. */
  onDisconnection(listener: ConnectionListener): () => void {
    return this.parts.sockets.onDisconnection(listener)
  }

  /** Sends an event to every connection on every instance. */
  broadcast<E extends EventName<Api>>(event: E, ...payload: EventArgs<Api, E>): Promise<void>
  async broadcast(event: string, payload?: unknown): Promise<void> {
    await this.parts.delivery.broadcast(event, payload)
  }

  /** Sends an event to every connection on every instance except the given ones. */
  broadcastExclude<E extends EventName<Api>>(event: E, payload: EventPayload<Api, E>, exclude: ConnectionRef | readonly ConnectionRef[]): Promise<void>
  async broadcastExclude(event: string, payload: unknown, exclude: ConnectionRef | readonly ConnectionRef[]): Promise<void> {
    await this.parts.delivery.broadcast(event, payload, idsOf(exclude))
  }

  /** Sends an event to the members of a room, on every instance. */
  broadcastRoom<E extends EventName<Api>>(room: string, event: E, ...payload: EventArgs<Api, E>): Promise<void>
  async broadcastRoom(room: string, event: string, payload?: unknown): Promise<void> {
    await this.parts.delivery.broadcastRoom(room, event, payload)
  }

  /** Sends an event to the members of a room, on every instance, except the given connections. */
  broadcastRoomExclude<E extends EventName<Api>>(room: string, event: E, payload: EventPayload<Api, E>, exclude: ConnectionRef | readonly ConnectionRef[]): Promise<void>
  async broadcastRoomExclude(room: string, event: string, payload: unknown, exclude: ConnectionRef | readonly ConnectionRef[]): Promise<void> {
    await this.parts.delivery.broadcastRoom(room, event, payload, idsOf(exclude))
  }

  /** Sends an event to connections by id, on whichever instance holds them; unknown ids are skipped. */
  sendTo<E extends EventName<Api>>(connections: ConnectionRef | readonly ConnectionRef[], event: E, ...payload: EventArgs<Api, E>): Promise<void>
  async sendTo(connections: ConnectionRef | readonly ConnectionRef[], event: string, payload?: unknown): Promise<void> {
    await this.parts.delivery.sendTo(idsOf(connections), event, payload)
  }

  addToRoom(room: string, connection: ConnectionRef): Promise<void> {
    return this.parts.rooms.addToRoom(room, connection)
  }

  removeFromRoom(room: string, connection: ConnectionRef): Promise<void> {
    return this.parts.rooms.removeFromRoom(room, connection)
  }

  /** Removes a connection from every room; resolves with the rooms it left. */
  removeFromAllRooms(connection: ConnectionRef): Promise<string[]> {
    return this.parts.rooms.removeFromAllRooms(connection)
  }

  isInRoom(room: string, connection: ConnectionRef): Promise<boolean> {
    return this.parts.rooms.isInRoom(room, connection)
  }

  /** Ids of a room's members on every instance. */
  getRoomMembers(room: string): Promise<string[]> {
    return this.parts.rooms.getRoomMembers(room)
  }

  /**
   * Lets clients subscribe to channels with this exact name, or matching this
   * RegExp. A guard (sync or async) decides per connection and channel on every
   * subscribe; returning anything but `true`, or throwing, refuses.
   */
  exposeChannel(pattern: string | RegExp, guard?: Guard): void {
    this.parts.channels.expose(pattern, guard)
  }

  /**
   * Publishes a message to a channel's subscribers on every instance, keeping the
   * newest `historyLimit` messages as history (0: keep none). Resolves with the
   * message's offset once it is stored and published.
   */
  writeChannel<C extends ChannelName<Api>>(channel: C, message: ChannelMessage<Api, C>, historyLimit?: number): Promise<number>
  writeChannel(channel: string, message: unknown, historyLimit = 0): Promise<number> {
    return this.parts.channels.write(channel, message, historyLimit)
  }

  /**
   * Decides `client.authenticate(credentials)`: resolve `{ id, user }` to accept,
   * `null` or a throw to refuse (a thrown `MeshError` keeps its code).
   */
  onAuthenticate(handler: AuthenticateHandler): void {
    this.parts.authentication.onAuthenticate(handler)
  }

  /**
   * Mesa's user-addressed send: every connection of these users on any instance.
   * `['*']` is every authenticated connection (every connection unless
   * authentication is required); `exclude` lists users who never receive it. With
   * `sync` enabled, users with no connection get it when they next authenticate.
   */
  send<E extends EventName<Api>>(event: E, payload: EventPayload<Api, E>, userIds: readonly (string | number)[], exclude?: readonly (string | number)[]): Promise<void>
  async send(event: string, payload: unknown, userIds: readonly (string | number)[], exclude: readonly (string | number)[] = []): Promise<void> {
    await this.parts.delivery.sendToUsers(event, payload, userIdList(userIds, 'userIds'), userIdList(exclude, 'exclude'))
  }

  /** Users with a connection on any instance (`authentication.storeConnectedUsers`). */
  getConnectedUsers(): Promise<string[]> {
    return this.parts.authentication.connectedUsers()
  }

  isUserOnline(userId: string | number): Promise<boolean> {
    return this.parts.authentication.isOnline(String(userId))
  }

  /**
   * Lets clients join (and leave) rooms with this name or matching this RegExp, if the
   * guard allows. With `presence: true`, members may also hold a presence state there.
   */
  exposeRoom(pattern: string | RegExp, guard?: Guard, options: ExposeRoomOptions = {}): void {
    this.parts.roomExposure.add(pattern, guard)
    if (options.presence === true) this.parts.presence.enable(pattern)
  }

  /** The presence list of a room exposed with presence, from every instance. */
  getPresence(room: string): Promise<PresenceMember[]> {
    return this.parts.presence.list(room)
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
    return this.parts.inspector.inspect(options)
  }

  /**
   * A small read-only HTML page rendering `inspect()`, for an HTTP server of yours
   * (plain Node or Express/Connect middleware). Refuses unless `authorize(request)`
   * returns true; the page has no script and loads nothing from elsewhere.
   */
  adminHandler(options: AdminHandlerOptions): AdminHandler {
    return createAdminHandler((inspectOptions) => this.inspect(inspectOptions), options, this.parts.logger)
  }

  /**
   * Closes every socket (code 1001, so clients reconnect elsewhere), removes this
   * instance from the store, stops timers. With `drain`, first drains over that many
   * milliseconds (see `CloseOptions`; clients are closed with 1012 one by one). Idempotent:
   * a second call returns the first one's promise. Throws a `RangeError` for a bad `drain`.
   */
  close(options: CloseOptions = {}): Promise<void> {
    const { drain } = resolveCloseOptions(options)
    this.closing ??= this.parts.close(drain)
    return this.closing
  }
}
