import { createServer, type IncomingMessage, type Server as HttpServer } from 'node:http'
import type { Server as HttpsServer } from 'node:https'
import type { Duplex } from 'node:stream'
import { nanoid } from 'nanoid'
import { WebSocketServer, type RawData, type WebSocket } from 'ws'
import { codecForSubprotocol, tryDecode, type Codec, type WireData } from '../shared/codec.js'
import { ErrorCode, MeshError } from '../shared/errors.js'
import { CloseCode, FrameType, isId, parseClientFrame } from '../shared/protocol.js'
import { CommandRegistry } from './command-registry.js'
import { Connection } from './connection.js'
import { ConnectionLimits } from './connection-limits.js'
import type { CommandHandler, Middleware } from './context.js'
import { Heartbeat } from './heartbeat.js'
import { answerPlainHttp, listening, pathOf, pickSubprotocol, refuseUpgrade } from './http-endpoint.js'
import { silentLogger, type Logger } from './logger.js'
import { mergeOptions } from '../shared/options.js'
import { Authentication, authenticationDefaults, type AuthenticateHandler } from './authentication.js'
import { registerBuiltinCommands } from './builtin-commands.js'
import { Exposure, type Guard } from './exposure.js'
import { ChannelManager } from './managers/channel-manager.js'
import { Cluster } from './managers/cluster.js'
import { ConnectionManager } from './managers/connection-manager.js'
import { Delivery } from './managers/delivery.js'
import { InstanceMonitor } from './managers/instance-monitor.js'
import { Redelivery, resolveSyncOptions } from './managers/redelivery.js'
import { Ownership, idOf, type ConnectionRef } from './managers/ownership.js'
import { RoomManager } from './managers/room-manager.js'
import { resolveServerOptions, type MeshServerOptions, type ResolvedServerOptions } from './options.js'
import { createBackend } from './store/backend.js'
import type { MeshBus, MeshStore } from './store/types.js'

export type ConnectionListener = (connection: Connection) => void | Promise<void>

/**
 * A meshkit server: accepts WebSocket connections, answers their commands through
 * middleware and handlers, and delivers events to connections on any instance
 * sharing its store.
 */
export class MeshServer {
  /** This instance's id, unique among the instances sharing a store. */
  readonly instanceId = nanoid()
  readonly store: MeshStore
  readonly bus: MeshBus
  /** Metadata of connections on any instance. */
  readonly connectionManager: ConnectionManager
  private readonly options: ResolvedServerOptions
  private readonly logger: Logger
  private readonly http: HttpServer | HttpsServer
  private readonly ownsHttp: boolean
  private readonly wss: WebSocketServer
  private readonly registry: CommandRegistry
  private readonly heartbeat: Heartbeat
  private readonly cluster: Cluster
  private readonly delivery: Delivery
  private readonly rooms: RoomManager
  private readonly channels: ChannelManager
  private readonly roomExposure = new Exposure('room')
  private readonly authentication: Authentication
  private readonly monitor: InstanceMonitor
  /** Connections that received their hello: the ones events, pings and lookups reach. */
  private readonly live = new Map<string, Connection>()
  /** Every open socket, greeted or not, so that `close()` reaches them all. */
  private readonly sockets = new Set<Connection>()
  private readonly connectListeners = new Set<ConnectionListener>()
  private readonly disconnectListeners = new Set<ConnectionListener>()
  private readonly started: Promise<unknown>
  private closing: Promise<void> | undefined
  /** Set while `close()` waits for the last connection to go. */
  private onLastConnectionGone: (() => void) | undefined
  /** Store work still running for closed connections; `close()` waits for it. */
  private readonly settling = new Set<Promise<unknown>>()

  constructor(options: MeshServerOptions = {}) {
    this.options = resolveServerOptions(options)
    this.logger = this.options.logger ?? silentLogger
    const backend = createBackend(this.options, this.logger)
    this.store = backend.store
    this.bus = backend.bus
    this.cluster = new Cluster(this.bus, backend.keys, this.instanceId, {
      deliver: (ids, frame) => this.delivery.deliverLocal(ids, frame),
      deliverAll: (excluded, frame) => this.delivery.deliverAllLocal(excluded, frame),
      deliverUsers: (excludedUsers, frame) => this.delivery.deliverUsersFromBus(excludedUsers, frame),
      notice: (notice) => ownership.apply(notice),
    }, this.logger)
    const ownership = new Ownership(this.instanceId, this.live, this.store, this.cluster, (connection) => this.monitor.registerNow(connection))
    const redelivery = new Redelivery(this.store, resolveSyncOptions(this.options.sync), this.logger)
    const authOptions = mergeOptions(authenticationDefaults, this.options.authentication ?? {})
    this.authentication = new Authentication(authOptions, this.options.authenticate, this.store, redelivery, this.logger)
    this.delivery = new Delivery(this.instanceId, this.live, this.store, this.cluster, backend.shared, {
      required: authOptions.required,
      redelivery,
    })
    this.rooms = new RoomManager(this.store, ownership)
    this.connectionManager = new ConnectionManager(this.store, ownership)
    this.monitor = new InstanceMonitor(this.instanceId, this.live, this.store, this.options.instanceTtl, authOptions.storeConnectedUsers, redelivery, this.logger)
    this.channels = new ChannelManager(this.store, this.bus, backend.keys, this.logger, this.options)
    this.registry = new CommandRegistry(this, this.options.maxPendingRequests, (connection, name) => this.authentication.gate(connection, name))
    registerBuiltinCommands(this.registry, { channels: this.channels, rooms: this.rooms, roomExposure: this.roomExposure, authentication: this.authentication, redelivery, limits: new ConnectionLimits(this.options) })
    this.heartbeat = new Heartbeat(this.live, this.options)
    this.wss = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      maxPayload: this.options.maxPayload,
      perMessageDeflate: this.options.perMessageDeflate,
      handleProtocols: pickSubprotocol,
    })
    this.ownsHttp = !this.options.server
    this.http = this.options.server ?? createServer(answerPlainHttp)
    // A listening server can still fail (accept errors); without a listener that would crash the process.
    if (this.ownsHttp) this.http.on('error', (error) => this.logger.error?.('http server error', { error }))
    this.http.on('upgrade', this.onUpgrade)
    const listened = listening(this.http, this.ownsHttp ? () => this.http.listen(this.options.port, this.options.host) : undefined)
    // Joining starts even when Redis is unreachable: the monitor's timers and the bus's
    // replayed subscriptions then finish the job once it is back.
    const join = (): Promise<unknown> => Promise.all([this.monitor.start(), this.cluster.start()])
    const joined = backend.connected().then(join, (error: unknown) => {
      join().catch(() => {})
      throw error
    })
    this.started = Promise.all([listened, joined])
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

  /** The port the server listens on (the real one when created with port 0). */
  get port(): number {
    const address = this.http.address()
    return typeof address === 'object' && address ? address.port : this.options.port
  }

  /** Connections held by this instance, by id. */
  get connections(): ReadonlyMap<string, Connection> {
    return this.live
  }

  registerCommand<P = any, R = unknown>(name: string, handler: CommandHandler<P, R>, middleware: readonly Middleware[] = []): void {
    this.registry.register(name, handler as CommandHandler, middleware)
  }

  /** Middleware for every command, run before the command's own. */
  addMiddleware(...middleware: Middleware[]): void {
    this.registry.addMiddleware(middleware)
  }

  /** Called once the client has received its hello. Returns a function that removes the listener. */
  onConnection(listener: ConnectionListener): () => void {
    this.connectListeners.add(listener)
    return () => this.connectListeners.delete(listener)
  }

  /** Called when a connection that was announced by `onConnection` has closed and left its rooms. */
  onDisconnection(listener: ConnectionListener): () => void {
    this.disconnectListeners.add(listener)
    return () => this.disconnectListeners.delete(listener)
  }

  /** Sends an event to every connection on every instance. */
  async broadcast(event: string, payload?: unknown): Promise<void> {
    await this.delivery.broadcast(event, payload)
  }

  /** Sends an event to every connection on every instance except the given ones. */
  async broadcastExclude(event: string, payload: unknown, exclude: ConnectionRef | readonly ConnectionRef[]): Promise<void> {
    await this.delivery.broadcast(event, payload, idsOf(exclude))
  }

  /** Sends an event to the members of a room, on every instance. */
  async broadcastRoom(room: string, event: string, payload?: unknown): Promise<void> {
    await this.delivery.broadcastRoom(room, event, payload)
  }

  async broadcastRoomExclude(room: string, event: string, payload: unknown, exclude: ConnectionRef | readonly ConnectionRef[]): Promise<void> {
    await this.delivery.broadcastRoom(room, event, payload, idsOf(exclude))
  }

  /** Sends an event to connections by id, on whichever instance holds them; unknown ids are skipped. */
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
  async send(event: string, payload: unknown, userIds: readonly (string | number)[], exclude: readonly (string | number)[] = []): Promise<void> {
    await this.delivery.sendToUsers(event, payload, userIds.map(String), exclude.map(String))
  }

  /** Users with a connection on any instance (`authentication.storeConnectedUsers`). */
  getConnectedUsers(): Promise<string[]> {
    return this.authentication.connectedUsers()
  }

  isUserOnline(userId: string | number): Promise<boolean> {
    return this.authentication.isOnline(String(userId))
  }

  /** Lets clients join (and leave) rooms with this name or matching this RegExp, if the guard allows. */
  exposeRoom(pattern: string | RegExp, guard?: Guard): void {
    this.roomExposure.add(pattern, guard)
  }

  /** Closes every socket (code 1001, so clients reconnect elsewhere), removes this instance from the store, stops timers. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.shutdown()
    return this.closing
  }

  private async shutdown(): Promise<void> {
    this.heartbeat.stop()
    this.http.off('upgrade', this.onUpgrade)
    const allGone = new Promise<void>((resolve) => {
      if (this.sockets.size === 0) resolve()
      else this.onLastConnectionGone = resolve
    })
    for (const connection of this.sockets) connection.close(CloseCode.GOING_AWAY, 'server shutting down')
    const deadline = setTimeout(() => {
      for (const connection of this.sockets) connection.terminate()
    }, this.options.closeTimeout)
    await allGone
    clearTimeout(deadline)
    await Promise.allSettled([...this.settling])
    await new Promise<void>((resolve) => this.wss.close(() => resolve()))
    if (this.ownsHttp && this.http.listening) {
      await new Promise<void>((resolve) => {
        this.http.close(() => resolve())
        this.http.closeAllConnections()
      })
    }
    await this.started.catch(() => {})
    await this.cluster.stop()
    await this.monitor.stop()
    await Promise.allSettled([this.bus.close(), this.store.close()])
  }

  /** One listener for every socket, rather than a closure per connection. */
  private readonly onSocketError = (error: Error): void => this.logger.debug?.('socket error', { error })

  private readonly onUpgrade = (request: IncomingMessage, socket: Duplex, head: Buffer): void => {
    if (pathOf(request.url) !== this.options.path) {
      // On a server of the user's, other handlers may own other paths.
      if (this.ownsHttp) refuseUpgrade(socket, 404, 'Not Found')
      return
    }
    if (this.closing) {
      refuseUpgrade(socket, 503, 'Service Unavailable')
      return
    }
    // A module-level listener: a closure here would share this scope and keep the
    // request and its headers alive for as long as the socket lives.
    socket.on('error', destroySocket)
    this.authentication.atUpgrade(request).then(({ user, status }) => {
      if (status !== undefined) refuseUpgrade(socket, status, status === 401 ? 'Unauthorized' : 'Refused')
      else if (!socket.destroyed) this.wss.handleUpgrade(request, socket, head, (ws) => this.accept(ws, user))
    }, (error: unknown) => {
      this.logger.error?.('upgrade authentication failed', { error })
      refuseUpgrade(socket, 500, 'Internal Server Error')
    })
  }

  private accept(ws: WebSocket, upgradeUser?: { id: string; value: unknown }): void {
    const codec = codecForSubprotocol(ws.protocol) as Codec
    const connection = new Connection(ws, nanoid(), codec, this.options.maxBufferedBytes)
    this.sockets.add(connection)
    // Nothing is read until the hello is out, so no reply, ping or event can precede it.
    ws.pause()
    ws.on('message', (data, isBinary) => this.onMessage(connection, data, isBinary))
    // Socket errors (resets, bad frames) are followed by 'close', where cleanup happens.
    ws.on('error', this.onSocketError)

    let announced = false
    // Registration failing because the store is away does not stop the connection:
    // it is served here and registered when the store is back.
    const registered = this.monitor.register(connection).then(
      async (stored) => {
        if (!stored) this.logger.warn?.('store unavailable; connection served locally for now', { connectionId: connection.id })
        // Identified before the hello, so user sends reach it from its first moment.
        await this.authentication.accepted(connection, upgradeUser).catch((error: unknown) => {
          this.logger.warn?.('could not record the connection\'s user', { connectionId: connection.id, error })
          this.monitor.registerLater(connection)
        })
        if (!connection.isOpen || this.closing) return
        connection.hello({
          maxPayload: this.options.maxPayload,
          pingInterval: this.pingGap,
          // Lets the client hold excess requests itself instead of earning TOO_MANY_REQUESTS; JSON has no Infinity.
          ...(Number.isFinite(this.options.maxPendingRequests) ? { maxPendingRequests: this.options.maxPendingRequests } : {}),
        })
        this.live.set(connection.id, connection)
        ws.resume()
        announced = true
        this.notify(this.connectListeners, connection, 'onConnection')
      },
      (error: unknown) => {
        this.logger.error?.('could not register connection', { connectionId: connection.id, error })
        connection.close(CloseCode.INTERNAL_ERROR, 'store error')
      },
    )

    ws.on('close', () => {
      // Its client may only see 1006: the close frame queued behind what it did not read.
      if (connection.slowConsumer) this.logger.warn?.('closed a slow consumer (4008)', { connectionId: connection.id, maxBufferedBytes: this.options.maxBufferedBytes })
      this.live.delete(connection.id)
      this.sockets.delete(connection)
      this.channels.dropConnection(connection)
      connection.disposed()
      if (this.sockets.size === 0) this.onLastConnectionGone?.()
      const cleanup = registered
        .then(() => this.monitor.unregister(connection))
        .then(() => {
          if (announced) this.notify(this.disconnectListeners, connection, 'onDisconnection')
        })
        .finally(() => this.settling.delete(cleanup))
      this.settling.add(cleanup)
    })
  }

  /** The longest the client may wait between two pings; it announces this in the hello. */
  private get pingGap(): number {
    return Math.min(this.options.pingInterval, this.options.latencyInterval)
  }

  private onMessage(connection: Connection, raw: RawData, isBinary: boolean): void {
    const codec = connection.codec
    const decoded = codec.binary && !isBinary ? undefined : tryDecode(codec, raw as Buffer as WireData)
    const frame = parseClientFrame(decoded)
    if (!frame) {
      // A request whose id is readable gets its error on that id, so its caller is not left to time out.
      const requestId = Array.isArray(decoded) && decoded[0] === FrameType.REQUEST && isId(decoded[1]) ? decoded[1] : 0
      connection.respondError(requestId, new MeshError(ErrorCode.BAD_REQUEST, 'Malformed frame'))
      return
    }
    if (frame[0] === FrameType.REQUEST) this.registry.dispatch(connection, frame[1], frame[2], frame[3])
    else this.heartbeat.onPong(connection, frame[1])
  }

  private notify(listeners: Set<ConnectionListener>, connection: Connection, hook: string): void {
    for (const listener of listeners) {
      try {
        const result = listener(connection)
        if (result instanceof Promise) result.catch((error: unknown) => this.reportListenerError(hook, error))
      } catch (error) {
        this.reportListenerError(hook, error)
      }
    }
  }

  private reportListenerError(hook: string, error: unknown): void {
    this.logger.error?.(`${hook} listener failed`, { error })
  }
}

function destroySocket(this: Duplex): void {
  this.destroy()
}

function idsOf(refs: ConnectionRef | readonly ConnectionRef[]): string[] {
  return Array.isArray(refs) ? refs.map(idOf) : [idOf(refs as ConnectionRef)]
}
